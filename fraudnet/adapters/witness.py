"""The node's witness adapter: gossip own audit checkpoints, cosign the peers'.

Theory of operation::

    tick (loop, every interval_s): latest own signed checkpoint (tail of the
        newest sidecar file) -- if it grew -- published on the checkpoints topic
    p2p thread: checkpoint message -> Witness.check (trusted member key,
        signature) ACCEPT | REJECT; cosign message -> both signatures ACCEPT | REJECT
    loop: checkpoint -> Witness.observe -> cosign: store + publish the cosignature
                                        -> split view: store the proof, log an error
          cosign of one of *our* checkpoints -> store it

Witness store (``DIR/witness/``, JSON Lines, one record per line, see
:class:`~fraudnet.core.audit.witness.Cosigned`)::

    cosigned.jsonl      peers' checkpoints this node cosigned (with its cosignature)
    received.jsonl      this node's checkpoints with the cosignatures peers sent back
    conflicts.jsonl     split-view proofs this node detected

``fraudnet audit verify LOG --witnesses DIR...`` reads them. Lines are
appended and flushed (not fsynced: a lost line only loses one witness copy).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.core import crypto
from fraudnet.core.audit.checkpoint import SIGNED_LEN
from fraudnet.core.audit.framing import split_frames
from fraudnet.core.audit.segment import CKP_MAGIC
from fraudnet.core.audit.witness import (
    CKPT_MSG_LEN,
    COSIGN_MSG_LEN,
    Cosigned,
    Witness,
    decode_checkpoint_msg,
    decode_cosign_msg,
    encode_checkpoint_msg,
    encode_cosign_msg,
    log_key_of,
    make_signer,
)
from fraudnet.core.signals import Outcome
from fraudnet.errors import ConfigError, IntegrityError

from .p2p.service import P2PService
from .p2p.settings import P2PSettings
from .storage.audit_files import list_segments
from .storage.audit_log import AuditLog

__all__ = ["WitnessBridge", "WitnessSettings", "read_witness_dir"]

log = logging.getLogger("fraudnet.witness")
FILES: Final = ("cosigned.jsonl", "received.jsonl")
CONFLICTS: Final = "conflicts.jsonl"
_FRAME: Final = 8 + SIGNED_LEN
MAX_LINE: Final = 4096


@dataclass(frozen=True, slots=True)
class WitnessSettings:
    """``[witness]`` of ``node.toml``: ``interval_s`` (gossip period, default 10)."""

    interval_s: float = 10.0
    store_dir: Path = Path("witness")

    @classmethod
    def from_mapping(cls, m: Any, where: str, node_dir: Path) -> WitnessSettings:
        if not isinstance(m, Mapping):
            raise ConfigError(f"{where}: [witness] must be a table")
        unknown = sorted(set(m) - {"interval_s", "store_dir"})
        if unknown:
            raise ConfigError(f"{where}: witness.{unknown[0]}: unknown setting")
        iv = m.get("interval_s", 10)
        if type(iv) not in (int, float) or not 0.1 <= iv <= 3600:
            raise ConfigError(f"{where}: witness.interval_s: must be a number in [0.1, 3600]")
        sd = m.get("store_dir", "witness")
        if not isinstance(sd, str) or not sd:
            raise ConfigError(f"{where}: witness.store_dir: must be a non-empty string")
        return cls(float(iv), node_dir / sd)


def topics(network_id: str) -> tuple[str, str]:
    return f"fraudnet/{network_id}/checkpoints/1", f"fraudnet/{network_id}/cosignatures/1"


def latest_signed_checkpoint(log_dir: Path) -> bytes | None:
    """The newest signed checkpoint in the newest sidecar (fixed-size frames), or None."""
    segs = list_segments(log_dir)
    if not segs:
        return None
    path = segs[-1].ckp
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            n = (size - len(CKP_MAGIC)) // _FRAME
            if n <= 0:
                return None
            f.seek(len(CKP_MAGIC) + (n - 1) * _FRAME)
            tail = f.read(_FRAME)
    except OSError:
        return None
    frames, _, _ = split_frames(tail, 0)
    return frames[0][1] if frames and len(frames[0][1]) == SIGNED_LEN else None


class WitnessBridge:
    """See module docstring. ``tick`` and ``_on_*`` run on the loop, ``_validate_*`` on trio."""

    def __init__(
        self,
        settings: WitnessSettings,
        p2p_settings: P2PSettings,
        node_key: Ed25519PrivateKey,
        audit_log: AuditLog,
        node_dir: Path,
    ) -> None:
        self.settings = settings
        self.network = audit_log.network_id
        self.log_dir = audit_log.dir
        self.own_key = crypto.public_bytes(node_key)
        trusted = {pk: name for name, pk in p2p_settings.members.items()}
        trusted.setdefault(self.own_key, "self")
        self.witness = Witness(self.network, trusted, make_signer(node_key, self.network),
                               self.own_key)  # fmt: skip
        self.ckpt_topic, self.cosign_topic = topics(self.network)
        self.counters: Counter[str] = Counter()
        self.p2p: P2PService | None = None
        self._last_sent_size = -1
        self._next_at = 0.0
        self._received: set[tuple[bytes, bytes]] = set()
        settings.store_dir.mkdir(parents=True, exist_ok=True)

    def attach(self, p2p: P2PService) -> None:
        self.p2p = p2p
        p2p.register_topic(self.ckpt_topic, self._validate_checkpoint, self._on_checkpoint,
                           max_bytes=CKPT_MSG_LEN, rate_per_s=5.0, burst=20.0)  # fmt: skip
        n = max(2, len(self.witness.trusted))
        p2p.register_topic(
            self.cosign_topic, self._validate_cosign, self._on_cosign,
            max_bytes=COSIGN_MSG_LEN, rate_per_s=5.0 * n, burst=20.0 * n,
        )  # fmt: skip

    def metrics(self) -> dict[str, int]:
        return {f"witness_{k.replace('-', '_')}": v for k, v in self.counters.items()}

    # -- own checkpoints out ---------------------------------------------------------
    def tick(self, now_us: int) -> None:
        now = time.monotonic()
        if now < self._next_at or self.p2p is None:
            return
        self._next_at = now + self.settings.interval_s
        self.gossip_latest()

    def gossip_latest(self) -> bool:
        signed = latest_signed_checkpoint(self.log_dir)
        if signed is None or self.p2p is None:
            return False
        size = int.from_bytes(signed[37:45], "big")
        if size == self._last_sent_size:
            return False
        self._last_sent_size = size
        self.counters["checkpoints_gossiped"] += 1
        return self.p2p.publish_nowait(self.ckpt_topic, encode_checkpoint_msg(signed))

    # -- trio-side validators ------------------------------------------------------------
    def _validate_checkpoint(self, origin: str, data: bytes) -> Outcome:
        try:
            self.witness.check(decode_checkpoint_msg(data))
        except IntegrityError:
            return Outcome.REJECT
        return Outcome.ACCEPT

    def _validate_cosign(self, origin: str, data: bytes) -> Outcome:
        try:
            c = decode_cosign_msg(data, self.network)
            if c.witness_key not in self.witness.trusted:
                return Outcome.REJECT
            self.witness.check(c.signed)
            c.verify(c.log_key)
        except IntegrityError:
            return Outcome.REJECT
        return Outcome.ACCEPT

    # -- loop-side -------------------------------------------------------------------------
    def _on_checkpoint(self, origin: str, data: bytes) -> None:
        signed = decode_checkpoint_msg(data)
        if log_key_of(signed) == self.own_key:
            return  # our own, relayed back
        obs = self.witness.observe(signed, time.time_ns() // 1000)
        self.counters[f"observed_{obs.kind}"] += 1
        if obs.cosigned is not None:
            self._append("cosigned.jsonl", obs.cosigned.to_json())
            if self.p2p is not None:
                self.p2p.publish_nowait(self.cosign_topic, encode_cosign_msg(obs.cosigned))
        if obs.split_view is not None:
            self._append(CONFLICTS, obs.split_view.to_json())
            log.error(
                "split view: member key %s signed two checkpoints of size %d",
                crypto.key_id(obs.split_view.log_key), obs.checkpoint.tree_size if obs.checkpoint
                else -1,
                extra={"fields": {"event": "witness_split_view"}},
            )  # fmt: skip

    def _on_cosign(self, origin: str, data: bytes) -> None:
        c = decode_cosign_msg(data, self.network)
        if c.log_key != self.own_key or c.witness_key == self.own_key:
            return
        k = (c.witness_key, c.signed[:85])
        if k in self._received:
            return
        if len(self._received) > 100_000:
            self._received.clear()
        self._received.add(k)
        self.counters["cosignatures_received"] += 1
        self._append("received.jsonl", c.to_json())

    def _append(self, name: str, doc: dict[str, Any]) -> None:
        try:
            with (self.settings.store_dir / name).open("a", encoding="utf-8") as f:
                f.write(json.dumps(doc, sort_keys=True) + "\n")
        except OSError as e:
            self.counters["store_errors"] += 1
            log.error("witness store %s: %s", name, e)


def read_witness_dir(path: Path) -> tuple[list[Cosigned], list[Any]]:
    """Cosigned checkpoints and split-view records from a node directory, its ``witness/``
    directory, or one JSON Lines export file. Bad lines raise :class:`IntegrityError`."""
    from fraudnet.core.audit.witness import SplitView

    if path.is_file():
        files = [path]
    else:
        d = path / "witness" if (path / "witness").is_dir() else path
        files = [d / n for n in (*FILES, CONFLICTS) if (d / n).exists()]
        if not files:
            raise IntegrityError(f"{path}: no witness records (cosigned/received/conflicts.jsonl)")
    cos: list[Cosigned] = []
    splits: list[SplitView] = []
    for f in files:
        try:
            lines = f.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise IntegrityError(f"{f}: unreadable ({e})") from None
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{f}:{i}"
            if len(line) > MAX_LINE:
                raise IntegrityError(f"{where}: line longer than {MAX_LINE} characters")
            try:
                doc = json.loads(line)
            except ValueError:
                if i == len(lines):  # torn last line after a crash
                    continue
                raise IntegrityError(f"{where}: not JSON") from None
            if isinstance(doc, dict) and "a" in doc and "b" in doc:
                splits.append(SplitView.from_json(doc, where))
            else:
                cos.append(Cosigned.from_json(doc, where))
    return cos, splits
