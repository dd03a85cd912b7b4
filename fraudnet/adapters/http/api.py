"""The node's HTTP API (aiohttp, on the node's event loop).

==================  ======  ================================================
route               auth    what
==================  ======  ================================================
GET  /health        no      liveness and counters
GET  /metrics       opt.    Prometheus text format
POST /v1/decide     bearer  one transaction (JSON) -> its decision
POST /v1/ingest     bearer  JSON Lines or a JSON array (<= 10,000 records) ->
                            decided through the stream path, answered when
                            every record has a decision or a dead letter
POST /v1/labels     bearer  label events -> the labels topic
GET  /v1/stats      bearer  counters
==================  ======  ================================================

Errors are JSON ``{"error": ..., "field": ..., "location": ...}`` with a
4xx status; above ``max_inflight`` concurrent requests every ``/v1`` route
answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import hmac
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from mode import Service

from fraudnet.core.pipeline import DeadLetter
from fraudnet.core.records import TxRecord
from fraudnet.errors import TransactionError

from ..runtime import NodeRuntime

__all__ = ["HttpService", "build_http_app"]

log = logging.getLogger("fraudnet.http")

MAX_BODY = 8 * 1024 * 1024
MAX_INGEST_RECORDS = 10_000
LABEL_KINDS = ("fraud", "chargeback", "false_positive", "genuine")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, msg: str, **extra: Any) -> web.Response:
    return web.json_response({"error": msg, **extra}, status=status)


def build_http_app(
    runtime: NodeRuntime,
    *,
    token: str,
    max_inflight: int,
    metrics_auth: bool = False,
    info: dict[str, Any] | None = None,
    send_labels: Callable[[list[bytes]], Awaitable[None]] | None = None,
) -> web.Application:
    inflight = 0
    metrics = runtime.metrics
    expected = f"Bearer {token}".encode()

    # labelled children cached: a labels() lookup per request costs more than the count;
    # bounded (routes are _ROUTES or "other", statuses a few codes)
    children: dict[tuple[str, str], Any] = {}

    def count(route: str, status: str) -> None:
        child = children.get((route, status))
        if child is None:
            child = children[(route, status)] = metrics.http_requests.labels(
                route=route, status=status
            )
        child.inc()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal inflight
        path = request.path
        route = path if path in _ROUTES else "other"
        needs_auth = path.startswith("/v1/") or (path == "/metrics" and metrics_auth)
        if needs_auth:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                count(route, "401")
                return _error(401, "missing or wrong bearer token")
        if path.startswith("/v1/") and inflight >= max_inflight:
            metrics.shed.inc()
            count(route, "503")
            resp = _error(503, "node saturated; retry later")
            resp.headers["Retry-After"] = "1"
            return resp
        inflight += 1
        try:
            resp = await handler(request)  # type: ignore[assignment]  # a Response here
        except web.HTTPException as e:
            count(route, str(e.status))
            raise
        except Exception:  # a bug: answer 500, never crash the node
            log.exception("http: internal error on %s", path)
            count(route, "500")
            return _error(500, "internal error")
        finally:
            inflight -= 1
        count(route, str(resp.status))
        return resp

    async def read_body(request: web.Request) -> bytes | web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {MAX_BODY} bytes")

    async def health(request: web.Request) -> web.Response:
        counters = runtime.core.counters.as_dict()
        return web.json_response({"status": "ok", **(info or {}), **counters})

    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                **runtime.core.counters.as_dict(),
                "inflight_batches": runtime.inflight_batches,
                # the stream consumer's current fetch wait: the idle back-off (ADR 0505)
                "fetch_wait_ms": getattr(runtime.fetch_wait, "wait_ms", None),
                # embedded broker: input records deleted once consumed (ADR 0506)
                "broker_trim": runtime.broker_trim.stats() if runtime.broker_trim else None,
                "batches_decided": runtime.batches_decided,
                "admit_seconds": round(runtime.admit_seconds, 6),
                "decide_seconds": round(runtime.decide_seconds, 6),
                "cpu_seconds": round(time.process_time(), 3),
                "state": _state_info(runtime.core.scorer),
                # memory held by design (the de-dup retention window): soaks report it
                "dedup_filter": {
                    "generations": runtime.dedup.generations,
                    "bytes": runtime.dedup.nbytes,
                    "ids": runtime.dedup.ids_held,
                },
            }
        )

    async def decide(request: web.Request) -> web.Response:
        arrival = runtime.clock()
        body = await read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError) as e:  # also >4300-digit numbers, deep nesting
            return _error(400, f"body is not valid JSON ({str(e)[:120] or 'nested too deeply'})")
        if not isinstance(obj, dict):
            return _error(400, "body must be a JSON object (one transaction)")
        res = await runtime.decide_now(obj, source="POST /v1/decide", arrival=arrival)
        if res.dead_letter is not None:
            dl = res.dead_letter
            return _error(400, dl.reason, field=dl.field)
        if res.decision is None and res.duplicate_of is None:
            resp = _error(409, "this transaction id is being decided right now; retry")
            resp.headers["Retry-After"] = "1"
            return resp
        if res.duplicate_of is not None:
            outcome, score, decided_at = res.duplicate_of
            return web.json_response(
                {
                    "tx_id": obj.get(runtime.core.fields.tx_id),
                    "outcome": outcome,
                    "score": score,
                    "duplicate": True,
                    "decided_at_us": decided_at,
                }
            )
        d = res.decision
        assert d is not None
        return web.json_response(
            {
                "tx_id": d.tx_id,
                "outcome": d.outcome,
                "score": d.score,
                "reasons": list(d.reasons),
                "model_id": d.model_id,
                "latency_us": d.latency_us,
                "duplicate": False,
            }
        )

    async def ingest(request: web.Request) -> web.Response:
        arrival = runtime.clock()
        body = await read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            items = _split_records(body)
        except ValueError as e:
            return _error(400, str(e))
        if len(items) > MAX_INGEST_RECORDS:
            return _error(413, f"{len(items)} records; at most {MAX_INGEST_RECORDS} per request")
        core = runtime.core
        records: list[TxRecord] = []
        arrivals: list[int] = []
        dead: list[DeadLetter] = []
        source = request.headers.get("X-Fraudnet-Source", "POST /v1/ingest")[:200]
        for loc, obj, raw in items:
            if isinstance(obj, dict) and "__unreadable__" in obj:  # a client could not parse it
                obj = _Unparsable(str(obj["__unreadable__"])[:300])
                loc = str(raw and json.loads(raw).get("__location__", loc))[:200]
            if isinstance(obj, _Unparsable):
                core.count_received_undecodable()
                err = TransactionError(obj.reason, source=source, location=loc)
                dead.append(core.dead_letter(err, payload=raw, now_us=arrival))
                continue
            adm = core.admit_one(obj, source=source, location=loc, now_us=arrival, payload=raw)
            if isinstance(adm, DeadLetter):
                dead.append(adm)
            else:
                records.append(adm)
                arrivals.append(arrival)
        metrics.received.labels(path="http-ingest").inc(len(items))
        await runtime.publish_dead_letters(dead)
        result = await runtime.publish_batch(records, arrivals, wait=True)
        assert result is not None
        return web.json_response(
            {
                "received": len(items),
                "decided": result.decided,
                "duplicates": result.duplicates,
                "dead_lettered": len(dead),
                "errors": [
                    {"location": d.location, "field": d.field, "error": d.reason} for d in dead[:20]
                ],
            }
        )

    async def labels(request: web.Request) -> web.Response:
        body = await read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            items = _split_records(body)
        except ValueError as e:
            return _error(400, str(e))
        out: list[bytes] = []
        for loc, obj, _ in items:
            if not isinstance(obj, dict):
                return _error(400, "label must be an object", location=loc)
            kind = obj.get("kind")
            tx_id = obj.get("tx_id")
            if kind not in LABEL_KINDS:
                return _error(400, f"kind must be one of {', '.join(LABEL_KINDS)}", location=loc)
            if not isinstance(tx_id, str) or not 0 < len(tx_id) <= 64:
                return _error(400, "tx_id must be a string of 1-64 characters", location=loc)
            event_us = obj.get("event_time_us", runtime.clock())
            if not isinstance(event_us, int):
                return _error(400, "event_time_us must be an integer", location=loc)
            out.append(
                json.dumps({"tx_id": tx_id, "kind": kind, "event_time_us": event_us}).encode()
            )
        if send_labels is not None:
            await send_labels(out)
        return web.json_response({"accepted": len(out)})

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/v1/stats", stats)
    app.router.add_post("/v1/decide", decide)
    app.router.add_post("/v1/ingest", ingest)
    app.router.add_post("/v1/labels", labels)
    return app


def _state_info(scorer: Any) -> dict[str, Any] | None:
    """Feature-state size of a stateful scorer (None for a stateless one)."""
    st = getattr(scorer, "state", None)
    if st is None or not hasattr(st, "memory_bytes"):
        return None
    total = int(st.memory_bytes())
    cards, terms = int(st.n_cards), int(st.n_terminals)
    cfg = st.config
    return {
        "bytes": total,
        "cards": cards,
        "terminals": terms,
        "bytes_per_entity": round(total / max(1, cards + terms), 1),
        "designed_bytes_per_card": int(cfg.bytes_per_card()),
        "designed_bytes_per_terminal": int(cfg.bytes_per_terminal()),
    }


_ROUTES = frozenset({"/health", "/metrics", "/v1/stats", "/v1/decide", "/v1/ingest", "/v1/labels"})


def _split_records(body: bytes) -> list[tuple[str, Any, str]]:
    """A JSON array or JSON Lines -> [(location, object, raw text)]."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"body is not UTF-8 ({e})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            arr = json.loads(text)
        except (ValueError, RecursionError) as e:  # also >4300-digit numbers, deep nesting
            why = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:120]
            raise ValueError(f"body is not a valid JSON array ({why})") from None
        return [(f"record {i}", o, json.dumps(o)[:2048]) for i, o in enumerate(arr)]
    out: list[tuple[str, Any, str]] = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            obj = _Unparsable(f"not valid JSON ({e.msg} at column {e.colno})")
        except (ValueError, RecursionError) as e:  # >4300-digit numbers, deep nesting
            why = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:120]
            obj = _Unparsable(f"not valid JSON ({why})")
        out.append((f"line {i}", obj, line[:2048]))
    return out


class _Unparsable(dict[str, Any]):
    """Placeholder for an unparsable JSON line: fails validation with its reason."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class HttpService(Service):
    """Runs the aiohttp app on the node's loop; :attr:`url` once started."""

    def __init__(
        self,
        app: web.Application,
        listen: str,
        *,
        tls: tuple[str, str] | None = None,
        **kw: Any,
    ) -> None:
        self.app = app
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.tls = tls
        self.url = ""
        self._runner: web.AppRunner | None = None
        super().__init__(**kw)

    async def on_start(self) -> None:
        ctx = None
        if self.tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.tls[0], self.tls[1])
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ctx, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]  # a Server
        scheme = "https" if ctx else "http"
        self.url = f"{scheme}://{self.host}:{port}"

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
