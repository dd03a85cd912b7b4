"""The verdict function: a pure function of (attestations, roster chain, proofs, now).

Theory of operation
-------------------
Time is cut into verdict windows of ``window_us``; an attestation names one
window. A window's statements count from its start until ``grace_us`` after
its end, so a verdict *expires* unless members renew it by attesting again
in the next window. Every honest node that holds the same set of statements
computes the same verdict, whatever order, duplication or delay they arrived
with, because the function only looks at the *set*.

Numbered rules of :func:`derive_verdict` (the roster is the chain's tip):

1. A statement counts only if its signer is a member of the roster, its
   signature verifies with that member's key, its network and key epoch are
   the roster's, and its window is active at ``now``.
2. A member is ignored entirely if a valid equivocation proof names it, or if
   the statement set itself holds two different statements of it with one
   identity (member, entity, window, seq) -- an equivocation "from then on"
   is order-independent because it is a property of the set.
3. Per member and window only the statement with the highest ``seq`` counts
   (a later statement is a change of mind, not an equivocation).
4. Per window: ``clear`` if at least 2f+1 members' latest stance is clear;
   else ``block`` with 2f+1 risk, ``step-up`` with f+1, ``advisory`` with 1.
   Risk and clear sets are disjoint and 2(2f+1) > n, so block and clear can
   never both hold for one window.
5. Across active windows: a risk level counts only from a window newer than
   the newest clear window; the strongest such level wins (newest window on a
   tie); if there is none, the newest clear window gives ``clear``.

The :class:`Certificate` of a verdict is the statements that formed it plus
the hash of the roster they were checked against; :func:`verify_certificate`
checks one offline against a roster chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from fraudnet.errors import ConsensusError

from .attestation import MAX_ATTESTATION_BYTES, Attestation, SignedAttestation, verify_cached
from .chain import RosterChain
from .codec import pack, unpack_canonical, want_bytes, want_int, want_list, want_str
from .equivocation import EquivocationProof, verify_proof
from .roster import HASH_LEN, MAX_MEMBERS, Roster

__all__ = [
    "LEVELS",
    "Certificate",
    "CertificateCheck",
    "Level",
    "Verdict",
    "VerdictPolicy",
    "derive_verdict",
    "equivocators",
    "verify_certificate",
]

Level = Literal["none", "advisory", "step-up", "block", "clear"]
LEVELS: Final[tuple[Level, ...]] = ("none", "advisory", "step-up", "block", "clear")
_RISK_RANK: Final = {"advisory": 1, "step-up": 2, "block": 3}
MAX_CERT_BYTES: Final = MAX_MEMBERS * (MAX_ATTESTATION_BYTES + 160) + 1024
_CERT_MAGIC: Final = "fraudnet-certificate"


@dataclass(frozen=True, slots=True)
class VerdictPolicy:
    """Window geometry (microseconds). Every member of a network must use the same values."""

    window_us: int = 600_000_000
    grace_us: int = 60_000_000

    def __post_init__(self) -> None:
        if self.window_us <= 0 or not 0 <= self.grace_us <= self.window_us:
            raise ConsensusError("policy-invalid", "need window_us > 0 and 0 <= grace_us <= window")

    def window_of(self, now_us: int) -> int:
        return now_us // self.window_us

    def starts_at(self, window: int) -> int:
        return window * self.window_us

    def expires_at(self, window: int) -> int:
        return (window + 1) * self.window_us + self.grace_us

    def active(self, window: int, now_us: int) -> bool:
        return self.starts_at(window) <= now_us < self.expires_at(window)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The network verdict on one entity at one instant (``level`` ``none``: no verdict)."""

    entity_kind: str
    entity: bytes
    level: Level
    window: int
    support: tuple[SignedAttestation, ...]
    roster_hash: bytes
    expires_at_us: int
    risk_members: int = 0
    clear_members: int = 0

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(a.body.member_id for a in self.support)

    def certificate(self) -> Certificate | None:
        if self.level == "none":
            return None
        return Certificate(
            self.entity_kind,
            self.entity,
            self.window,
            self.level,
            self.roster_hash,
            tuple(sorted((a.body.member_id, a.raw, a.sig) for a in self.support)),
        )


