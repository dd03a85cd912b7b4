"""Separate processes of ``fraudnet bench pipeline``: producer, ceiling, floor.

Run as ``python -m fraudnet.bench.pipeline_workers ROLE ...``; each role
prints one JSON object on stdout when done.

* ``producer``: what a member's systems send -- one JSON transaction per
  Kafka message into the node's ``tx-in`` topic, keyed by card, at a fixed
  offered rate (``--rate``) or as fast as the node keeps up (``--rate 0``).
  Each ``tx_id`` is ``<phase><seq>x<send s>s<µs part>`` (no digit run of
  12 or more: ids are refused if they could hide a card number) so the reader can compute
  end-to-end latency without a side channel. Every 1,000th message is
  invalid (a dead letter is expected) and every 2,000th re-sends the
  previous transaction (a duplicate: no second decision is expected). The
  producer never runs more than ``--window`` transactions ahead of the
  acknowledgement count the bench writes to its stdin (the embedded broker
  drops records beyond ~5 MiB per partition).
* ``ceiling``: a plain confluent-kafka ``consume(num_messages=...)`` +
  ``json.loads`` loop over the same messages on an embedded broker.
* ``floor``: a naive Faust agent that validates, scores (same scorer) and
  sends one decision message per input message, one event at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["main", "tx_templates"]

_TEMPLATE = (
    '{"tx_id":"%s","timestamp":%.6f,"card":"%s","terminal_id":"%s","merchant_id":"%s",'
    '"amount":"%s","currency":"%s","mcc":%d,"channel":"%s","country":"%s"}'
)


Template = tuple[str, str, str, str, str, int, str, str]


def tx_templates(n: int = 20_000, seed: int = 11) -> list[Template]:
    """Realistic (card, terminal, merchant, amount, currency, mcc, channel, country) tuples."""
    from fraudnet.replay.generator import GeneratorConfig, generate

    out = []
    for r in generate(GeneratorConfig(seed=seed, days=max(7, n // 1500 + 2)), limit=n):
        out.append(
            (
                str(r["card"]), str(r["terminal_id"]), str(r.get("merchant_id") or "M0"),
                str(r["amount"]), str(r.get("currency") or "EUR"), int(r.get("mcc") or 5411),
                str(r.get("channel") or "pos"), str(r.get("country") or "BE"),
            )
        )  # fmt: skip
    return out


def _messages(phase: str, tpl: list[Any]) -> Iterator[tuple[bytes, bytes, str]]:
    """Endless (value, key, kind) with kind in valid/invalid/dup (see module docstring)."""
    seq = 0
    last: tuple[bytes, bytes] | None = None
    while True:
        if seq % 1000 == 999:
            bad = b'{"tx_id":"bad-%s-%d","card":"c","amount":"-5"}' % (phase.encode(), seq)
            yield bad, b"x", "invalid"
        elif seq % 2000 == 1500 and last is not None:
            yield last[0], last[1], "dup"
        else:
            c, t, m, a, cur, mcc, ch, co = tpl[seq % len(tpl)]
            us = time.time_ns() // 1000
            tx_id = f"{phase}{seq}x{us // 1_000_000}s{us % 1_000_000}"
            v = (_TEMPLATE % (tx_id, us / 1e6, c, t, m, a, cur, mcc, ch, co)).encode()
            last = (v, c[-8:].encode())
            yield v, last[1], "valid"
        seq += 1


def run_producer(a: argparse.Namespace) -> dict[str, Any]:
    from confluent_kafka import Producer

    acked = [0]
    stop_reading = threading.Event()

    def read_acks() -> None:  # the bench writes "<decided+dead>\n" lines to our stdin
        for line in sys.stdin:
            if stop_reading.is_set():
                return
            try:
                acked[0] = int(line)
            except ValueError:
                continue

    threading.Thread(target=read_acks, daemon=True).start()
    tpl = tx_templates()
    p = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": a.linger_ms, "log_level": 3,
                  "queue.buffering.max.messages": 200_000})  # fmt: skip
    counts = {"valid": 0, "invalid": 0, "dup": 0}
    msgs = _messages(a.phase, tpl)
    t0 = time.perf_counter()
    deadline = t0 + a.seconds
    sent = 0
    window_waits = 0
    while sent < a.count and time.perf_counter() < deadline:
        now = time.perf_counter()
        due = a.count if a.rate <= 0 else min(a.count, int((now - t0) * a.rate) + 1)
        burst = 0
        while sent < due and burst < 2000:
            if counts["valid"] + counts["invalid"] - acked[0] >= a.window:
                window_waits += 1
                break
            v, k, kind = next(msgs)
            try:
                p.produce(a.topic, v, key=k)
            except BufferError:
                p.poll(0.005)
                continue
            counts[kind] += 1
            sent += 1
            burst += 1
        p.poll(0)
        if a.rate > 0 or burst == 0:
            time.sleep(0.0005)
    seconds = time.perf_counter() - t0
    left = p.flush(30)
    stop_reading.set()
    return {"sent": sent, **counts, "seconds": round(seconds, 3), "unflushed": left,
            "window_waits": window_waits}  # fmt: skip


def _fill(bootstrap: str, topic: str, n: int) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 3})
    tpl = tx_templates(min(n, 20_000))
    msgs = _messages("f", tpl)
    for _ in range(n):
        v, k, _kind = next(msgs)
        while True:
            try:
                p.produce(topic, v, key=k)
                break
            except BufferError:
                p.poll(0.01)
    if p.flush(30):
        raise RuntimeError("ceiling/floor: could not flush the pre-filled topic")


def run_ceiling(a: argparse.Namespace) -> dict[str, Any]:
    """Plain confluent consume(num_messages=1000) + json.loads; best of ``rounds``."""
    from confluent_kafka import Consumer

    from fraudnet.adapters.stream.broker import EmbeddedBroker

    rates = []
    with EmbeddedBroker() as broker:
        for rnd in range(a.rounds):
            topic = f"ceiling-{rnd}"
            _fill(broker.bootstrap, topic, a.count)
            c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"ceiling-{rnd}",
                          "auto.offset.reset": "earliest", "log_level": 3,
                          "enable.auto.commit": False})  # fmt: skip
            c.subscribe([topic])
            got = 0
            t0 = 0.0
            deadline = time.monotonic() + 60
            while got < a.count and time.monotonic() < deadline:
                batch = c.consume(num_messages=1000, timeout=1.0)
                if batch and not t0:
                    t0 = time.perf_counter()
                for m in batch:
                    if m.error() is None:
                        json.loads(m.value() or b"null")
                        got += 1
            dt = time.perf_counter() - t0
            c.close()
            rates.append(got / dt if dt > 0 else 0.0)
    return {"ceiling_msgs_per_s": round(max(rates), 1), "rounds": [round(r) for r in rates],
            "messages": a.count}  # fmt: skip


def run_floor(a: argparse.Namespace) -> dict[str, Any]:
    """A naive Faust agent: one event = validate + score + one decision message."""
    import faust

    from fraudnet.adapters.stream.app import NodeApp
    from fraudnet.adapters.stream.broker import EmbeddedBroker
    from fraudnet.core.pipeline import DeadLetter, NodeCore
    from fraudnet.core.records import encode_decisions
    from fraudnet.core.scoring import BaselineScorer
    from fraudnet.core.transaction import Normaliser

    broker = EmbeddedBroker()
    broker.start()
    _fill(broker.bootstrap, "floor-in", a.count)
    scorer: Any = BaselineScorer()
    if a.model:
        from pathlib import Path

        from fraudnet.core.scoring.model_scorer import ModelScorer
        from fraudnet.training.modelio import load_model

        model, mid = load_model(Path(a.model))
        scorer = ModelScorer(model, model_id=mid)
    core = NodeCore(scorer, b"\x01" * 32, normaliser=Normaliser(rates={"USD": 0.92}))
    app = NodeApp("bench-floor", broker=f"kafka://{broker.bootstrap}", store="memory://",
                  topic_allow_declare=False, web_enabled=False, autodiscover=False,
                  consumer_auto_offset_reset="earliest", loghandlers=[],
                  datadir=a.datadir)  # fmt: skip
    src = app.topic("floor-in", value_serializer="raw", key_serializer="raw")
    out = app.topic("floor-out", value_serializer="raw", key_serializer="raw")
    res: dict[str, Any] = {"events": 0}
    t_first = [0.0]
    stopping: list[asyncio.Future[Any]] = []

    @app.agent(src, name="naive")
    async def naive(stream: Any) -> None:
        async for value in stream:
            if not t_first[0]:
                t_first[0] = time.perf_counter()
            now = time.time_ns() // 1000
            raw = json.loads(value or b"null")
            adm = core.admit_one(raw, source="floor", location="-", now_us=now)
            if not isinstance(adm, DeadLetter):
                ds = core.decide_many([adm], [now], now)
                await out.send(value=encode_decisions(ds))
            res["events"] += 1
            if res["events"] >= a.count:
                res["seconds"] = time.perf_counter() - t_first[0]
                stopping.append(asyncio.ensure_future(worker.stop()))

    worker = faust.Worker(app, quiet=True, loglevel="WARNING", redirect_stdouts=False,
                          override_logging=False)  # fmt: skip
    worker.spinner = None
    timer = threading.Timer(a.timeout, lambda: worker.loop.call_soon_threadsafe(
        lambda: asyncio.ensure_future(worker.stop())))  # fmt: skip
    timer.start()
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    finally:
        timer.cancel()
        broker.stop()
    secs = float(res.get("seconds", 0.0))
    return {"floor_tx_per_s": round(res["events"] / secs, 1) if secs else 0.0,
            "events": res["events"], "seconds": round(secs, 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="pipeline_workers")
    sub = ap.add_subparsers(dest="role", required=True)
    p = sub.add_parser("producer")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--phase", required=True)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--count", type=int, default=10**9)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--window", type=int, default=20_000)
    p.add_argument("--linger-ms", type=float, default=1.0)
    c = sub.add_parser("ceiling")
    c.add_argument("--count", type=int, default=60_000)
    c.add_argument("--rounds", type=int, default=3)
    f = sub.add_parser("floor")
    f.add_argument("--count", type=int, default=5_000)
    f.add_argument("--model", default="")
    f.add_argument("--datadir", required=True)
    f.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args(argv)
    fn = {"producer": run_producer, "ceiling": run_ceiling, "floor": run_floor}[a.role]
    out = fn(a)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
