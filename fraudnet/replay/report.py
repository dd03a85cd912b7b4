"""Scenario reports: metrics per mode, expected-outcome checks, report.json, plots.

Definitions (all over the transactions the mode decided):

* ``average_precision``, ``auc_roc``, ``card_precision_at_100`` -- from
  :func:`fraudnet.training.protocol.metrics` on the final (post-verdict)
  scores, every decided transaction counting (scenario scorers are never
  trained on the replayed days; unlike ``fraudnet evaluate``'s handbook test
  set, cards whose fraud was already known are not dropped).
* ``recall`` / ``precision`` -- an *alert* is an outcome of review or block.
* ``detection_delay_*`` -- per fraudulent card, from its first fraudulent
  transaction to its first alert (at any member).
* ``false_block_verdicts`` -- cards with no fraud in the ground truth that got
  a block verdict at any honest member.
* ``liveness`` -- among cards *flagged locally* by >= 2f+1 honest members,
  the share with a block verdict; ``attack_liveness`` -- among fraudulent
  cards *attacked* (fraudulent transactions) at >= 2f+1 honest members.
  ``verdict_delay_*`` -- first fraudulent transaction to first block verdict.
* ``quorum_to_verdict_*_ms`` -- from the (2f+1)-th honest member's local flag
  until every honest member holds the block verdict (the consensus's own latency).
* ``decision_*_ms`` -- arrival to decision; in simulation mode this is
  virtual time from the node's queueing model, not a wall-clock measurement.
* ``propagation_*_ms`` -- signal envelope sent to accepted at another member.
* ``signals_per_transaction`` -- signals sealed (cards and terminals) per decision.
* ``gap_closed`` (report level) -- ``(AP_network - AP_isolated) / (AP_central -
  AP_isolated)``, None unless all three modes ran and central beats isolated.
* ``exactly_one_violations`` -- accepted transactions with no decision or
  more than one.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from fraudnet.errors import InputError

from .scenario import Scenario
from .simrun import RunResult
from .sources import Dataset

__all__ = [
    "check_expectations",
    "compare",
    "gap_closed",
    "mode_report",
    "write_plots",
    "write_report",
]

S = 1_000_000


def _pct(xs: list[int] | list[float], q: float, scale: float = 1000.0) -> float | None:
    if not xs:
        return None
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q * 100)) / scale


def _metrics(rows: list[tuple[Any, ...]]) -> dict[str, float | None]:
    from fraudnet.training.data import TxTable
    from fraudnet.training.protocol import metrics

    labels = np.array([r[3] for r in rows], dtype=np.int8)
    if len(rows) == 0 or len(np.unique(labels)) < 2:
        return {"average_precision": None, "auc_roc": None, "card_precision_at_100": None}
    n = len(rows)
    table = TxTable(
        tx_id=np.arange(n, dtype=np.int64),
        ts_s=np.array([r[7] / S for r in rows], dtype=np.float64),
        customer=np.array([r[2] for r in rows], dtype=np.int64),
        terminal=np.zeros(n, dtype=np.int64),
        amount=np.zeros(n, dtype=np.float64),
        fraud=labels,
    )
    score = np.array([r[5] for r in rows], dtype=np.float64)
    return dict(metrics(table, np.ones(n, dtype=bool), score))


def _alerts(rows: list[tuple[Any, ...]]) -> dict[str, float | None]:
    tp = sum(1 for r in rows if r[3] and r[6] != "allow")
    fp = sum(1 for r in rows if not r[3] and r[6] != "allow")
    pos = sum(1 for r in rows if r[3])
    return {
        "recall": tp / pos if pos else None,
        "precision": tp / (tp + fp) if tp + fp else None,
    }


def mode_report(res: RunResult, data: Dataset, sc: Scenario) -> dict[str, Any]:
    """The per-mode section of ``report.json`` (see module docstring)."""
    rec = res.recorder
    rows = sorted(rec.decisions, key=lambda r: (r[7], r[1]))
    honest = set(res.honest)
    f = sc.network.f
    out: dict[str, Any] = {"mode": res.mode, "seed": res.seed, "transactions": len(data.records)}
    out["decisions"] = len(rows)
    out.update(_metrics(rows))
    out.update(_alerts(rows))
    hrows = [r for r in rows if r[0] in honest]
    out["honest"] = {**_metrics(hrows), **_alerts(hrows), "decisions": len(hrows)}
    # detection delay per fraudulent card
    first_fraud: dict[int, int] = {}
    attacked_at: dict[int, set[str]] = {}
    fraud_cards: set[int] = set()
    names = res.members if len(res.members) == sc.network.members else sc.network.names
    for r in data.records:
        if r.label:
            fraud_cards.add(r.card)
            first_fraud.setdefault(r.card, r.t_us)
            attacked_at.setdefault(r.card, set()).add(names[r.member % len(names)])
    first_alert: dict[int, int] = {}
    for d in rows:
        if d[6] != "allow" and d[2] in fraud_cards and d[7] >= first_fraud[d[2]]:
            first_alert.setdefault(d[2], d[8])
    delays = [first_alert[c] - first_fraud[c] for c in first_alert]
    out["fraud_cards"] = len(fraud_cards)
    out["cards_detected"] = len(first_alert)
    out["detection_delay_p50_s"] = _pct(delays, 0.5, S)
    out["detection_delay_p99_s"] = _pct(delays, 0.99, S)
    # verdicts
    blocked = {c: min(t for m, t in ms.items() if m in honest)
               for c, ms in rec.blocks.items() if any(m in honest for m in ms)}  # fmt: skip
    out["block_verdict_cards"] = len(blocked)
    out["false_block_verdicts"] = sum(1 for c in blocked if c not in fraud_cards)
    flagged = [c for c, ms in rec.flags.items() if len(set(ms) & honest) >= 2 * f + 1]
    live_fraud = [c for c in flagged if c in fraud_cards]
    out["live_eligible"] = len(live_fraud)
    out["liveness"] = (sum(1 for c in live_fraud if c in blocked) / len(live_fraud)
                       if live_fraud else None)  # fmt: skip
    attacked = [c for c, ms in attacked_at.items() if len(ms & honest) >= 2 * f + 1]
    out["attack_eligible"] = len(attacked)
    out["attack_liveness"] = (sum(1 for c in attacked if c in blocked) / len(attacked)
                              if attacked else None)  # fmt: skip
    vdel = [max(0, blocked[c] - first_fraud[c]) for c in blocked if c in first_fraud]
    out["verdict_delay_p50_s"] = _pct(vdel, 0.5, S)
    out["verdict_delay_p99_s"] = _pct(vdel, 0.99, S)
    qdel = []  # from the (2f+1)-th honest local flag to the block verdict at *every* honest node
    for c in live_fraud:
        times = sorted(t for m, t in rec.flags[c].items() if m in honest)
        at = {m: t for m, t in rec.blocks.get(c, {}).items() if m in honest}
        if len(at) == len(honest):
            qdel.append(max(0, max(at.values()) - times[2 * f]))
    out["quorum_to_verdict_p50_ms"] = _pct(qdel, 0.5)
    out["quorum_to_verdict_p99_ms"] = _pct(qdel, 0.99)
    out["verdicts_applied"] = rec.verdicts_applied
    # exactly one decision per accepted transaction
    per_tx = Counter(r[1] for r in rows)
    bad = sum(1 for tx in rec.admitted if per_tx.get(tx, 0) != 1)
    bad += sum(1 for tx, n in per_tx.items() if n != 1 and tx not in rec.admitted)
    out["accepted"] = len(rec.admitted)
    out["duplicates_absorbed"] = rec.duplicates
    out["restarts"] = rec.restarts
    out["dead_letters"] = rec.dead_letters
    out["exactly_one_violations"] = bad
    lat = [r[8] - r[7] for r in rows]
    out["latency_is_virtual"] = True
    out["decision_p50_ms"] = _pct(lat, 0.5)
    out["decision_p99_ms"] = _pct(lat, 0.99)
    out["propagation_p50_ms"] = _pct(rec.signal_prop_us, 0.5)
    out["propagation_p99_ms"] = _pct(rec.signal_prop_us, 0.99)
    out["attestation_propagation_p99_ms"] = _pct(rec.attestation_prop_us, 0.99)
    out["signals_sent"] = rec.signals_sent
    out["signals_per_transaction"] = rec.signals_sent / len(rows) if rows else None
    out["envelopes_sent"] = rec.envelopes_sent
    out["validator"] = {k: v for k, v in sorted(res.validator.items()) if v}
    out["equivocators"] = res.equivocators
    st = res.stats
    out["network"] = {
        "messages": st.sent, "delivered": st.delivered, "lost": st.lost,
        "partitioned": st.partitioned, "down": st.down, "bytes": st.bytes,
    }  # fmt: skip
    out["per_node"] = {
        n: {"sent": s.sent, "sent_bytes": s.sent_bytes, "received": s.received,
            "received_bytes": s.received_bytes}
        for n, s in sorted(st.per_node.items())
    }  # fmt: skip
    nn = max(1, len(res.members))
    out["messages_per_node"] = st.sent / nn
    out["bytes_per_node"] = st.bytes / nn
    out["node_counters"] = res.counters
    audited = [c["audit_verified"] for c in res.counters.values() if "audit_verified" in c]
    out["audit_logs_verified"] = all(audited) if audited else None
    return out


def _fail(name: str, got: Any, want: str) -> str:
    return f"{name}: got {got}, expected {want}"


def check_expectations(
    sc: Scenario, modes: dict[str, dict[str, Any]], baseline: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Check ``[expect]``; returns ``{"passed": bool, "checks": [...]}``.

    Per-mode thresholds apply to network mode when it ran, else to each mode run.
    """
    ex = sc.expect
    checks: list[dict[str, Any]] = []
    target = {"network": modes["network"]} if "network" in modes else modes

    def add(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "passed": bool(ok), "detail": detail})

    for mname, m in target.items():
        for key, field_, lo in (
            ("min_recall", "recall", ex.min_recall),
            ("min_precision", "precision", ex.min_precision),
            ("min_average_precision", "average_precision", ex.min_average_precision),
            ("min_liveness", "liveness", ex.min_liveness),
            ("min_attack_liveness", "attack_liveness", ex.min_attack_liveness),
        ):
            if lo is not None:
                got = m.get(field_)
                add(f"{mname}.{key}", got is not None and got >= lo, _fail(field_, got, f">= {lo}"))
        if ex.max_false_block_verdicts is not None:
            got = m["false_block_verdicts"]
            lim = ex.max_false_block_verdicts
            add(f"{mname}.max_false_block_verdicts", got <= lim,
                _fail("false_block_verdicts", got, f"<= {lim}"))  # fmt: skip
        if ex.min_block_verdicts is not None:
            got = m["block_verdict_cards"]
            add(f"{mname}.min_block_verdicts", got >= ex.min_block_verdicts,
                _fail("block_verdict_cards", got, f">= {ex.min_block_verdicts}"))  # fmt: skip
    if ex.exactly_one_decision:
        for mname, m in modes.items():
            got = m["exactly_one_violations"]
            add(f"{mname}.exactly_one_decision", got == 0, _fail("violations", got, "0"))
    ap = {k: v.get("average_precision") for k, v in modes.items()}
    if ex.ap_network_gt_isolated is not None:
        ok = None not in (ap.get("network"), ap.get("isolated"))
        ok = ok and (ap["network"] > ap["isolated"]) == ex.ap_network_gt_isolated  # type: ignore[operator]  # None excluded above
        add(
            "ap_network_gt_isolated",
            bool(ok),
            f"network {ap.get('network')} vs isolated {ap.get('isolated')}",
        )
    if ex.min_gap_closed is not None:
        gap = gap_closed(ap)
        add("min_gap_closed", gap is not None and gap >= ex.min_gap_closed,
            _fail("gap_closed", gap, f">= {ex.min_gap_closed}"))  # fmt: skip
    if ex.max_honest_drop is not None:
        if baseline is None or "network" not in modes:
            add("max_honest_drop", False, "needs network mode and the no-attacker baseline run")
        else:
            for k in ("recall", "average_precision"):
                a, b = modes["network"]["honest"].get(k), baseline["honest"].get(k)
                drop = None if a is None or not b else (b - a) / b
                lim_d = ex.max_honest_drop
                add(f"max_honest_drop.{k}", drop is not None and drop <= lim_d,
                    _fail(f"relative drop of honest {k}", drop, f"<= {lim_d}"))  # fmt: skip
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def gap_closed(ap: dict[str, Any]) -> float | None:
    """Share of the isolated -> central AP gap network mode closed ((n - i) / (c - i));
    None unless all three ran and central beats isolated."""
    n, i, c = ap.get("network"), ap.get("isolated"), ap.get("central")
    if n is None or i is None or c is None or c <= i:
        return None
    return float((n - i) / (c - i))


