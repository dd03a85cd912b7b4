"""Find the source line of a TOML table or key, for error messages.

``tomllib`` reports line and column for syntax errors only. For semantic
errors (unknown field, wrong type, bad condition) this module scans the
source text for the table header and key the error is about. It
understands the subset of TOML a policy bundle uses: ``[table]`` and
``[[array.of.tables]]`` headers and ``key = value`` lines; when it cannot
find a key it falls back to the table's header line, then to line 1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Locator"]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\s\"']+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")


@dataclass(frozen=True, slots=True)
class _Header:
    line: int  # 1-based
    name: str
    is_array: bool


class Locator:
    """Line lookups over one bundle's source text."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: list[_Header] = []
        in_multiline = False
        for i, raw in enumerate(self.lines, start=1):
            # skip the inside of multi-line strings (''' or \"\"\")
            n_triple = raw.count('"""') + raw.count("'''")
            if in_multiline:
                if n_triple % 2 == 1:
                    in_multiline = False
                continue
            if n_triple % 2 == 1:
                in_multiline = True
                continue
            m = _HEADER.match(raw)
            if m:
                name = ".".join(p.strip().strip("\"'") for p in m.group(2).split("."))
                self.headers.append(_Header(i, name, m.group(1) == "[["))

    def _block(self, path: Sequence[tuple[str, int | None]]) -> tuple[int, int] | None:
        """(first line, end line exclusive) of the table at ``path``; ``None`` if not found.

        ``path`` is ``[("rules", 2)]`` for the third ``[[rules]]``, ``[("policy",
        None)]`` for ``[policy]``, ``[("lists", 0), ("entries", 1)]`` for the second
        ``[[lists.entries]]`` of the first list.
        """
        lo, hi = 1, len(self.lines) + 1
        prefix = ""
        for name, index in path:
            full = f"{prefix}{name}"
            candidates = [h for h in self.headers if lo <= h.line < hi and h.name == full]
            k = 0 if index is None else index
            if k >= len(candidates):
                return None
            h = candidates[k]
            end = hi
            for other in self.headers:
                if (
                    other.line > h.line
                    and other.line < hi
                    and not other.name.startswith(full + ".")
                ):
                    end = other.line
                    break
            lo, hi = h.line, end
            prefix = full + "."
        return lo, hi

    def line_of(self, path: Sequence[tuple[str, int | None]], key: str | None = None) -> int:
        """Line (1-based) of ``key`` in the table at ``path`` (header line if no key)."""
        block = self._block(path) if path else (1, len(self.lines) + 1)
        if block is None:
            return 1
        lo, hi = block
        if key is not None:
            nested = [h.line for h in self.headers if lo < h.line < hi]
            stop = min(nested) if nested else hi
            for i in range(lo, stop):
                m = _KEY.match(self.lines[i - 1]) if i - 1 < len(self.lines) else None
                if m and m.group(1).strip('"') == key:
                    return i
        return lo

    def value_column(self, line: int, key: str) -> int | None:
        """0-based column where the string value of ``key`` on ``line`` starts (after the
        quote), when it is a one-line string; else ``None``."""
        if not 1 <= line <= len(self.lines):
            return None
        text = self.lines[line - 1]
        m = re.match(r"^\s*" + re.escape(key) + r"""\s*=\s*("{3}|'{3}|"|')""", text)
        if m is None:
            return None
        quote = m.group(1)
        if len(quote) == 3 and quote not in text[m.end() :]:
            return None  # a multi-line string: the line is known, the column is not
        return m.end()
