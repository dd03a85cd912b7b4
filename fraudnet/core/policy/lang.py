"""The policy condition language: tokenizer and parser to a typed AST.

A condition is a small expression, never evaluated with ``eval``::

    amount > 500 and channel == "ecom" and not in_list("trusted_merchants")
    velocity.card_count_1h >= 4 or feature.CARD_AMOUNT_RATIO_30DAY > 3
    country in ["RU", "KP"] and score >= 0.4
    mcc in [5967, 7995] and (hour < 6 or hour >= 23)

Grammar (precedence low to high)::

    expr   := or
    or     := and ("or" and)*
    and    := not ("and" not)*
    not    := "not" not | cmp
    cmp    := sum (("=="|"!="|"<"|"<="|">"|">=") sum | ["not"] "in" list)?
    sum    := prod (("+"|"-") prod)*
    prod   := unary (("*"|"/") unary)*
    unary  := "-" unary | atom
    atom   := NUMBER | STRING | "true" | "false" | NAME ("." NAME)?
            | NAME "(" [expr ("," expr)*] ")" | "(" expr ")"
    list   := "[" [literal ("," literal)*] "]"

Every node carries its column offset in the source expression so that
errors point at the offending token. Types are checked in
:mod:`fraudnet.core.policy.compile`. Bounds: an expression is at most
:data:`MAX_EXPR_CHARS` characters and :data:`MAX_DEPTH` levels deep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from fraudnet.errors import PolicyError

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPR_CHARS",
    "BinOp",
    "BoolOp",
    "Call",
    "Compare",
    "InList",
    "Literal",
    "Name",
    "Neg",
    "Node",
    "Not",
    "ParseError",
    "parse",
]

MAX_EXPR_CHARS: Final = 2000
MAX_DEPTH: Final = 32
MAX_LIST_ITEMS: Final = 1000


class ParseError(PolicyError):
    """A condition does not parse; ``col`` is the 0-based offset in the expression."""

    def __init__(self, message: str, col: int) -> None:
        self.message = message
        self.col = col
        super().__init__(f"column {col + 1}: {message}")


@dataclass(frozen=True, slots=True)
class Literal:
    value: float | str | bool
    col: int


@dataclass(frozen=True, slots=True)
class Name:
    """A field (``amount``) or a namespaced name (``feature.X``, ``velocity.y``)."""

    space: str  # "" for plain fields
    name: str
    col: int


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple[Node, ...]
    col: int


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Node
    col: int


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # + - * /
    left: Node
    right: Node
    col: int


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # == != < <= > >=
    left: Node
    right: Node
    col: int


@dataclass(frozen=True, slots=True)
class InList:
    operand: Node
    items: tuple[Literal, ...]
    negate: bool
    col: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    col: int


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # and / or
    operands: tuple[Node, ...]
    col: int


Node = Literal | Name | Call | Neg | BinOp | Compare | InList | Not | BoolOp

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
      | (?P<str>"[^"\\\n]*"|'[^'\\\n]*')
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|!=|<=|>=|[<>()\[\],.+\-*/])
    )""",
    re.VERBOSE,
)
_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "true", "false"})


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # num str name op kw end
    text: str
    col: int


