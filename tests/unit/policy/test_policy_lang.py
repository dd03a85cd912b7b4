"""The condition language: parsing, precedence, typed errors with columns, no eval."""

from __future__ import annotations

import pytest

from fraudnet.core.policy.compile import CompileError, compile_condition
from fraudnet.core.policy.lang import (
    MAX_DEPTH,
    BinOp,
    BoolOp,
    Compare,
    InList,
    Name,
    Not,
    ParseError,
    parse,
)
from fraudnet.errors import PolicyError


def test_precedence_and_or_not() -> None:
    node = parse("not a > 1 or b < 2 and c == 3")
    assert isinstance(node, BoolOp) and node.op == "or"
    assert isinstance(node.operands[0], Not)
    right = node.operands[1]
    assert isinstance(right, BoolOp) and right.op == "and"


def test_arithmetic_binds_tighter_than_comparison() -> None:
    node = parse("amount - 1 * 2 > 3")
    assert isinstance(node, Compare) and node.op == ">"
    assert isinstance(node.left, BinOp) and node.left.op == "-"
    assert isinstance(node.left.right, BinOp) and node.left.right.op == "*"


def test_namespaced_names_and_in_lists() -> None:
    node = parse('country not in ["RU", "KP"]')
    assert isinstance(node, InList) and node.negate
    assert [i.value for i in node.items] == ["RU", "KP"]
    n2 = parse("feature.CARD_NB_TX_1DAY")
    assert n2 == Name("feature", "CARD_NB_TX_1DAY", 0)


@pytest.mark.parametrize(
    ("src", "col", "msg"),
    [
        ("amount > > 3", 9, "unexpected '>'"),
        ("amount > 3 )", 11, "after a complete expression"),
        ("(amount > 3", 11, "expected ')'"),
        ("amount $ 3", 7, "unexpected character"),
        ("", 0, "empty expression"),
        ("x in [1, foo]", 9, "list items must be numbers or strings"),
    ],
)
def test_parse_errors_have_columns(src: str, col: int, msg: str) -> None:
    with pytest.raises(ParseError) as ei:
        parse(src)
    assert ei.value.col == col
    assert msg in ei.value.message
    assert isinstance(ei.value, PolicyError)


def test_depth_is_bounded() -> None:
    with pytest.raises(ParseError, match="nested deeper"):
        parse("(" * (MAX_DEPTH + 5) + "1" + ")" * (MAX_DEPTH + 5))
    with pytest.raises(ParseError, match="nested deeper"):
        parse("not " * (MAX_DEPTH + 5) + "true")


def _compile(src: str) -> None:
    compile_condition(parse(src), velocities=frozenset({"v"}), lists=frozenset({"l"}))


@pytest.mark.parametrize(
    ("src", "msg"),
    [
        ("__import__('os')", "unknown function"),
        ("eval('1') == 1", "unknown function"),
        ("amount.__class__ == 1", "unknown namespace"),
        ("amunt > 3", "unknown field 'amunt'"),
        ("feature.NOPE > 1", "unknown feature"),
        ("velocity.w > 1", "not declared"),
        ('in_list("nope")', "not declared"),
        ("amount", "must be true/false"),
        ('channel == "ecomm"', "unknown channel"),
        ('country == "FRA"', "2 ASCII letters"),
        ('channel > "ecom"', "only be compared with == or !="),
        ("amount > 'x'", "cannot compare"),
        ("amount and true", "needs a bool operand"),
        ('mcc in ["a"]', "list of numbers"),
        ("has('card')", "'merchant' or 'device'"),
        ("min(amount) > 1", "two arguments"),
    ],
)
def test_type_errors(src: str, msg: str) -> None:
    with pytest.raises(CompileError, match=msg):
        _compile(src)


def test_attribute_calls_do_not_parse() -> None:
    with pytest.raises(ParseError, match="after a complete expression"):
        parse("__import__('os').system('id')")


def test_compile_tracks_dependencies() -> None:
    c = compile_condition(
        parse('feature.CARD_NB_TX_1DAY > 2 and velocity.v > 1 and in_list("l")'),
        velocities=frozenset({"v"}),
        lists=frozenset({"l"}),
    )
    assert c.features == {"CARD_NB_TX_1DAY"}
    assert c.velocities == {"v"}
    assert c.lists == {"l"}
