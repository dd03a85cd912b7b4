"""Policy bundles: TOML in, a validated, compiled :class:`Bundle` out.

A bundle is one TOML file (see docs/policy.md for the full reference)::

    [policy]
    name = "fdh-amount-velocity"
    version = 3
    description = "..."

    [thresholds]              # score -> outcome when no segment matches
    review_at = 0.5
    block_at = 0.9

    [[segments]]              # first matching segment sets the thresholds
    id = "ecom"
    when = 'channel == "ecom"'
    review_at = 0.3
    block_at = 0.7

    [[velocity]]
    id = "card_count_1h"
    entity = "card"           # card | terminal | merchant | device
    measure = "count"         # count | sum (of amount)
    window = "1h"
    resolution = "5m"         # optional, default window / 24

    [[rules]]
    id = "amount_very_high"
    version = 1
    description = "Amount above 220"
    action = "block"          # allow | review | step_up | block
    when = "amount > 220"

    [[lists]]
    id = "trusted_cards"
    kind = "card"             # card | bin | terminal | merchant | country | device
    action = "allow"          # allow | deny | none (only for in_list() in conditions)
    [[lists.entries]]
    ref = "<32 hex chars: node-local pseudonym>"   # bin/country: value = "FR"
    expires = 2026-12-31T00:00:00Z                 # optional
    note = "VIP, ticket 1234"                       # optional

:func:`load_bundle` never evaluates anything: conditions go through the
parser and type checker of :mod:`.lang` / :mod:`.compile`. Every error is
a :class:`~fraudnet.errors.PolicyError` naming the file and line (and
column for conditions). Card, terminal, merchant and device entries are
stored only as node-local pseudonyms; a bundle containing anything that
looks like a card number is refused.

The bundle's identity is the SHA-256 of its bytes (:attr:`Bundle.sha256`).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from datetime import UTC, datetime
from typing import Any, Final

from fraudnet.errors import PolicyError

from ..ids import is_luhn_valid
from .compile import Compiled, CompileError, compile_condition
from .inputs import encode_bin, encode_letters
from .lang import ParseError, parse
from .locate import Locator
from .model import (
    ACTIONS,
    LIST_KINDS,
    PSEUDONYMISED_KINDS,
    Bundle,
    EntityList,
    ListEntry,
    Rule,
    Segment,
)
from .velocity import VelocityKey, VelocitySpec

__all__ = [
    "ACTIONS",
    "LIST_KINDS",
    "MAX_BUNDLE_BYTES",
    "Bundle",
    "EntityList",
    "ListEntry",
    "Rule",
    "Segment",
    "load_bundle",
    "parse_duration",
]

MAX_BUNDLE_BYTES: Final = 16 << 20
MAX_RULES: Final = 2000
MAX_SEGMENTS: Final = 200
MAX_VELOCITIES: Final = 64
MAX_LISTS: Final = 64
MAX_ENTRIES: Final = 200_000
_ID_RE: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_REF_RE: Final = re.compile(r"^[0-9a-f]{32}$")
_DURATION_RE: Final = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PAN_RUN: Final = re.compile(r"(?<![\d])\d(?:[ -]?\d){11,18}(?![\d])")
_HEX_TOKEN: Final = re.compile(r"[0-9A-Fa-f]{32,}")


def parse_duration(value: Any, what: str) -> float:
    """``"90s"``, ``"10m"``, ``"1h"``, ``"7d"`` -> seconds."""
    if not isinstance(value, str) or not _DURATION_RE.match(value.strip()):
        raise PolicyError(f"{what}: expected a duration like '10m', '1h', '7d', got {value!r}")
    m = _DURATION_RE.match(value.strip())
    assert m is not None
    return float(m.group(1)) * _UNITS[m.group(2)]


class _Loader:
    def __init__(self, data: bytes, source: str) -> None:
        self.source = source
        self.data = data
        try:
            self.text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PolicyError(f"{source}: not UTF-8 (byte {e.start})") from None
        self.loc = Locator(self.text)

    def fail(self, path: list[tuple[str, int | None]], key: str | None, msg: str) -> PolicyError:
        line = self.loc.line_of(path, key)
        return PolicyError(f"{self.source}:{line}: {msg}")

    def where(self, path: list[tuple[str, int | None]]) -> str:
        return ".".join(n if i is None else f"{n}[{i}]" for n, i in path)

    def table(
        self,
        obj: Any,
        path: list[tuple[str, int | None]],
        required: dict[str, type | tuple[type, ...]],
        optional: dict[str, type | tuple[type, ...]],
    ) -> dict[str, Any]:
        where = self.where(path)
        if not isinstance(obj, dict):
            raise self.fail(path, None, f"{where}: expected a table")
        known = {**required, **optional}
        for k in obj:
            if k not in known:
                raise self.fail(
                    path, k, f"{where}: unknown field {k!r} (known: {', '.join(known)})"
                )
        for k, typ in known.items():
            if k not in obj:
                if k in required:
                    raise self.fail(path, None, f"{where}: missing required field {k!r}")
                continue
            v = obj[k]
            bad = not isinstance(v, typ) or (isinstance(v, bool) and bool not in _as_tuple(typ))
            if bad:
                names = "/".join(t.__name__ for t in _as_tuple(typ))
                raise self.fail(path, k, f"{where}.{k}: expected {names}, found {type(v).__name__}")
        return obj

    def ident(self, value: str, path: list[tuple[str, int | None]], key: str) -> str:
        if not _ID_RE.match(value):
            raise self.fail(path, key, f"{self.where(path)}.{key}: {value!r} must be 1-64 of "
                            "letters, digits, '_', '.', '-'")  # fmt: skip
        return value

    def condition(
        self,
        src: str,
        path: list[tuple[str, int | None]],
        velocities: frozenset[str],
        lists: frozenset[str],
    ) -> Compiled:
        try:
            return compile_condition(parse(src), velocities=velocities, lists=lists)
        except (ParseError, CompileError) as e:
            line = self.loc.line_of(path, "when")
            start = self.loc.value_column(line, "when")
            col = f":{start + e.col + 1}" if start is not None else ""
            raise PolicyError(
                f"{self.source}:{line}{col}: {self.where(path)}.when: {e.message}"
            ) from None

    def check_no_pan(self) -> None:
        for i, line in enumerate(self.text.splitlines(), start=1):
            masked = _HEX_TOKEN.sub(lambda m: "x" * len(m.group(0)), line)
            for m in _PAN_RUN.finditer(masked):
                digits = re.sub(r"[ -]", "", m.group(0))
                if is_luhn_valid(digits):
                    raise PolicyError(
                        f"{self.source}:{i}: looks like a card number; bundles hold only "
                        "pseudonyms (use 'fraudnet policy lists add')"
                    )

    def load(self) -> Bundle:
        if len(self.data) > MAX_BUNDLE_BYTES:
            raise PolicyError(f"{self.source}: larger than {MAX_BUNDLE_BYTES} bytes")
        try:
            doc = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            raise PolicyError(f"{self.source}: TOML syntax error: {e}") from None
        self.check_no_pan()
        top = self.table(doc, [], {"policy": dict}, {
            "thresholds": dict, "segments": list, "velocity": list, "rules": list, "lists": list,
        })  # fmt: skip
        pol = self.table(top["policy"], [("policy", None)], {"name": str, "version": int},
                         {"description": str})  # fmt: skip
        self.ident(pol["name"], [("policy", None)], "name")
        if pol["version"] < 1:
            raise self.fail([("policy", None)], "version", "policy.version must be >= 1")
        review_at, block_at = 0.5, 0.9
        if "thresholds" in top:
            path: list[tuple[str, int | None]] = [("thresholds", None)]
            th = self.table(top["thresholds"], path, {}, {"review_at": (int, float),
                                                          "block_at": (int, float)})  # fmt: skip
            review_at = float(th.get("review_at", review_at))
            block_at = float(th.get("block_at", block_at))
            self.check_thresholds(review_at, block_at, path)
        velocities = self.load_velocities(top.get("velocity", []))
        lists = self.load_lists(top.get("lists", []))
        vnames = frozenset(velocities)
        lnames = frozenset(lst.id for lst in lists)
        segments = self.load_segments(top.get("segments", []), vnames, lnames)
        rules = self.load_rules(top.get("rules", []), vnames, lnames)
        return Bundle(
            name=pol["name"], version=pol["version"], description=pol.get("description", ""),
            sha256=hashlib.sha256(self.data).hexdigest(), source=self.source,
            review_at=review_at, block_at=block_at, segments=segments, velocities=velocities,
            rules=rules, lists=lists,
        )  # fmt: skip

    def check_thresholds(self, review_at: float, block_at: float, path: list[Any]) -> None:
        if not 0.0 <= review_at <= block_at <= 1.0:
            raise self.fail(path, "review_at", f"{self.where(path)}: need 0 <= review_at "
                            f"({review_at}) <= block_at ({block_at}) <= 1")  # fmt: skip

    def load_velocities(self, items: list[Any]) -> dict[str, VelocitySpec]:
        if len(items) > MAX_VELOCITIES:
            raise self.fail(
                [("velocity", MAX_VELOCITIES)], None, f"more than {MAX_VELOCITIES} velocities"
            )
        out: dict[str, VelocitySpec] = {}
        for i, obj in enumerate(items):
            path: list[tuple[str, int | None]] = [("velocity", i)]
            v = self.table(obj, path, {"id": str, "entity": str, "measure": str, "window": str},
                           {"resolution": str, "description": str})  # fmt: skip
            vid = self.ident(v["id"], path, "id")
            if vid in out:
                raise self.fail(path, "id", f"velocity id {vid!r} is declared twice")
            try:
                window = parse_duration(v["window"], f"{self.where(path)}.window")
                res = (parse_duration(v["resolution"], f"{self.where(path)}.resolution")
                       if "resolution" in v else window / 24.0)  # fmt: skip
                if "resolution" not in v and res < 1.0:
                    res = window
                out[vid] = VelocitySpec(vid, v["measure"], VelocityKey(v["entity"], window, res))
            except PolicyError as e:
                raise self.fail(path, "window", str(e)) from None
        return out

    def load_lists(self, items: list[Any]) -> tuple[EntityList, ...]:
        if len(items) > MAX_LISTS:
            raise self.fail([("lists", MAX_LISTS)], None, f"more than {MAX_LISTS} lists")
        out: list[EntityList] = []
        seen: set[str] = set()
        for i, obj in enumerate(items):
            path: list[tuple[str, int | None]] = [("lists", i)]
            d = self.table(obj, path, {"id": str, "kind": str, "action": str},
                           {"description": str, "entries": list})  # fmt: skip
            lid = self.ident(d["id"], path, "id")
            if lid in seen:
                raise self.fail(path, "id", f"list id {lid!r} is declared twice")
            seen.add(lid)
            if d["kind"] not in LIST_KINDS:
                raise self.fail(
                    path, "kind", f"lists[{i}].kind must be one of {', '.join(LIST_KINDS)}"
                )
            if d["action"] not in ("allow", "deny", "none"):
                raise self.fail(path, "action", f"lists[{i}].action must be allow, deny or none")
            entries = d.get("entries", [])
            if len(entries) > MAX_ENTRIES:
                raise self.fail(path, "entries", f"lists[{i}]: more than {MAX_ENTRIES} entries")
            out.append(EntityList(lid, d["kind"], d["action"], d.get("description", ""),
                                  tuple(self.entry(e, [*path, ("entries", j)], d["kind"])
                                        for j, e in enumerate(entries))))  # fmt: skip
        return tuple(out)

    def entry(self, obj: Any, path: list[tuple[str, int | None]], kind: str) -> ListEntry:
        e = self.table(obj, path, {}, {"ref": str, "value": str, "expires": datetime, "note": str})
        where = self.where(path)
        if kind in PSEUDONYMISED_KINDS:
            if "value" in e or "ref" not in e:
                raise self.fail(path, "value" if "value" in e else None,
                                f"{where}: {kind} entries hold a 'ref' (node-local pseudonym, "
                                "32 hex chars), never a raw value")  # fmt: skip
            ident = e["ref"]
            if not _REF_RE.match(ident):
                raise self.fail(path, "ref", f"{where}.ref: expected 32 lowercase hex chars")
            key = int.from_bytes(bytes.fromhex(ident)[:8], "little")
        else:
            if "ref" in e or "value" not in e:
                raise self.fail(path, "ref" if "ref" in e else None,
                                f"{where}: {kind} entries hold a plain 'value'")  # fmt: skip
            ident = e["value"]
            key = encode_bin(ident) if kind == "bin" else encode_letters(ident)
            if key <= 0 or (kind == "country" and len(ident) != 2):
                raise self.fail(path, "value", f"{where}.value: {ident!r} is not a valid {kind}")
        expires = float("inf")
        if "expires" in e:
            dt = e["expires"]
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            expires = dt.timestamp()
        return ListEntry(key, ident, expires, e.get("note", ""))

    def load_segments(self, items: list[Any], vnames: frozenset[str],
                      lnames: frozenset[str]) -> tuple[Segment, ...]:  # fmt: skip
        if len(items) > MAX_SEGMENTS:
            raise self.fail(
                [("segments", MAX_SEGMENTS)], None, f"more than {MAX_SEGMENTS} segments"
            )
        out: list[Segment] = []
        for i, obj in enumerate(items):
            path: list[tuple[str, int | None]] = [("segments", i)]
            s = self.table(obj, path, {"id": str, "when": str, "review_at": (int, float),
                                       "block_at": (int, float)}, {"description": str})  # fmt: skip
            sid = self.ident(s["id"], path, "id")
            if any(x.id == sid for x in out):
                raise self.fail(path, "id", f"segment id {sid!r} is declared twice")
            ra, ba = float(s["review_at"]), float(s["block_at"])
            self.check_thresholds(ra, ba, path)
            cond = self.condition(s["when"], path, vnames, lnames)
            out.append(Segment(sid, s["when"], ra, ba, self.loc.line_of(path), cond))
        return tuple(out)

    def load_rules(self, items: list[Any], vnames: frozenset[str],
                   lnames: frozenset[str]) -> tuple[Rule, ...]:  # fmt: skip
        if len(items) > MAX_RULES:
            raise self.fail([("rules", MAX_RULES)], None, f"more than {MAX_RULES} rules")
        out: list[Rule] = []
        seen: set[str] = set()
        for i, obj in enumerate(items):
            path: list[tuple[str, int | None]] = [("rules", i)]
            r = self.table(obj, path, {"id": str, "version": int, "description": str,
                                       "action": str, "when": str}, {"enabled": bool})  # fmt: skip
            rid = self.ident(r["id"], path, "id")
            if rid in seen:
                raise self.fail(path, "id", f"rule id {rid!r} is declared twice")
            seen.add(rid)
            if r["version"] < 1:
                raise self.fail(path, "version", f"rules[{i}].version must be >= 1")
            if r["action"] not in ACTIONS:
                raise self.fail(path, "action", f"rules[{i}].action must be one of "
                                f"{', '.join(ACTIONS)}, found {r['action']!r}")  # fmt: skip
            desc = r["description"].strip()
            if not 0 < len(desc) <= 200 or "\n" in desc:
                raise self.fail(path, "description", f"rules[{i}].description must be one line "
                                "of 1-200 characters")  # fmt: skip
            cond = self.condition(r["when"], path, vnames, lnames)
            out.append(Rule(rid, r["version"], desc, r["action"], r["when"],
                            r.get("enabled", True), self.loc.line_of(path), cond))  # fmt: skip
        return tuple(out)


def _as_tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def load_bundle(data: bytes, source: str = "<bundle>") -> Bundle:
    """Validate and compile a bundle; :class:`PolicyError` with ``source:line`` on any error."""
    return _Loader(data, source).load()