def equivocators(
    attestations: Iterable[SignedAttestation], chain: RosterChain,
    proofs: Iterable[EquivocationProof] = (),
) -> frozenset[str]:  # fmt: skip
    """Members proven to equivocate by ``proofs`` or by the statement set itself (rule 2)."""
    out: set[str] = set()
    for p in proofs:
        try:
            out.add(verify_proof(p, chain))
        except ConsensusError:
            continue
    roster = chain.tip
    seen: dict[tuple[str, str, bytes, int, int], bytes] = {}
    for a in attestations:
        m = roster.member(a.body.member_id)
        if m is None or a.body.network != roster.network or not a.verifies_with(m.public_key):
            continue
        prev = seen.setdefault(a.body.key, a.raw)
        if prev != a.raw:
            out.add(a.body.member_id)
    return frozenset(out)


def _window_level(roster: Roster, latest: list[SignedAttestation]) -> tuple[Level, list[Any]]:
    risk = [a for a in latest if a.body.stance == "risk"]
    clear = [a for a in latest if a.body.stance == "clear"]
    if len(clear) >= roster.quorum:
        return "clear", clear
    if len(risk) >= roster.quorum:
        return "block", risk
    if len(risk) >= roster.step_up:
        return "step-up", risk
    if risk:
        return "advisory", risk
    return "none", []


def derive_verdict(
    entity_kind: str,
    entity: bytes,
    attestations: Iterable[SignedAttestation],
    chain: RosterChain,
    proofs: Iterable[EquivocationProof],
    now_us: int,
    policy: VerdictPolicy,
) -> Verdict:
    """The verdict on ``(entity_kind, entity)`` at ``now_us`` (rules 1-5 above).

    Statements about other entities only matter through rule 2 (an
    equivocation on any entity excludes the member everywhere).
    """
    roster = chain.tip
    every = list(attestations)
    banned = equivocators(every, chain, proofs)  # over the whole set: rule 2
    mine = [a for a in every if a.body.entity == entity and a.body.entity_kind == entity_kind]
    latest: dict[tuple[int, str], SignedAttestation] = {}
    for a in mine:  # rule 1, 2, 3
        b = a.body
        m = roster.member(b.member_id)
        if (
            m is None
            or b.member_id in banned
            or b.network != roster.network
            or b.key_epoch != roster.key_epoch
            or not policy.active(b.window, now_us)
            or not a.verifies_with(m.public_key)
        ):
            continue
        k = (b.window, b.member_id)
        cur = latest.get(k)
        if cur is None or (b.seq, a.raw) > (cur.body.seq, cur.raw):
            latest[k] = a
    per_window: dict[int, list[SignedAttestation]] = {}
    for (w, _), a in latest.items():
        per_window.setdefault(w, []).append(a)
    levels = {w: _window_level(roster, atts) for w, atts in per_window.items()}
    clear_ws = [w for w, (lv, _) in levels.items() if lv == "clear"]
    newest_clear = max(clear_ws, default=None)
    risky = [
        (_RISK_RANK[lv], w)
        for w, (lv, _) in levels.items()
        if lv in _RISK_RANK and (newest_clear is None or w > newest_clear)
    ]
    if risky:
        _, w = max(risky)  # rule 5
    elif newest_clear is not None:
        w = newest_clear
    else:
        return Verdict(entity_kind, entity, "none", -1, (), roster.hash, 0)
    level, support = levels[w]
    stances = [a.body.stance for a in per_window[w]]
    return Verdict(
        entity_kind,
        entity,
        level,
        w,
        tuple(sorted(support, key=lambda a: a.body.member_id)),
        roster.hash,
        policy.expires_at(w),
        risk_members=stances.count("risk"),
        clear_members=stances.count("clear"),
    )


