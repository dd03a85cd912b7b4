"""Summaries of an audit log for ``fraudnet audit stats`` and ``report --html``.

The HTML report is one self-contained page: an inline SVG timeline (no
plotting dependency), outcome counts and decision latency percentiles.
Card references appear only as pseudonyms; nothing here can see a PAN.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraudnet.adapters.storage.audit_files import iter_payloads, list_segments
from fraudnet.core.audit.framing import parse_record_payload
from fraudnet.core.audit.schema import decode_body
from fraudnet.errors import AuditError, InputError

__all__ = ["Summary", "percentile", "render_html", "summarise"]

SERIES = ("decision", "signal", "verdict")
COLOURS = {"decision": "#1f77b4", "signal": "#2ca02c", "verdict": "#d62728"}


@dataclass(slots=True)
class Summary:
    records: int = 0
    first_seq: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies: list[int] = field(default_factory=list)
    events: list[tuple[int, str]] = field(default_factory=list)  # (at_us, series)
    first_us: int | None = None
    last_us: int | None = None
    segments_online: int = 0
    segments_archived: int = 0
    bytes_on_disk: int = 0

    def as_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "records": self.records,
            "first_seq": self.first_seq,
            "kinds": dict(sorted(self.kinds.items())),
            "decision_outcomes": dict(sorted(self.outcomes.items())),
            "latency_us": {f"p{q}": percentile(lat, q) for q in (50, 90, 99)}
            | {"max": lat[-1] if lat else None},
            "first_at": _iso(self.first_us),
            "last_at": _iso(self.last_us),
            "segments_online": self.segments_online,
            "segments_archived": self.segments_archived,
            "bytes_on_disk": self.bytes_on_disk,
        }


def _iso(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat()


def percentile(sorted_values: list[int], q: float) -> int | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def summarise(log_dir: Path, *, keep_events: bool = False) -> Summary:
    s = Summary()
    for seg in list_segments(log_dir):
        s.bytes_on_disk += seg.log.stat().st_size
        if seg.archived:
            s.segments_archived += 1
        else:
            s.segments_online += 1
    first = True
    for seq, payload in iter_payloads(log_dir):
        try:
            rec = decode_body(parse_record_payload(payload)[2])
        except InputError as e:
            raise AuditError(f"{log_dir}: record {seq}: {e}") from None
        if first:
            s.first_seq, first = seq, False
        s.records += 1
        s.kinds[rec.kind] += 1
        s.first_us = rec.at_us if s.first_us is None else min(s.first_us, rec.at_us)
        s.last_us = rec.at_us if s.last_us is None else max(s.last_us, rec.at_us)
        series = rec.kind.split("_")[0]
        if rec.kind == "decision":
            s.outcomes[rec.outcome] += 1
            lat = rec.details.get("latency_us")
            if isinstance(lat, int):
                s.latencies.append(lat)
        if keep_events and series in SERIES:
            s.events.append((rec.at_us, series))
    return s


def _timeline_svg(s: Summary, width: int = 900, height: int = 260, buckets: int = 120) -> str:
    if not s.events or s.first_us is None or s.last_us is None:
        return "<p>No decisions, signals or verdicts recorded.</p>"
    t0, t1 = s.first_us, max(s.last_us, s.first_us + 1)
    span = t1 - t0
    counts = {k: [0] * buckets for k in SERIES}
    for at, series in s.events:
        counts[series][min(buckets - 1, (at - t0) * buckets // span)] += 1
    peak = max(max(v) for v in counts.values()) or 1
    left, bottom, top = 50, height - 30, 20
    plot_w, plot_h = width - left - 10, bottom - top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" aria-label="timeline of decisions, signals and verdicts">',
        f'<line x1="{left}" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#333"/>',
        f'<text x="{left - 5}" y="{top + 4}" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{left - 5}" y="{bottom}" text-anchor="end" font-size="11">0</text>',
        f'<text x="{left}" y="{height - 8}" font-size="11">{html.escape(_iso(t0) or "")}</text>',
        f'<text x="{width - 10}" y="{height - 8}" text-anchor="end" font-size="11">'
        f"{html.escape(_iso(t1) or '')}</text>",
    ]
    for i, (name, values) in enumerate(counts.items()):
        pts = " ".join(
            f"{left + plot_w * (b + 0.5) / buckets:.1f},{bottom - plot_h * v / peak:.1f}"
            for b, v in enumerate(values)
        )
        colour = COLOURS[name]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>')
        parts.append(
            f'<text x="{left + 10 + 110 * i}" y="{top - 6}" font-size="12" fill="{colour}">'
            f"{name}s ({sum(values)})</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def render_html(s: Summary, title: str) -> str:
    j = s.as_json()
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in j["decision_outcomes"].items()
    )
    kinds = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in j["kinds"].items()
    )
    lat = "".join(f"<tr><td>{k}</td><td>{v if v is not None else '-'}</td></tr>"
                  for k, v in j["latency_us"].items())  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{s.records} records ({j["first_at"]} .. {j["last_at"]}), {s.segments_online} online and
{s.segments_archived} archived segments. This page summarises; run
<code>fraudnet audit verify</code> to check integrity.</p>
<h2>Timeline</h2>
{_timeline_svg(s)}
<h2>Decision outcomes</h2><table><tr><th>outcome</th><th>count</th></tr>{rows}</table>
<h2>Decision latency (µs)</h2><table><tr><th>percentile</th><th>µs</th></tr>{lat}</table>
<h2>Records by kind</h2><table><tr><th>kind</th><th>count</th></tr>{kinds}</table>
</body></html>
"""