def write_report(out_dir: Path, report: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / "report.json"
    p.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    return p


def write_plots(out_dir: Path, runs: dict[str, RunResult], data: Dataset) -> list[Path]:
    """detection.png (fraud cards alerted over time per mode) and latency.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fraud_first: dict[int, int] = {}
    for r in data.records:
        if r.label:
            fraud_first.setdefault(r.card, r.t_us)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, res in runs.items():
        first: dict[int, int] = {}
        hits: list[float] = []
        for d in sorted(res.recorder.decisions, key=lambda x: x[8]):
            if d[6] != "allow" and d[2] in fraud_first and d[7] >= fraud_first[d[2]]:
                first.setdefault(d[2], d[8])
            if d[6] != "allow" and d[3]:
                hits.append(d[8] / 3.6e9)
        ts = sorted(t / 3.6e9 for t in first.values())
        ax.step(ts, np.arange(1, len(ts) + 1), where="post", label=mode)
        ax2.step(hits, np.arange(1, len(hits) + 1), where="post", label=mode)
    ax.set_xlabel("hours since replay start (virtual)")
    ax.set_ylabel("fraudulent cards alerted")
    ax.set_title(f"Cards detected ({len(fraud_first)} fraudulent)")
    ax2.set_xlabel("hours since replay start (virtual)")
    ax2.set_ylabel("fraudulent transactions alerted")
    nfraud = sum(1 for r in data.records if r.label)
    ax2.set_title(f"Fraudulent transactions stopped ({nfraud} in total)")
    ax.legend()
    ax2.legend()
    fig.tight_layout()
    p1 = out_dir / "detection.png"
    fig.savefig(p1, dpi=90)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for mode, res in runs.items():
        lat = [(d[8] - d[7]) / 1000 for d in res.recorder.decisions]
        if lat:
            axes[0].hist(lat, bins=40, histtype="step", label=mode)
        prop = [x / 1000 for x in res.recorder.signal_prop_us]
        if prop:
            axes[1].hist(prop, bins=40, histtype="step", label=mode)
    axes[0].set_xlabel("decision latency, ms (virtual)")
    axes[1].set_xlabel("signal propagation, ms (virtual)")
    for a in axes:
        a.set_yscale("log")
        if a.get_legend_handles_labels()[0]:
            a.legend()
    fig.tight_layout()
    p2 = out_dir / "latency.png"
    fig.savefig(p2, dpi=90)
    plt.close(fig)
    return [p1, p2]


_COMPARE_KEYS = (
    "transactions", "decisions", "average_precision", "card_precision_at_100", "recall",
    "precision", "false_block_verdicts", "liveness", "attack_liveness", "verdict_delay_p50_s",
    "verdict_delay_p99_s", "decision_p99_ms", "propagation_p99_ms", "messages_per_node",
    "exactly_one_violations",
)  # fmt: skip


def compare(paths: list[str]) -> str:
    """A side-by-side text table of several ``report.json`` files (one column per mode)."""
    cols: list[tuple[str, dict[str, Any]]] = []
    for p in paths:
        try:
            doc = json.loads(Path(p).read_text(encoding="utf-8"))
            modes = doc["modes"]
            if not isinstance(modes, dict):
                raise TypeError("modes is not a table")
        except FileNotFoundError:
            raise InputError(f"{p}: report not found") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{p}: not a scenario report.json ({e})") from None
        for mode, m in modes.items():
            cols.append((f"{doc.get('scenario', Path(p).parent.name)}/{mode}", m))

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    w0 = max(len(k) for k in _COMPARE_KEYS)
    widths = [max(12, len(n)) for n, _ in cols]
    lines = [" ".join([" " * w0, *(n.rjust(w) for (n, _), w in zip(cols, widths, strict=True))])]
    for k in _COMPARE_KEYS:
        cells = [fmt(m.get(k)).rjust(w) for (_, m), w in zip(cols, widths, strict=True)]
        lines.append(" ".join([k.ljust(w0), *cells]))
    return "\n".join(lines)
