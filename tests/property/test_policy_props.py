"""Property tests of the policy: the parser never crashes, order and batching invariants."""

from __future__ import annotations

import contextlib
import itertools
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "policy"))
from policy_helpers import HEADER, card_list, ref_of, rule, velocity

from fraudnet.core.policy import Policy, PolicyEngine, PolicyHolder, PolicyInput, load_bundle
from fraudnet.core.policy.compile import compile_condition
from fraudnet.core.policy.lang import parse
from fraudnet.errors import PolicyError

ALPHABET = st.sampled_from(list("amount score mcc () [] , . == != <= >= < > + - * / and or not in "
                                "'ecom' \"FR\" 1 2.5 velocity.v feature.CARD_NB_TX_1DAY in_list "
                                "true false"))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(ALPHABET, max_size=30).map("".join) | st.text(max_size=60))
def test_parser_and_compiler_only_raise_policy_errors(src: str) -> None:
    with contextlib.suppress(PolicyError):
        compile_condition(parse(src), velocities=frozenset({"v"}), lists=frozenset({"l"}))


def _inp(n: int, seed: int) -> PolicyInput:
    rng = np.random.default_rng(seed)
    return PolicyInput.from_arrays(
        ts_s=1.7e9 + np.sort(rng.uniform(0, 7200, n)),
        amount=np.round(rng.gamma(2.0, 60.0, n), 2),
        card_key=rng.integers(0, 6, n).astype(np.uint64),
        terminal_key=rng.integers(0, 3, n).astype(np.uint64),
        score=rng.random(n),
        channel=rng.integers(0, 6, n),
    )


RULES = st.lists(
    st.tuples(
        st.sampled_from(["allow", "review", "step_up", "block"]),
        st.sampled_from(
            [
                "amount > {x}",
                "score >= 0.{d}",
                "velocity.c >= {d}",
                "velocity.s > {x} and channel == 'ecom'",
                'in_list("w")',
            ]
        ),
        st.integers(1, 9),
        st.integers(1, 400),
    ),
    max_size=8,
)


def _bundle(rules: list[tuple[str, str, int, int]], allow_card: int) -> str:
    text = HEADER + velocity("c", "card", "count", "1h", "5m")
    text += velocity("s", "terminal", "sum", "30m", "1m")
    for k, (action, tmpl, d, x) in enumerate(rules):
        text += rule(f"r{k}", action, tmpl.format(d=d, x=x))
    text += card_list("vip", "allow", [(ref_of(allow_card), "")])
    text += card_list("w", "none", [(ref_of(2), "")])
    return text


@settings(max_examples=60, deadline=None)
@given(RULES, st.integers(0, 5), st.integers(0, 2**16), st.integers(1, 7))
def test_order_invariants_and_batch_independence(
    rules: list[tuple[str, str, int, int]], allow_card: int, seed: int, parts: int
) -> None:
    b = load_bundle(_bundle(rules, allow_card).encode(), "p.toml")
    inp = _inp(60, seed)
    whole = (
        PolicyEngine(PolicyHolder(b, now_us=0))
        .evaluate_many([str(i) for i in range(60)], inp, 1.7e9)
        .live
    )
    hits = whole.rule_hits
    for i in range(60):
        fired = {rules[k][0] for k in range(len(rules)) if hits[k, i]}
        # the documented order, written out per transaction
        if inp.card_key[i] == allow_card or "allow" in fired:
            want = "allow"
        elif "block" in fired or inp.score[i] >= 0.9:
            want = "block"
        elif "step_up" in fired:
            want = "step_up"
        elif "review" in fired or inp.score[i] >= 0.5:
            want = "review"
        else:
            want = "allow"
        assert whole.action(i) == want
    # splitting the stream into batches gives the same decisions (state carries over)
    eng = PolicyEngine(PolicyHolder(b, now_us=0))
    cuts = np.linspace(0, 60, parts + 1).astype(int)
    codes = []
    for s, e in itertools.pairwise(cuts):
        idx = np.arange(s, e)
        codes.extend(eng.evaluate_many([str(i) for i in idx], inp.take(idx), 1.7e9).live.codes)
    assert list(codes) == whole.codes.tolist()


@settings(max_examples=40, deadline=None)
@given(RULES)
def test_evaluation_is_deterministic(rules: list[tuple[str, str, int, int]]) -> None:
    p = Policy(load_bundle(_bundle(rules, 0).encode(), "p.toml"))
    inp = _inp(40, 1)
    vel = {"c": np.ones(40), "s": np.full(40, 100.0)}
    a, b = p.evaluate_many(inp, vel, 0.0), p.evaluate_many(inp, vel, 0.0)
    assert a.codes.tolist() == b.codes.tolist()
    assert a.reasons_many([()] * 40) == b.reasons_many([()] * 40)
