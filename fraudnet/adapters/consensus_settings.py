"""``[consensus]`` of ``node.toml``, the roster chain file, and the consensus topic names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudnet.core.consensus import (
    TOPIC_ATTESTATIONS,
    TOPIC_PROOFS,
    TOPIC_ROSTER,
    RosterChain,
    VerdictPolicy,
)
from fraudnet.errors import ConfigError, ConsensusError

__all__ = ["ConsensusSettings", "load_chain_file", "topics"]


def topics(network_id: str) -> dict[str, str]:
    """The tracker's topic constants -> this network's GossipSub topic names."""
    return {
        TOPIC_ATTESTATIONS: f"fraudnet/{network_id}/attestations/1",
        TOPIC_PROOFS: f"fraudnet/{network_id}/equivocation/1",
        TOPIC_ROSTER: f"fraudnet/{network_id}/roster/1",
    }


@dataclass(frozen=True, slots=True)
class ConsensusSettings:
    """``[consensus]`` of ``node.toml``, validated once.

    Example::

        [consensus]
        roster_chain = "roster.chain"   # relative to the node directory
        genesis = "<64 hex: the trusted genesis hash>"
        window_s = 600                  # verdict window (same on every member)
        grace_s = 60
        attest_threshold = 0.8          # local score that makes this member attest risk
        opinion_ttl_s = 1800
        max_attest_per_s = 50.0
    """

    roster_chain: Path
    anchor: bytes
    policy: VerdictPolicy
    state_dir: Path
    attest_threshold: float = 0.8
    opinion_ttl_us: int = 1_800_000_000
    max_attest_per_s: float = 50.0

    @property
    def verdict_store(self) -> Path:
        return self.state_dir.parent / "verdicts.store"

    @classmethod
    def from_mapping(
        cls, m: Any, where: str, *, node_dir: Path, default_threshold: float = 0.8
    ) -> ConsensusSettings:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"{where}: consensus.{key}: {why}")

        if not isinstance(m, Mapping):
            raise ConfigError(f"{where}: [consensus] must be a table")
        known = {"roster_chain", "genesis", "window_s", "grace_s", "attest_threshold",
                 "opinion_ttl_s", "max_attest_per_s"}  # fmt: skip
        unknown = sorted(set(m) - known)
        if unknown:
            raise bad(unknown[0], "unknown setting")
        for req in ("roster_chain", "genesis"):
            if not isinstance(m.get(req), str) or not m[req]:
                raise bad(req, "is required (a non-empty string)")
        try:
            anchor = bytes.fromhex(m["genesis"])
        except ValueError:
            anchor = b""
        if len(anchor) != 32:
            raise bad("genesis", "must be the 64-hex-character genesis hash")

        def number(key: str, default: float, lo: float, hi: float) -> float:
            v = m.get(key, default)
            if type(v) not in (int, float) or not lo <= v <= hi:
                raise bad(key, f"must be a number in [{lo}, {hi}]")
            return float(v)

        window = number("window_s", 600, 1, 86_400)
        grace = number("grace_s", 60, 0, 86_400)
        try:
            policy = VerdictPolicy(int(window * 1e6), int(grace * 1e6))
        except ConsensusError as e:
            raise bad("window_s", e.detail) from None
        return cls(
            roster_chain=node_dir / m["roster_chain"],
            anchor=anchor,
            policy=policy,
            state_dir=node_dir / "state" / "consensus",
            attest_threshold=number("attest_threshold", default_threshold, 0.0, 1.0),
            opinion_ttl_us=int(number("opinion_ttl_s", 1800, 1, 30 * 86_400) * 1e6),
            max_attest_per_s=number("max_attest_per_s", 50.0, 0.01, 10_000),
        )


def load_chain_file(settings: ConsensusSettings) -> RosterChain:
    """The configured chain, or the longer chain this node adopted since (same anchor)."""
    chains = []
    for path in (settings.roster_chain, settings.state_dir.parent / "roster.chain"):
        if path == settings.roster_chain or path.exists():
            try:
                data = path.read_bytes()
            except OSError as e:
                raise ConfigError(f"{path}: cannot read roster chain ({e.strerror})") from None
            try:
                chains.append(RosterChain.decode(data, settings.anchor))
            except ConsensusError as e:
                raise ConfigError(f"{path}: roster chain does not verify: {e}") from None
    return max(chains, key=lambda c: c.tip.version)