@dataclass(frozen=True, slots=True)
class Certificate:
    """The statements that formed a verdict and the hash of the roster they were checked on."""

    entity_kind: str
    entity: bytes
    window: int
    level: Level
    roster_hash: bytes
    statements: tuple[tuple[str, bytes, bytes], ...]  # (member, raw, sig), sorted

    def encode(self) -> bytes:
        return pack(
            [
                _CERT_MAGIC, 1, self.entity_kind, self.entity, self.window, self.level,
                self.roster_hash, [list(s) for s in self.statements],
            ]
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> Certificate:
        w = want_list(unpack_canonical(data, "certificate", MAX_CERT_BYTES), "certificate", n=8)
        if w[0] != _CERT_MAGIC or w[1] != 1 or w[5] not in LEVELS[1:]:
            raise ConsensusError("malformed", "certificate: unknown magic, version or level")
        stmts = []
        for i, s in enumerate(want_list(w[7], "certificate statements", max_len=MAX_MEMBERS)):
            s = want_list(s, f"certificate statement #{i}", n=3)
            stmts.append(
                (
                    want_str(s[0], f"certificate statement #{i} member", min_len=1),
                    want_bytes(s[1], f"certificate statement #{i}", max_len=MAX_ATTESTATION_BYTES),
                    want_bytes(s[2], f"certificate statement #{i} signature", n=64),
                )
            )
        if stmts != sorted(stmts):
            raise ConsensusError("non-canonical", "certificate: statements not sorted")
        return cls(
            entity_kind=want_str(w[2], "certificate entity kind", min_len=1, max_len=16),
            entity=want_bytes(w[3], "certificate entity", max_len=32),
            window=want_int(w[4], "certificate window"),
            level=w[5],
            roster_hash=want_bytes(w[6], "certificate roster hash", n=HASH_LEN),
            statements=tuple(stmts),
        )


@dataclass(frozen=True, slots=True)
class CertificateCheck:
    """What an offline check established about a certificate."""

    level: Level
    entity_kind: str
    entity: bytes
    window: int
    roster_version: int
    members: tuple[str, ...]
    roster_is_tip: bool
    expired: bool | None


def verify_certificate(
    cert: Certificate, chain: RosterChain, *, policy: VerdictPolicy | None = None,
    now_us: int | None = None,
) -> CertificateCheck:  # fmt: skip
    """Check ``cert`` offline; raises :class:`ConsensusError` naming the first problem.

    Checks: the roster hash is a version of ``chain``; every statement is
    signed by a distinct member of that version; all are about the
    certificate's entity and window with that version's key epoch; their
    stance fits the level; and there are enough of them (1, f+1, 2f+1, 2f+1).
    ``expired`` is reported when ``policy`` and ``now_us`` are given.
    """
    roster = chain.by_hash(cert.roster_hash)
    if roster is None:
        raise ConsensusError("unknown-roster", f"roster {cert.roster_hash.hex()} not in the chain")
    want_stance = "clear" if cert.level == "clear" else "risk"
    members: list[str] = []
    for member_id, raw, sig in cert.statements:
        m = roster.member(member_id)
        if m is None:
            raise ConsensusError("not-member", f"{member_id!r} not in roster v{roster.version}")
        if not verify_cached(m.public_key, sig, b"attestation", roster.network, raw):
            raise ConsensusError("bad-signature", f"statement of {member_id!r}")
        b = Attestation.decode(raw)
        if (b.member_id, b.network, b.key_epoch) != (member_id, roster.network, roster.key_epoch):
            raise ConsensusError(
                "bad-certificate", f"statement of {member_id!r}: wrong signer/epoch"
            )
        if (b.entity_kind, b.entity, b.window) != (cert.entity_kind, cert.entity, cert.window):
            raise ConsensusError(
                "bad-certificate", f"statement of {member_id!r}: other entity/window"
            )
        if b.stance != want_stance:
            raise ConsensusError("bad-certificate", f"statement of {member_id!r} is {b.stance}")
        if members and members[-1] == member_id:
            raise ConsensusError("bad-certificate", f"two statements of {member_id!r}")
        members.append(member_id)
    need = {"advisory": 1, "step-up": roster.step_up}.get(cert.level, roster.quorum)
    if len(members) < need:
        raise ConsensusError(
            "bad-certificate", f"{cert.level} needs {need} members, certificate has {len(members)}"
        )
    expired = None
    if policy is not None and now_us is not None:
        expired = now_us >= policy.expires_at(cert.window)
    return CertificateCheck(
        cert.level, cert.entity_kind, cert.entity, cert.window, roster.version,
        tuple(members), roster.hash == chain.tip.hash, expired,
    )  # fmt: skip
