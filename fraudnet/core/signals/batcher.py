"""Publisher-side batching: at most one envelope per flush interval (sans-IO).

The node offers signals as it decides transactions; :meth:`SignalBatcher.poll`
returns at most one :class:`~fraudnet.core.signals.codec.SignalPayload` per
``flush_interval_us`` carrying up to :data:`MAX_SIGNALS` pending signals.

Drop policy: the pending queue holds at most ``max_pending`` signals; when it
is full, a newly offered signal is dropped (drop-newest, counted in
``counters["signals_batch_dropped"]``): older signals are closer to expiry,
and the budget already limits how many a node may send. A signal for an
entity already pending replaces the pending one (the newest score wins).

Sequence numbers start at ``next_seq`` and only grow; the adapter persists a
reserved high-water mark (see :meth:`reserve_needed`) before publishing, so a
restarted node never reuses a number.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import MAX_SIGNALS, Signal, SignalPayload

__all__ = ["SignalBatcher"]


@dataclass
class SignalBatcher:
    network_id: str
    signer: str
    next_seq: int = 0
    flush_interval_us: int = 100_000
    max_pending: int = 4096
    max_per_envelope: int = MAX_SIGNALS

    def __post_init__(self) -> None:
        self._pending: dict[tuple[str, bytes], Signal] = {}
        self._last_flush_us: int | None = None
        self.counters: dict[str, int] = {
            "signals_batch_offered": 0,
            "signals_batch_dropped": 0,
            "signals_batch_replaced": 0,
            "signals_envelopes_built": 0,
            "signals_batched": 0,
        }

    def __len__(self) -> int:
        return len(self._pending)

    def offer(self, signal: Signal) -> bool:
        """Queue one signal; False if it was dropped because the queue is full."""
        self.counters["signals_batch_offered"] += 1
        k = (signal.kind, signal.pseudonym)
        if k in self._pending:
            self.counters["signals_batch_replaced"] += 1
            self._pending[k] = signal
            return True
        if len(self._pending) >= self.max_pending:
            self.counters["signals_batch_dropped"] += 1
            return False
        self._pending[k] = signal
        return True

    def due_at(self) -> int | None:
        """Earliest time the next envelope may go out (None: nothing pending)."""
        if not self._pending:
            return None
        return 0 if self._last_flush_us is None else self._last_flush_us + self.flush_interval_us

    def poll(self, now_us: int, key_epoch: int) -> SignalPayload | None:
        """The next envelope payload if one is due at ``now_us``, else None."""
        due = self.due_at()
        if due is None or now_us < due:
            return None
        drained = []
        for k in list(self._pending)[: self.max_per_envelope]:
            drained.append(self._pending.pop(k))
        live = tuple(s for s in drained if s.expires_at_us > now_us)
        self._last_flush_us = now_us
        if not live:
            return None
        seq = self.next_seq
        self.next_seq += 1
        self.counters["signals_envelopes_built"] += 1
        self.counters["signals_batched"] += len(live)
        return SignalPayload(self.network_id, self.signer, key_epoch, seq, now_us, live)
