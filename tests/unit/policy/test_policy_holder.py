"""Hot reload under load (no transaction lost or decided twice) and shadow mode."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from policy_helpers import HEADER, batch, rule, velocity

from fraudnet.core.audit.schema import encode_body
from fraudnet.core.policy import PolicyEngine, PolicyHolder, load_bundle
from fraudnet.errors import PolicyError


def bundle_text(version: int) -> str:
    """Version v blocks amounts above 100 * v (so the version is visible in outcomes)."""
    return (
        HEADER.replace("version = 1", f"version = {version}")
        + velocity("c", "card", "count", "1h", "1m")
        + rule("limit", "block", f"amount > {100 * version}", version=version)
        + rule("burst", "review", "velocity.c >= 50")
    )


def test_replace_validates_before_swapping_and_audits() -> None:
    b1 = load_bundle(bundle_text(1).encode(), "v1.toml")
    holder = PolicyHolder(b1, now_us=5)
    assert holder.current.version == 1
    with pytest.raises(PolicyError):
        holder.replace(b"[policy]\nname = 'x'\n", source="bad.toml", now_us=6)
    assert holder.current.version == 1 and holder.current.bundle is b1
    inst, rec = holder.replace(bundle_text(2).encode(), source="v2.toml", now_us=7)
    assert inst.version == 2 and holder.current is inst
    assert rec.kind == "policy_change" and rec.action == "deploy"
    assert rec.details["sha256"] == inst.bundle.sha256
    assert rec.details["previous_sha256"] == b1.sha256
    assert rec.details["policy_id"] == inst.bundle.policy_id
    encode_body(rec)  # a valid audit record (schema-checked, no PAN)


def test_hot_reload_under_concurrent_load() -> None:
    """A decide thread works batches while a writer swaps policies as fast as it can.

    Every transaction is decided exactly once, each batch by one policy version,
    versions never go backwards, and the outcome matches that version's rule.
    """
    holder = PolicyHolder(
        load_bundle(bundle_text(1).encode(), "v1.toml"), now_us=0, lock=threading.Lock()
    )
    engine = PolicyEngine(holder)
    bundles = [load_bundle(bundle_text(v).encode(), f"v{v}.toml") for v in range(1, 6)]
    n_batches, size = 300, 64
    decided: dict[str, tuple[int, str]] = {}
    batch_versions: list[int] = []
    done = threading.Event()
    errors: list[BaseException] = []
    swaps: list[int] = []

    def writer() -> None:
        k = 0
        try:
            while not done.is_set():
                inst, _ = holder.install(bundles[k % len(bundles)], now_us=k)
                swaps.append(inst.version)
                k += 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def decider() -> None:
        try:
            rng = np.random.default_rng(0)
            for b in range(n_batches):
                ids = [f"b{b}-{i}" for i in range(size)]
                amount = rng.uniform(0, 600, size)
                inp = batch(size, t0=1.7e9 + b, amount=amount,
                            card_key=rng.integers(0, 50, size).astype(np.uint64))  # fmt: skip
                res = engine.evaluate_many(ids, inp, 1.7e9)
                batch_versions.append(res.live_version)
                limit = 100 * res.live.version
                for i, tx in enumerate(ids):
                    assert tx not in decided, f"{tx} decided twice"
                    decided[tx] = (res.live_version, res.live.action(i))
                    assert (res.live.action(i) == "block") == (amount[i] > limit)
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    threads = [threading.Thread(target=writer), threading.Thread(target=decider)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert len(decided) == n_batches * size
    assert batch_versions == sorted(batch_versions)  # monotonic
    assert len(set(batch_versions)) > 1  # the swaps really interleaved with decisions
    assert len(swaps) > 0 and swaps == sorted(swaps) and len(set(swaps)) == len(swaps)
    assert holder.current.version == 1 + len(swaps)


def test_shadow_does_not_change_live_decisions_and_counts_differences() -> None:
    live_b = load_bundle(bundle_text(1).encode(), "live.toml")
    cand_b = load_bundle(bundle_text(3).encode(), "cand.toml")
    amounts = np.array([50.0, 150.0, 250.0, 350.0, 150.0])
    ids = [f"t{i}" for i in range(5)]

    def run(with_shadow: bool):  # type: ignore[no-untyped-def]
        holder = PolicyHolder(live_b, now_us=0)
        if with_shadow:
            rec = holder.set_shadow(cand_b, now_us=1)
            assert rec.action == "shadow_start" and rec.details["sha256"] == cand_b.sha256
        eng = PolicyEngine(holder)
        return eng, eng.evaluate_many(ids, batch(5, amount=amounts), 1.7e9)

    _, plain = run(False)
    eng, res = run(True)
    assert res.live.codes.tolist() == plain.live.codes.tolist()
    assert [res.live.action(i) for i in range(5)] == ["allow", "block", "block", "block", "block"]
    assert res.shadow is not None
    assert [res.shadow.action(i) for i in range(5)] == ["allow", "allow", "allow", "block", "allow"]
    stats = eng.shadow_stats
    assert stats is not None
    d = stats.as_dict()
    assert d["total"] == 5 and d["differing"] == 3
    assert d["matrix"]["block"]["allow"] == 3 and d["matrix"]["block"]["block"] == 1
    assert d["candidate_rule_hits"] == {"limit": 1}
    assert [s[0] for s in stats.samples] == ["t1", "t2", "t4"]
    assert stats.samples[0][1:3] == ("block", "allow")


def test_shadow_shares_velocity_state_without_double_counting() -> None:
    text = (
        HEADER + velocity("c", "card", "count", "1h", "1m") + rule("v", "block", "velocity.c >= 3")
    )
    b = load_bundle(text.encode(), "a.toml")
    holder = PolicyHolder(b, now_us=0)
    holder.set_shadow(load_bundle((text + "\n# candidate\n").encode(), "b.toml"), now_us=0)
    eng = PolicyEngine(holder)
    inp = batch(3, card_key=np.array([7, 7, 7], np.uint64))
    res = eng.evaluate_many(["a", "b", "c"], inp, 1.7e9)
    assert res.velocity["c"].tolist() == [1.0, 2.0, 3.0]
    assert res.live.codes.tolist() == res.shadow.codes.tolist() == [0, 0, 3]  # type: ignore[union-attr]
    assert len(eng.velocity.states) == 1


def test_shadow_removal_and_velocity_pruning() -> None:
    holder = PolicyHolder(load_bundle(bundle_text(1).encode(), "a.toml"), now_us=0)
    eng = PolicyEngine(holder)
    eng.evaluate_many(["x"], batch(1), 1.7e9)
    assert len(eng.velocity.states) == 1
    holder.install(
        load_bundle((HEADER + rule("r", "review", "amount > 1")).encode(), "b"), now_us=1
    )
    eng.prune_velocity()
    assert not eng.velocity.states
    rec = holder.set_shadow(None, now_us=2)
    assert rec.action == "shadow_remove" and holder.shadow is None
