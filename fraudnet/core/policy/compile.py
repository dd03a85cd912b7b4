"""Type-check a condition AST and compile it to a vectorised numpy function.

A compiled condition is a tree of small closures; calling it with an
:class:`EvalContext` evaluates the whole batch at once (one numpy
operation per AST node per batch, never a Python loop per transaction).

Types: ``num`` (float64 column), ``bool`` (mask), ``str`` (a literal only)
and ``cat:<field>`` (an integer-encoded categorical column, comparable
only with ``==``/``!=``/``in`` against string literals, which are encoded
at compile time). Arithmetic on missing values gives NaN and every
comparison with NaN is false, so a rule over an absent value never fires.

Names a condition may use:

==================  =====  ==================================================
``amount``          num    transaction amount (reporting currency)
``score``           num    model score in [0, 1]
``mcc``             num    merchant category code, -1 when absent
``hour``            num    UTC hour of the transaction, 0-23
``weekday``         num    UTC day of week, 0 = Monday
``verdict``         num    network verdict level: 0 none, 1 suspicious, 2 fraud
``channel``         cat    one of pos, ecom, moto, atm, contactless, other
``country``         cat    ISO 3166 alpha-2
``currency``        cat    ISO 4217
``bin``             cat    6-8 leading PAN digits
``feature.NAME``    num    a feature column (schema names, see docs/features.md)
``velocity.ID``     num    a velocity declared in the bundle
``in_list("ID")``   bool   the transaction's entity is on list ID (not expired)
``has("merchant")`` bool   the optional entity (merchant, device) is present
``abs``/``min``/``max``   num
==================  =====  ==================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fraudnet.errors import PolicyError

from ..features.schema import FEATURE_NAMES
from .inputs import CHANNEL_CODES, PolicyInput, encode_bin, encode_letters
from .lang import BinOp, BoolOp, Call, Compare, InList, Literal, Name, Neg, Node, Not

__all__ = ["CompileError", "Compiled", "EvalContext", "compile_condition"]

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
_FEATURE_INDEX: Final = {n: i for i, n in enumerate(FEATURE_NAMES)}
NUM_FIELDS: Final = ("amount", "score", "mcc", "hour", "weekday", "verdict")
CAT_FIELDS: Final = ("channel", "country", "currency", "bin")


class CompileError(PolicyError):
    """A condition is ill-typed or names something unknown; ``col`` is 0-based."""

    def __init__(self, message: str, col: int) -> None:
        self.message = message
        self.col = col
        super().__init__(f"column {col + 1}: {message}")


@dataclass(slots=True)
class EvalContext:
    """What a compiled condition reads: the batch, velocity values, list hits."""

    inp: PolicyInput
    velocity: Mapping[str, F64]
    lists: Mapping[str, B]
    cache: dict[str, Any] = field(default_factory=dict)

    def hour(self) -> F64:
        h = self.cache.get("hour")
        if h is None:
            h = np.floor(np.mod(self.inp.ts_s, 86400.0) / 3600.0)
            self.cache["hour"] = h
        out: F64 = h
        return out

    def weekday(self) -> F64:
        w = self.cache.get("weekday")
        if w is None:
            # 1970-01-01 was a Thursday (3 with Monday = 0)
            w = np.mod(np.floor(self.inp.ts_s / 86400.0) + 3.0, 7.0)
            self.cache["weekday"] = w
        out: F64 = w
        return out


Fn = Callable[[EvalContext], Any]


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled condition: call :meth:`mask` with a context to get a bool column."""

    fn: Fn
    features: frozenset[str]
    velocities: frozenset[str]
    lists: frozenset[str]

    def mask(self, ctx: EvalContext) -> B:
        out = self.fn(ctx)
        n = len(ctx.inp)
        if np.ndim(out) == 0:
            return np.full(n, bool(out), dtype=np.bool_)
        return np.asarray(out, dtype=np.bool_)


def _encode_cat(field_name: str, value: str, col: int) -> int:
    if field_name == "channel":
        code = CHANNEL_CODES.get(value)
        if code is None:
            raise CompileError(
                f"unknown channel {value!r} (known: {', '.join(CHANNEL_CODES)})", col
            )
        return code
    if field_name == "bin":
        b = encode_bin(value)
        if b <= 0:
            raise CompileError(f"bin {value!r} must be 6-8 digits", col)
        return b
    want = 2 if field_name == "country" else 3
    code = encode_letters(value)
    if code <= 0 or len(value) != want:
        raise CompileError(f"{field_name} {value!r} must be {want} ASCII letters", col)
    return code


