"""The ingest process: ``tx-in`` (one transaction per message) -> ``tx-batch`` batches.

Run by the node (:mod:`.ingest_proc`), never by hand::

    python -m fraudnet.adapters.stream.ingest_worker --node-dir DIR --bootstrap HOST:PORT \\
        --fd N --generation G

It does what the in-process :class:`~.ingest.IngestService` does -- consume,
decode, validate, pseudonymise, shard by card, publish one ``tx-batch``
message per shard, dead-letter invalid records -- in its own process, so
this per-transaction Python no longer competes with scoring for the node's
GIL (ADR 0502).

Protocol with the node over the inherited socket ``--fd`` (lines):

* node -> here: ``A <seq>`` the batch ``x:<generation>:<seq>`` is decided
  (its audit records are durable); ``S`` stop.
* here -> node: one JSON object per line: ``{"t": "count", "received": n,
  "dead": m, "fields": {field: k}, "admit_s": s}`` for every fetch (the
  node adds them to its counters before any of the fetch's batches can be
  decided: the socket is faster than the broker hop), ``{"t": "bye"}`` last.

Guarantees (the same as in-process ingest):

1. ``tx-in`` offsets are committed only once every batch of every fetch up
   to them has been acknowledged by the node, in order; dead letters are
   flushed to the broker before a commit. A crash of either process loses
   nothing: uncommitted records are read again and the node's de-dup store
   answers re-sent ids as duplicates.
2. At most ``max_inflight_batches`` batches are unacknowledged; at the bound
   this process stops fetching.
3. It never outlives the node: the kernel sends it SIGTERM when the parent
   dies (``PR_SET_PDEATHSIG``), and it exits when the socket closes.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import logging
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

log = logging.getLogger("fraudnet.ingest.worker")
#: at most one offset commit per this interval while fetches keep coming
COMMIT_EVERY_S = 0.2
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the socket EOF still ends us
        pass


class _Fetch:
    """One consumed list of messages: its offsets and its unacknowledged batches."""

    __slots__ = ("offsets", "remaining")

    def __init__(self, offsets: dict[int, int], remaining: int) -> None:
        self.offsets = offsets
        self.remaining = remaining


class IngestWorker:
    def __init__(self, node_dir: Path, bootstrap: str, fd: int, generation: int) -> None:
        from confluent_kafka import Consumer, Producer

        from fraudnet.config import load_settings
        from fraudnet.core.pipeline import NodeCore
        from fraudnet.core.scoring import BaselineScorer
        from fraudnet.core.transaction import FieldMap, Normaliser

        from ..storage.keys import load_local_secret

        s = load_settings(node_dir)
        self.settings = s
        self.generation = generation
        prefix = s.broker.topic_prefix
        # the names of stream/app.py's TopicNames (not imported: it pulls in Faust)
        self.tx_in, self.tx_batch = f"{prefix}.tx-in", f"{prefix}.tx-batch"
        self.dead_topic = f"{prefix}.dead-letters"
        self.partitions = s.broker.topic_partitions()
        self.fmt = s.ingest.format
        self.batch_max = s.ingest.batch_max
        self.linger_s = s.ingest.linger_ms / 1000
        self.max_inflight = s.ingest.max_inflight_batches
        # the scorer is never called here: admission only validates and pseudonymises
        self.core = NodeCore(
            BaselineScorer(),
            load_local_secret(node_dir),
            fields=FieldMap.from_mapping(s.ingest.fields, where="ingest.fields"),
            normaliser=Normaliser(
                reporting_currency=s.currency.reporting,
                default_currency=s.currency.default,
                rates=dict(s.currency.rates),
            ),
        )
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"fraudnet-{s.node.name}-ingest",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": s.broker.fetch_wait_ms(),
                "max.partition.fetch.bytes": 4 * 1024 * 1024,
                "log_level": 3,
            }
        )
        self.consumer.subscribe([self.tx_in])
        # linger 0: the batch is already formed (one message per shard per fetch); a
        # librdkafka linger only delayed it (node leg p50 4.5 -> 3.4 ms, ADR 0506)
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 0, "log_level": 3,
             "message.max.bytes": 16 * 1024 * 1024}
        )  # fmt: skip
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(False)
        self._rx = b""
        self.seq = 0
        self.fetches: collections.deque[_Fetch] = collections.deque()
        self.by_seq: dict[int, _Fetch] = {}
        self.acked: dict[int, int] = {}
        self.last_commit = 0.0
        self.stopping = False
        self.parent_gone = False
        self.delivery_errors = 0

    # -- the node's socket -----------------------------------------------------
    def _send(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        except OSError:
            self.parent_gone = True
        finally:
            self.sock.setblocking(False)

    def _read_node(self, timeout: float) -> None:
        """Apply the node's acknowledgements (waiting up to ``timeout`` for one)."""
        if timeout > 0:
            select.select([self.sock], [], [], timeout)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.parent_gone = self.stopping = True
                return
            self._rx += chunk
            *lines, self._rx = self._rx.split(b"\n")
            for line in lines:
                if line == b"S":
                    self.stopping = True
                elif line.startswith(b"A "):
                    self._ack(int(line[2:]))

    def _ack(self, seq: int) -> None:
        f = self.by_seq.pop(seq, None)
        if f is not None:
            f.remaining -= 1
        while self.fetches and self.fetches[0].remaining == 0:
            self.acked.update(self.fetches.popleft().offsets)  # in order: offsets only grow

    @property
    def inflight(self) -> int:
        return len(self.by_seq)

    def _commit(self, force: bool) -> None:
        now = time.monotonic()
        if not self.acked or (not force and now - self.last_commit < COMMIT_EVERY_S):
            return
        from confluent_kafka import TopicPartition

        self.producer.flush(10)  # dead letters of the committed fetches are delivered
        tps = [TopicPartition(self.tx_in, p, o) for p, o in self.acked.items()]
        try:
            self.consumer.commit(offsets=tps, asynchronous=False)
        except Exception as e:  # re-delivery is safe: de-duplicated by the node
            log.warning("ingest worker: offset commit failed (will be re-read): %r", e)
        self.acked = {}
        self.last_commit = now

    # -- one fetch ---------------------------------------------------------------
    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.delivery_errors += 1
            log.error("ingest worker: produce to %s failed: %s", msg.topic(), err)

    def _fetch(self) -> list[Any]:
        first = self.consumer.poll(0.1)
        if first is None:
            return []
        msgs = [first]
        if self.batch_max > 1:
            msgs += self.consumer.consume(num_messages=self.batch_max - 1, timeout=self.linger_s)
        good = [m for m in msgs if m.error() is None]
        for m in msgs:
            if m.error() is not None:
                log.warning("ingest worker: consumer error: %s", m.error())
        return good

    def _process(self, msgs: list[Any]) -> None:
        from fraudnet.core.ids import key64
        from fraudnet.core.pipeline import DeadLetter
        from fraudnet.core.records import TxRecord, encode_tx_batch
        from fraudnet.errors import TransactionError

        from .ingest import decode_value

        core = self.core
        t0 = time.perf_counter()
        now = time.time_ns() // 1000
        shards: dict[int, list[TxRecord]] = {}
        dead: list[DeadLetter] = []
        offsets: dict[int, int] = {}
        parts = self.partitions
        for m in msgs:
            part, off, value = m.partition(), m.offset(), m.value()
            where = f"partition {part} offset {off}"
            offsets[part] = off + 1
            try:
                obj = decode_value(value, self.fmt)
            except ValueError as e:
                core.count_received_undecodable()
                dead.append(core.dead_letter(
                    TransactionError(str(e), source=self.tx_in, location=where),
                    payload=repr((value or b"")[:512]), now_us=now))  # fmt: skip
                continue
            adm = core.admit_one(
                obj, source=self.tx_in, location=where, now_us=now,
                payload=(value or b"")[:2048].decode("utf-8", "replace"),
            )  # fmt: skip
            if isinstance(adm, DeadLetter):
                dead.append(adm)
            else:
                shards.setdefault(key64(adm.card_ref) % parts, []).append(adm)
        fields: dict[str, int] = {}
        for d in dead:
            fields[d.field or "-"] = fields.get(d.field or "-", 0) + 1
        for d in dead:
            self.producer.produce(self.dead_topic, json.dumps(d.to_wire(), separators=(",", ":")),
                                  on_delivery=self._on_delivery)  # fmt: skip
        fetch = _Fetch(offsets, len(shards))
        self.fetches.append(fetch)
        # counts first: the node must know they were received before it decides them
        self._send({"t": "count", "received": len(msgs), "dead": len(dead), "fields": fields,
                    "admit_s": round(time.perf_counter() - t0, 6)})  # fmt: skip
        for part, recs in sorted(shards.items()):
            self.seq += 1
            self.by_seq[self.seq] = fetch
            batch_id = f"x:{self.generation}:{self.seq}"
            value = encode_tx_batch(recs, [now] * len(recs), batch_id)
            self._produce(value, part)
        self.producer.poll(0)
        self._ack(-1)  # a fetch with dead letters only is complete now

    def _produce(self, value: bytes, part: int) -> None:
        while True:
            try:
                self.producer.produce(self.tx_batch, value, partition=part,
                                      on_delivery=self._on_delivery)  # fmt: skip
                return
            except BufferError:  # the local queue is full: let it drain
                self.producer.poll(0.05)

    # -- main loop -----------------------------------------------------------------
    def run(self) -> int:
        self._send({"t": "ready", "generation": self.generation})
        while not self.stopping and not self.parent_gone:
            self._read_node(0.0)
            if self.inflight >= self.max_inflight:
                self._read_node(0.05)  # wait for the node to decide something
                continue
            msgs = self._fetch()
            if msgs:
                self._process(msgs)
            self._commit(force=False)
            if self.delivery_errors:
                log.error("ingest worker: stopping after failed produce requests")
                return 3
        if not self.parent_gone:  # drain: wait (bounded) for the node to decide in-flight
            deadline = time.monotonic() + 15
            while self.by_seq and not self.parent_gone and time.monotonic() < deadline:
                self._read_node(0.05)
            self._commit(force=True)
            self._send({"t": "bye", "inflight": self.inflight})
        self.producer.flush(5)
        self.consumer.close()
        return 0


def main(argv: list[str] | None = None) -> int:
    _die_with_parent()
    p = argparse.ArgumentParser(prog="fraudnet-ingest-worker")
    p.add_argument("--node-dir", type=Path, required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--generation", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format='{"level": "%(levelname)s", "logger": "%(name)s", '
                               '"msg": "%(message)s"}')  # fmt: skip
    w = IngestWorker(a.node_dir, a.bootstrap, a.fd, a.generation)

    def on_term(signum: int, frame: Any) -> None:
        w.stopping = True  # the loop ends, drains (bounded) and commits

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node forwards Ctrl-C as "S"
    return w.run()


if __name__ == "__main__":
    raise SystemExit(main())
