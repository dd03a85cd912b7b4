"""``fraudnet audit``'s witness parts: check a log against cosigned checkpoints; export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fraudnet.adapters.storage.audit_files import iter_payloads, read_manifest
from fraudnet.core.audit.merkle import leaf_hash
from fraudnet.errors import InputError, IntegrityError

__all__ = ["export", "roots_at", "witness_check"]


def witness_check(d: Path, pinned: bytes | None, paths: tuple[Path, ...], size: int) -> Any:
    from fraudnet.adapters.witness import read_witness_dir
    from fraudnet.core.audit.witness import check_against_log

    m = read_manifest(d)
    log_key = pinned or m.public_key
    records, splits = [], []
    for p in paths:
        try:
            c, s = read_witness_dir(p)
        except IntegrityError as e:
            raise InputError(str(e)) from None
        records += c
        splits += s
    sizes = {int.from_bytes(c.signed[37:45], "big") for c in records if c.log_key == log_key}
    roots = roots_at(d, {n for n in sizes if n <= size})
    return check_against_log(log_key, m.network_id, records, roots.get, size,
                             extra_split_views=splits)  # fmt: skip


def roots_at(d: Path, sizes: set[int]) -> dict[int, bytes]:
    """The log's RFC 6962 root at each wanted size (one streaming pass)."""
    from fraudnet.adapters.storage.audit_files import list_segments, read_header

    segs = list_segments(d)
    if not segs or not sizes:
        return {}
    head = read_header(segs[0].log)
    front = head.frontier.copy()
    out: dict[int, bytes] = {}
    if front.size in sizes:
        out[front.size] = front.root()
    top = max(sizes)
    for seq, payload in iter_payloads(d, front.size):
        if seq != front.size or front.size >= top:
            break
        front.append(leaf_hash(payload))
        if front.size in sizes:
            out[front.size] = front.root()
    return out


@click.command("witness-export")
@click.argument("node_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--log-key", default=None, help="Only records about this log key (hex).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def export(node_dirs: tuple[Path, ...], log_key: str | None, out: Path) -> None:
    """Collect witness records (cosigned, received, split views) into one JSON Lines file.

    The file is what an auditor passes to ``fraudnet audit verify LOG --witnesses FILE``.
    Every record is re-checked as it is read (malformed lines are an error).
    """
    from fraudnet.adapters.witness import read_witness_dir

    want = None
    if log_key is not None:
        try:
            want = bytes.fromhex(log_key)
        except ValueError:
            raise InputError(f"--log-key {log_key!r}: not hex") from None
    docs: list[str] = []
    seen: set[str] = set()
    for d in node_dirs:
        try:
            cos, splits = read_witness_dir(d)
        except IntegrityError as e:
            raise InputError(str(e)) from None
        for doc in [c.to_json() for c in cos if want is None or c.log_key == want] + [
            sv.to_json() for sv in splits if want is None or sv.log_key == want
        ]:
            line = json.dumps(doc, sort_keys=True)
            if line not in seen:
                seen.add(line)
                docs.append(line)
    try:
        out.write_text("".join(x + "\n" for x in docs), "utf-8")
    except OSError as e:
        raise InputError(f"{out}: cannot write ({e.strerror})") from None
    click.echo(f"wrote {len(docs)} witness records to {out}")