class _Compiler:
    def __init__(self, velocities: frozenset[str], lists: frozenset[str]) -> None:
        self.known_velocities = velocities
        self.known_lists = lists
        self.features: set[str] = set()
        self.velocities: set[str] = set()
        self.lists: set[str] = set()

    def run(self, node: Node) -> tuple[str, Fn]:
        """Compile ``node``; composite nodes are memoised per batch by their canonical
        text, so a subexpression shared by several rules and segments (``channel ==
        "ecom"``) is computed once per batch."""
        t, fn = self._run(node)
        if isinstance(node, Literal | Name) or t == "str":
            return t, fn
        key = canonical(node)

        def memo(c: EvalContext, key: str = key, fn: Fn = fn) -> Any:
            hit = c.cache.get(key)
            if hit is None:
                hit = c.cache[key] = fn(c)
            return hit

        return t, memo

    def _run(self, node: Node) -> tuple[str, Fn]:
        if isinstance(node, Literal):
            v = node.value
            if isinstance(v, bool):
                return "bool", lambda _c, v=v: np.bool_(v)
            if isinstance(v, str):
                return "str", lambda _c, v=v: v
            return "num", lambda _c, v=v: np.float64(v)
        if isinstance(node, Name):
            return self.name(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Neg):
            fn = self.want(node.operand, "num", "'-'")
            return "num", lambda c: -fn(c)
        if isinstance(node, BinOp):
            lf = self.want(node.left, "num", f"'{node.op}'")
            rf = self.want(node.right, "num", f"'{node.op}'")
            return "num", _arith(node.op, lf, rf)
        if isinstance(node, Compare):
            return "bool", self.compare(node)
        if isinstance(node, InList):
            return "bool", self.in_list(node)
        if isinstance(node, Not):
            fn = self.want(node.operand, "bool", "'not'")
            return "bool", lambda c: np.logical_not(fn(c))
        if isinstance(node, BoolOp):
            fns = [self.want(o, "bool", f"'{node.op}'") for o in node.operands]
            red = np.logical_and if node.op == "and" else np.logical_or

            def boolop(c: EvalContext) -> Any:
                acc = fns[0](c)
                for f in fns[1:]:
                    acc = red(acc, f(c))
                return acc

            return "bool", boolop
        raise CompileError(f"unsupported expression {type(node).__name__}", 0)  # pragma: no cover

    def want(self, node: Node, typ: str, where: str) -> Fn:
        t, fn = self.run(node)
        if t != typ:
            raise CompileError(f"{where} needs a {typ} operand, found {t}", node.col)
        return fn

    def name(self, node: Name) -> tuple[str, Fn]:
        if node.space == "":
            f = node.name
            if f in ("amount", "score", "verdict"):
                return "num", lambda c, f=f: getattr(c.inp, f)
            if f == "mcc":
                return "num", lambda c: np.where(c.inp.mcc < 0, np.nan, c.inp.mcc)
            if f == "hour":
                return "num", lambda c: c.hour()
            if f == "weekday":
                return "num", lambda c: c.weekday()
            if f in CAT_FIELDS:
                return f"cat:{f}", lambda c, f=f: getattr(c.inp, f)
            known = ", ".join((*NUM_FIELDS, *CAT_FIELDS))
            raise CompileError(
                f"unknown field {f!r} (known: {known}, feature.*, velocity.*)", node.col
            )
        if node.space == "feature":
            idx = _FEATURE_INDEX.get(node.name)
            if idx is None:
                raise CompileError(
                    f"unknown feature {node.name!r} (see docs/features.md)", node.col
                )
            self.features.add(node.name)

            def feat(c: EvalContext, idx: int = idx) -> Any:
                x = c.inp.features
                if x is None:
                    raise PolicyError("policy reads feature.* but the batch has no features")
                return x[:, idx]

            return "num", feat
        if node.space == "velocity":
            if node.name not in self.known_velocities:
                raise CompileError(
                    f"velocity {node.name!r} is not declared in the bundle", node.col
                )
            self.velocities.add(node.name)
            return "num", lambda c, v=node.name: c.velocity[v]
        raise CompileError(f"unknown namespace {node.space!r} (feature, velocity)", node.col)

    def call(self, node: Call) -> tuple[str, Fn]:
        fname, args = node.func, node.args
        if fname in ("in_list", "has"):
            if (
                len(args) != 1
                or not isinstance(args[0], Literal)
                or not isinstance(args[0].value, str)
            ):
                raise CompileError(f"{fname}() takes one string literal", node.col)
            arg = args[0].value
            if fname == "has":
                if arg not in ("merchant", "device"):
                    raise CompileError("has() takes 'merchant' or 'device'", args[0].col)
                return "bool", lambda c, a=arg: getattr(c.inp, f"has_{a}")
            if arg not in self.known_lists:
                raise CompileError(f"list {arg!r} is not declared in the bundle", args[0].col)
            self.lists.add(arg)
            return "bool", lambda c, a=arg: c.lists[a]
        if fname == "abs":
            if len(args) != 1:
                raise CompileError("abs() takes one argument", node.col)
            fn = self.want(args[0], "num", "abs()")
            return "num", lambda c: np.abs(fn(c))
        if fname in ("min", "max"):
            if len(args) != 2:
                raise CompileError(f"{fname}() takes two arguments", node.col)
            a = self.want(args[0], "num", f"{fname}()")
            b = self.want(args[1], "num", f"{fname}()")
            op = np.fmin if fname == "min" else np.fmax
            return "num", lambda c: op(a(c), b(c))
        raise CompileError(f"unknown function {fname!r} (in_list, has, abs, min, max)", node.col)

    def compare(self, node: Compare) -> Fn:
        lt, lf = self.run(node.left)
        rt, rf = self.run(node.right)
        op = node.op
        if lt == "num" and rt == "num":
            return _cmp(op, lf, rf)
        cat, lit = (lt, node.right) if lt.startswith("cat:") else (rt, node.left)
        other = rt if cat is lt else lt
        if cat.startswith("cat:") and other == "str" and isinstance(lit, Literal):
            if op not in ("==", "!="):
                raise CompileError(f"{cat[4:]} can only be compared with == or !=", node.col)
            code = _encode_cat(cat[4:], str(lit.value), lit.col)
            col_fn = lf if cat is lt else rf
            if op == "==":
                return lambda c: col_fn(c) == code
            return lambda c: col_fn(c) != code
        if lt == "bool" and rt == "bool" and op in ("==", "!="):
            return _cmp(op, lf, rf)
        raise CompileError(f"cannot compare {lt} {op} {rt}", node.col)

    def in_list(self, node: InList) -> Fn:
        t, fn = self.run(node.operand)
        if t == "num":
            if not all(isinstance(i.value, float) for i in node.items):
                raise CompileError("a number can only be 'in' a list of numbers", node.col)
            values = np.array([float(i.value) for i in node.items], dtype=np.float64)
        elif t.startswith("cat:"):
            if not all(isinstance(i.value, str) for i in node.items):
                raise CompileError(f"{t[4:]} can only be 'in' a list of strings", node.col)
            values = np.array(
                [_encode_cat(t[4:], str(i.value), i.col) for i in node.items], dtype=np.int64
            )
        else:
            raise CompileError(f"'in' needs a number or a categorical field, found {t}", node.col)
        negate = node.negate

        small = values.shape[0] <= 8

        def isin(c: EvalContext) -> Any:
            x = fn(c)
            if small:
                hit = np.zeros(np.shape(x), dtype=np.bool_)
                for v in values:
                    hit |= x == v
            else:
                hit = np.isin(x, values)
            return np.logical_not(hit) if negate else hit

        return isin


