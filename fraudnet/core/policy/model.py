"""The validated bundle as immutable values (built by :mod:`.bundle`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .compile import Compiled
from .velocity import VelocitySpec

__all__ = [
    "ACTIONS",
    "LIST_KINDS",
    "PSEUDONYMISED_KINDS",
    "Bundle",
    "EntityList",
    "ListEntry",
    "Rule",
    "Segment",
]

ACTIONS: Final = ("allow", "review", "step_up", "block")
LIST_KINDS: Final = ("card", "bin", "terminal", "merchant", "country", "device")
PSEUDONYMISED_KINDS: Final = frozenset({"card", "terminal", "merchant", "device"})


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    version: int
    description: str
    action: str
    when: str
    enabled: bool
    line: int
    condition: Compiled

    @property
    def reason(self) -> str:
        """The reason code of this rule: ``rule:<id>@v<version>: <description>``."""
        return f"rule:{self.id}@v{self.version}: {self.description}"


@dataclass(frozen=True, slots=True)
class Segment:
    id: str
    when: str
    review_at: float
    block_at: float
    line: int
    condition: Compiled


@dataclass(frozen=True, slots=True)
class ListEntry:
    key: int  # uint64 key64 of the pseudonym, or the encoded bin/country
    ident: str  # hex ref (pseudonymised kinds) or the plain value (bin, country)
    expires_s: float  # +inf when it never expires
    note: str


@dataclass(frozen=True, slots=True)
class EntityList:
    id: str
    kind: str
    action: str  # allow | deny | none
    description: str
    entries: tuple[ListEntry, ...]


@dataclass(frozen=True, slots=True)
class Bundle:
    """A validated, compiled policy bundle (immutable)."""

    name: str
    version: int
    description: str
    sha256: str
    source: str
    review_at: float
    block_at: float
    segments: tuple[Segment, ...]
    velocities: dict[str, VelocitySpec]
    rules: tuple[Rule, ...]
    lists: tuple[EntityList, ...]

    @property
    def policy_id(self) -> str:
        return f"{self.name}@{self.version}#{self.sha256[:12]}"

    def needs_features(self) -> bool:
        conds = [r.condition for r in self.rules] + [s.condition for s in self.segments]
        return any(c.features for c in conds)
