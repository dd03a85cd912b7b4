"""Transaction file readers: CSV (optionally gzip) and JSON Lines.

Each reader yields ``(location, record, raw_text)`` where ``location`` is
``"line N"`` (1-based, counting the CSV header as line 1) and ``record`` is
a dict of column -> value, or an :class:`Unreadable` carrying the reason
when the line cannot be parsed. The caller validates records with the
node's field mapping, so any export layout can be fed.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from fraudnet.errors import InputError

__all__ = ["Unreadable", "detect_format", "open_text", "read_records"]

MAX_LINE = 64 * 1024


class Unreadable:
    """A line that could not be parsed; :attr:`reason` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def detect_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise InputError(f"{path}: cannot tell the format from the name; use --format csv|jsonl")


def open_text(path: Path) -> TextIO:
    try:
        if path.name.lower().endswith(".gz"):
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
        return open(path, encoding="utf-8", newline="")
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror})") from None


def read_records(path: Path, fmt: str | None = None) -> Iterator[tuple[str, Any, str]]:
    fmt = fmt or detect_format(path)
    with open_text(path) as f:
        try:
            if fmt == "csv":
                yield from _csv(f)
            elif fmt == "jsonl":
                yield from _jsonl(f)
            else:
                raise InputError(f"unknown format {fmt!r}; use csv or jsonl")
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError) as e:
            raise InputError(f"{path}: unreadable ({e})") from None


def _csv(f: TextIO) -> Iterator[tuple[str, Any, str]]:
    reader = csv.reader(f)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise InputError(f"line 1: bad CSV header ({e})") from None
    header = [h.strip() for h in header]
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield f"line {reader.line_num}", Unreadable(f"bad CSV ({e})"), ""
            continue
        raw = ",".join(row)[:2048]
        loc = f"line {reader.line_num}"
        if not row:
            continue
        if len(row) != len(header):
            yield loc, Unreadable(f"expected {len(header)} columns, found {len(row)}"), raw
            continue
        yield loc, dict(zip(header, row, strict=True)), raw


def _jsonl(f: TextIO) -> Iterator[tuple[str, Any, str]]:
    for i, line in enumerate(f, 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            yield f"line {i}", Unreadable(f"line longer than {MAX_LINE} characters"), line[:200]
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield f"line {i}", Unreadable(f"not valid JSON ({e.msg} at column {e.colno})"), line
            continue
        except (ValueError, RecursionError) as e:  # a number over 4300 digits; deep nesting
            why = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:80]
            yield f"line {i}", Unreadable(f"not valid JSON ({why})"), line[:200]
            continue
        yield f"line {i}", obj, line.rstrip("\n")