def canonical(node: Node) -> str:
    """The text of ``node`` without positions: equal for equal subexpressions."""
    if isinstance(node, Literal):
        return repr(node.value)
    if isinstance(node, Name):
        return f"{node.space}.{node.name}" if node.space else node.name
    if isinstance(node, Call):
        return f"{node.func}({','.join(canonical(a) for a in node.args)})"
    if isinstance(node, Neg):
        return f"(-{canonical(node.operand)})"
    if isinstance(node, BinOp | Compare):
        return f"({canonical(node.left)}{node.op}{canonical(node.right)})"
    if isinstance(node, InList):
        items = ",".join(repr(i.value) for i in node.items)
        return f"({canonical(node.operand)}{' not' if node.negate else ''} in [{items}])"
    if isinstance(node, Not):
        return f"(not {canonical(node.operand)})"
    return "(" + f" {node.op} ".join(canonical(o) for o in node.operands) + ")"


def _arith(op: str, lf: Fn, rf: Fn) -> Fn:
    if op == "+":
        return lambda c: lf(c) + rf(c)
    if op == "-":
        return lambda c: lf(c) - rf(c)
    if op == "*":
        return lambda c: lf(c) * rf(c)

    def div(c: EvalContext) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b = lf(c), rf(c)
            return np.where(b == 0, np.nan, a / np.where(b == 0, 1.0, b))

    return div


def _cmp(op: str, lf: Fn, rf: Fn) -> Fn:
    ops: dict[str, Callable[[Any, Any], Any]] = {
        "==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
        ">": np.greater, ">=": np.greater_equal,
    }  # fmt: skip
    f = ops[op]
    if op == "!=":
        # NaN != x is true in IEEE; a missing value must never make a rule fire
        def ne(c: EvalContext) -> Any:
            a, b = lf(c), rf(c)
            return f(a, b) & ~np.isnan(a) & ~np.isnan(b)

        return ne
    return lambda c: f(lf(c), rf(c))


def compile_condition(node: Node, *, velocities: frozenset[str], lists: frozenset[str]) -> Compiled:
    """Type-check and compile a parsed condition (must be boolean)."""
    comp = _Compiler(velocities, lists)
    t, fn = comp.run(node)
    if t != "bool":
        raise CompileError(f"a condition must be true/false, this is a {t}", node.col)
    return Compiled(
        fn=fn,
        features=frozenset(comp.features),
        velocities=frozenset(comp.velocities),
        lists=frozenset(comp.lists),
    )
