"""Structural difference of two bundles (``fraudnet policy diff OLD NEW``).

Compares by identity, not text: rules by id (action, condition, version,
description, enabled), segments by id, velocities by id, lists by id and
their entries by ref/value (expiry and note changes included), and the
default thresholds. A rule whose condition or action changed without a
version bump is flagged, since reason codes name the version.
"""

from __future__ import annotations

from typing import Any

from .bundle import Bundle

__all__ = ["diff_bundles"]


def _fmt_exp(x: float) -> str:
    return "never" if x == float("inf") else f"{x:.0f}"


def diff_bundles(old: Bundle, new: Bundle) -> dict[str, Any]:
    """A JSON-able description of what changed from ``old`` to ``new``."""
    out: dict[str, Any] = {
        "old": {"policy_id": old.policy_id, "sha256": old.sha256},
        "new": {"policy_id": new.policy_id, "sha256": new.sha256},
        "identical": old.sha256 == new.sha256,
        "changes": [],
        "warnings": [],
    }
    ch: list[str] = out["changes"]
    warn: list[str] = out["warnings"]
    if (old.review_at, old.block_at) != (new.review_at, new.block_at):
        ch.append(f"thresholds: review_at {old.review_at} -> {new.review_at}, "
                  f"block_at {old.block_at} -> {new.block_at}")  # fmt: skip
    o_rules = {r.id: r for r in old.rules}
    n_rules = {r.id: r for r in new.rules}
    for rid in sorted(o_rules.keys() - n_rules.keys()):
        ch.append(f"rule {rid}: removed")
    for rid in sorted(n_rules.keys() - o_rules.keys()):
        r = n_rules[rid]
        ch.append(f"rule {rid}: added ({r.action}: {r.when})")
    for rid in sorted(o_rules.keys() & n_rules.keys()):
        a, b = o_rules[rid], n_rules[rid]
        fields = [f for f in ("version", "action", "when", "description", "enabled")
                  if getattr(a, f) != getattr(b, f)]  # fmt: skip
        for f in fields:
            ch.append(f"rule {rid}: {f} {getattr(a, f)!r} -> {getattr(b, f)!r}")
        if ({"action", "when"} & set(fields)) and a.version == b.version:
            warn.append(f"rule {rid}: action/condition changed but version is still {a.version}")
    o_rank = [r.id for r in old.rules if r.id in n_rules]
    n_rank = [r.id for r in new.rules if r.id in o_rules]
    if o_rank != n_rank:
        ch.append("rules: order changed (reason codes list the first matching rule first)")
    o_seg = {s.id: (s.when, s.review_at, s.block_at) for s in old.segments}
    n_seg = {s.id: (s.when, s.review_at, s.block_at) for s in new.segments}
    o_vel = {k: (v.measure, v.key) for k, v in old.velocities.items()}
    n_vel = {k: (v.measure, v.key) for k, v in new.velocities.items()}
    for kind, o_items, n_items in (("segment", o_seg, n_seg), ("velocity", o_vel, n_vel)):
        for k in sorted(o_items.keys() - n_items.keys()):
            ch.append(f"{kind} {k}: removed")
        for k in sorted(n_items.keys() - o_items.keys()):
            ch.append(f"{kind} {k}: added")
        for k in sorted(o_items.keys() & n_items.keys()):
            if o_items[k] != n_items[k]:
                ch.append(f"{kind} {k}: {o_items[k]} -> {n_items[k]}")
    o_lists = {lst.id: lst for lst in old.lists}
    n_lists = {lst.id: lst for lst in new.lists}
    for k in sorted(o_lists.keys() - n_lists.keys()):
        ch.append(f"list {k}: removed ({len(o_lists[k].entries)} entries)")
    for k in sorted(n_lists.keys() - o_lists.keys()):
        ch.append(f"list {k}: added ({n_lists[k].kind}, {n_lists[k].action}, "
                  f"{len(n_lists[k].entries)} entries)")  # fmt: skip
    for k in sorted(o_lists.keys() & n_lists.keys()):
        la, lb = o_lists[k], n_lists[k]
        if (la.kind, la.action) != (lb.kind, lb.action):
            ch.append(f"list {k}: {la.kind}/{la.action} -> {lb.kind}/{lb.action}")
        ea = {e.ident: e for e in la.entries}
        eb = {e.ident: e for e in lb.entries}
        for ident in sorted(ea.keys() - eb.keys()):
            ch.append(f"list {k}: entry {ident} removed")
        for ident in sorted(eb.keys() - ea.keys()):
            ch.append(f"list {k}: entry {ident} added (expires {_fmt_exp(eb[ident].expires_s)})")
        for ident in sorted(ea.keys() & eb.keys()):
            if ea[ident].expires_s != eb[ident].expires_s:
                ch.append(f"list {k}: entry {ident} expiry {_fmt_exp(ea[ident].expires_s)} -> "
                          f"{_fmt_exp(eb[ident].expires_s)}")  # fmt: skip
    return out