def _tokenize(src: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    n = len(src)
    while pos < n:
        if src[pos:].strip() == "":
            break
        m = _TOKEN.match(src, pos)
        if m is None or m.lastgroup is None:
            col = pos + (len(src[pos:]) - len(src[pos:].lstrip()))
            raise ParseError(f"unexpected character {src[col]!r}", col)
        kind = m.lastgroup
        text = m.group(kind)
        col = m.start(kind)
        if kind == "name" and text in _KEYWORDS:
            kind = "kw"
        out.append(_Tok(kind, text, col))
        pos = m.end()
    out.append(_Tok("end", "", n))
    return out


class _Parser:
    def __init__(self, src: str) -> None:
        self.toks = _tokenize(src)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def accept(self, kind: str, text: str) -> _Tok | None:
        t = self.peek()
        if t.kind == kind and t.text == text:
            self.i += 1
            return t
        return None

    def expect(self, kind: str, text: str) -> _Tok:
        t = self.accept(kind, text)
        if t is None:
            got = self.peek()
            shown = "end of expression" if got.kind == "end" else repr(got.text)
            raise ParseError(f"expected {text!r}, found {shown}", got.col)
        return t

    def enter(self, col: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(f"expression nested deeper than {MAX_DEPTH} levels", col)

    def expr(self) -> Node:
        self.enter(self.peek().col)
        try:
            return self.or_()
        finally:
            self.depth -= 1

    def or_(self) -> Node:
        first = self.and_()
        ops = [first]
        while self.accept("kw", "or"):
            ops.append(self.and_())
        return first if len(ops) == 1 else BoolOp("or", tuple(ops), first_col(first))

    def and_(self) -> Node:
        first = self.not_()
        ops = [first]
        while self.accept("kw", "and"):
            ops.append(self.not_())
        return first if len(ops) == 1 else BoolOp("and", tuple(ops), first_col(first))

    def not_(self) -> Node:
        t = self.accept("kw", "not")
        if t is not None:
            self.enter(t.col)
            try:
                return Not(self.not_(), t.col)
            finally:
                self.depth -= 1
        return self.cmp()

    def cmp(self) -> Node:
        left = self.sum_()
        t = self.peek()
        if t.kind == "op" and t.text in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            return Compare(t.text, left, self.sum_(), t.col)
        negate = False
        if t.kind == "kw" and t.text == "not":
            nxt = self.toks[self.i + 1]
            if nxt.kind == "kw" and nxt.text == "in":
                self.take()
                negate = True
        t2 = self.accept("kw", "in")
        if t2 is not None:
            return InList(left, self.list_(), negate, t2.col)
        return left

    def list_(self) -> tuple[Literal, ...]:
        self.expect("op", "[")
        items: list[Literal] = []
        if not self.accept("op", "]"):
            while True:
                t = self.take()
                neg = False
                if t.kind == "op" and t.text == "-":
                    neg = True
                    t = self.take()
                if t.kind == "num":
                    v = float(t.text)
                    items.append(Literal(-v if neg else v, t.col))
                elif t.kind == "str" and not neg:
                    items.append(Literal(t.text[1:-1], t.col))
                else:
                    raise ParseError("list items must be numbers or strings", t.col)
                if len(items) > MAX_LIST_ITEMS:
                    raise ParseError(f"more than {MAX_LIST_ITEMS} list items", t.col)
                if self.accept("op", "]"):
                    break
                self.expect("op", ",")
        return tuple(items)

    def sum_(self) -> Node:
        left = self.prod()
        while True:
            t = self.peek()
            if t.kind == "op" and t.text in ("+", "-"):
                self.take()
                left = BinOp(t.text, left, self.prod(), t.col)
            else:
                return left

    def prod(self) -> Node:
        left = self.unary()
        while True:
            t = self.peek()
            if t.kind == "op" and t.text in ("*", "/"):
                self.take()
                left = BinOp(t.text, left, self.unary(), t.col)
            else:
                return left

    def unary(self) -> Node:
        t = self.accept("op", "-")
        if t is not None:
            self.enter(t.col)
            try:
                return Neg(self.unary(), t.col)
            finally:
                self.depth -= 1
        return self.atom()

    def atom(self) -> Node:
        t = self.take()
        if t.kind == "num":
            return Literal(float(t.text), t.col)
        if t.kind == "str":
            return Literal(t.text[1:-1], t.col)
        if t.kind == "kw" and t.text in ("true", "false"):
            return Literal(t.text == "true", t.col)
        if t.kind == "op" and t.text == "(":
            inner = self.expr()
            self.expect("op", ")")
            return inner
        if t.kind == "name":
            if self.accept("op", "."):
                sub = self.take()
                if sub.kind != "name":
                    raise ParseError(f"expected a name after '{t.text}.'", sub.col)
                return Name(t.text, sub.text, t.col)
            if self.accept("op", "("):
                args: list[Node] = []
                if not self.accept("op", ")"):
                    while True:
                        args.append(self.expr())
                        if self.accept("op", ")"):
                            break
                        self.expect("op", ",")
                return Call(t.text, tuple(args), t.col)
            return Name("", t.text, t.col)
        shown = "end of expression" if t.kind == "end" else repr(t.text)
        raise ParseError(f"unexpected {shown}", t.col)


def first_col(node: Node) -> int:
    return node.col


def parse(src: str) -> Node:
    """Parse a condition; :class:`ParseError` (a :class:`PolicyError`) with a column."""
    if len(src) > MAX_EXPR_CHARS:
        raise ParseError(f"expression longer than {MAX_EXPR_CHARS} characters", 0)
    p = _Parser(src)
    if p.peek().kind == "end":
        raise ParseError("empty expression", 0)
    node = p.expr()
    end = p.peek()
    if end.kind != "end":
        raise ParseError(f"unexpected {end.text!r} after a complete expression", end.col)
    return node
