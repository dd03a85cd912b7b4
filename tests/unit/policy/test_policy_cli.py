"""``fraudnet policy`` and ``fraudnet review`` end to end (in-process CLI, real files)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from policy_helpers import HEADER, card_list, rule

from fraudnet.adapters.storage.keys import generate_node_files, load_local_secret
from fraudnet.adapters.storage.review import ReviewItem, open_review_queue
from fraudnet.cli.main import main
from fraudnet.core.ids import pseudonym
from fraudnet.core.policy import load_bundle
from fraudnet.replay.generator import GeneratorConfig, generate

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "policies"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_ok_and_error_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(HEADER + rule("a", "block", "amount > 1"))
    code, out, _ = run(capsys, "policy", "check", str(good), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["ok"] and info["sha256"] == load_bundle(good.read_bytes(), "x").sha256
    bad = tmp_path / "bad.toml"
    bad.write_text(HEADER + rule("a", "block", "amount >"))
    code, out, err = run(capsys, "policy", "check", str(bad))
    assert code == 4
    assert err.startswith(f"fraudnet: error: {bad}:10:")
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "policy", "check", str(tmp_path / "missing.toml"))
    assert code == 4 and "cannot read" in err


def test_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(HEADER + rule("x", "block", "amount > 1") + rule("y", "review", "amount > 2"))
    b.write_text(
        HEADER + rule("x", "block", "amount > 5") + rule("z", "review", "amount > 2", version=2)
    )
    code, out, _ = run(capsys, "policy", "diff", str(a), str(b), "--json")
    assert code == 0
    d = json.loads(out)
    assert "rule y: removed" in d["changes"]
    assert any(c.startswith("rule z: added") for c in d["changes"])
    assert "rule x: when 'amount > 1' -> 'amount > 5'" in d["changes"]
    assert d["warnings"] == ["rule x: action/condition changed but version is still 1"]


def test_lists_add_stores_only_the_pseudonym(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = tmp_path / "node"
    node.mkdir()
    generate_node_files(node)
    f = tmp_path / "p.toml"
    f.write_text(HEADER + card_list("vip", "allow", []) + card_list("geo", "deny", [], "country")
                 + rule("after", "review", "amount > 1"))  # fmt: skip
    pan = "4111 1111 1111 1111"
    code, out, err = run(capsys, "policy", "lists", "add", str(f), "--list", "vip", "--node",
                         str(node), "--value", pan, "--expires", "2030-01-01", "--note", "VIP")  # fmt: skip
    assert code == 0, err
    text = f.read_text()
    # the card number in any spacing (not its first digits: a random hex pseudonym or
    # digest contains "4111" about once in a thousand runs)
    for shown in (text, out):
        assert pan not in shown and pan.replace(" ", "") not in shown
    ref = pseudonym(load_local_secret(node), "card", pan)[:16].hex()
    b = load_bundle(text.encode(), str(f))
    assert [e.ident for e in b.lists[0].entries] == [ref]
    assert b.lists[0].entries[0].expires_s == 1893456000.0
    assert [r.id for r in b.rules] == ["after"]  # the rest of the file is intact
    code, _, _ = run(capsys, "policy", "lists", "add", str(f), "--list", "geo", "--value", "kp")
    assert code == 0
    assert load_bundle(f.read_bytes(), "f").lists[1].entries[0].ident == "KP"
    code, _, err = run(capsys, "policy", "lists", "add", str(f), "--list", "vip", "--value", pan)
    assert code == 4 and "--node" in err  # a card needs the node secret
    code, _, _ = run(capsys, "policy", "lists", "remove", str(f), "--list", "vip", "--ref", ref)
    assert code == 0
    b2 = load_bundle(f.read_bytes(), "f")
    assert b2.lists[0].entries == () and b2.lists[1].entries[0].ident == "KP"
    code, _, err = run(capsys, "policy", "lists", "remove", str(f), "--list", "vip", "--ref", ref)
    assert code == 4 and "has no entry" in err


def test_deploy_is_validated_and_atomic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = tmp_path / "node"
    node.mkdir()
    good = tmp_path / "good.toml"
    good.write_text(HEADER + rule("a", "block", "amount > 1"))
    bad = tmp_path / "bad.toml"
    bad.write_text(HEADER + rule("a", "blok", "amount > 1"))
    assert run(capsys, "policy", "deploy", str(good), "--node", str(node))[0] == 0
    assert (node / "policy" / "active.toml").read_bytes() == good.read_bytes()
    assert run(capsys, "policy", "deploy", str(bad), "--node", str(node))[0] == 4
    assert (node / "policy" / "active.toml").read_bytes() == good.read_bytes()
    assert run(capsys, "policy", "deploy", str(good), "--node", str(node), "--shadow")[0] == 0
    assert (node / "policy" / "shadow.toml").exists()


def write_generated(path: Path, n: int = 4000) -> list[dict[str, object]]:
    cfg = GeneratorConfig(customers=150, terminals=300, days=12, seed=3)
    rows = list(generate(cfg, limit=n))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def test_backtest_on_a_small_generated_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "gen.csv"
    rows = write_generated(data)
    amount = np.array([float(r["amount"]) for r in rows])
    label = np.array([int(r["label"]) for r in rows])  # type: ignore[call-overload]
    code, out, err = run(capsys, "policy", "backtest", str(EXAMPLES / "generated-segments.toml"),
                         "--data", str(data), "--live", str(EXAMPLES / "fdh-live.toml"),
                         "--rate", "USD=1", "--json")  # fmt: skip
    assert code == 0, err
    rep = json.loads(out)
    assert rep["transactions"] == len(rows) and rep["frauds"] == int(label.sum())
    cand, live = rep["policies"]
    assert (cand["role"], live["role"]) == ("candidate", "live")
    for p in (cand, live):
        acts = p["by_action"]
        assert sum(a["transactions"] for a in acts.values()) == len(rows)
        assert sum(a["frauds"] for a in acts.values()) == int(label.sum())
        big = next(r for r in p["rules"] if r["id"] == "amount_very_high")
        assert big["matched"] == int((amount > 220).sum())
        assert big["matched_frauds"] == int(((amount > 220) & (label == 1)).sum())
        assert big["precision"] == 1.0  # the generator labels every amount > 220 as fraud
    o = live["overall"]
    assert o["flagged"] == int((amount > 220).sum()) and o["block_precision"] == 1.0
    segs = {s["id"]: s["matched"] for s in cand["segments"]}
    channels = np.array([r["channel"] for r in rows])
    assert segs["ecom_high_risk_mcc"] + segs["ecom"] == int((channels == "ecom").sum())
    assert sum(segs.values()) == len(rows)
    code, out, _ = run(capsys, "policy", "backtest", str(EXAMPLES / "fdh-live.toml"),
                       "--data", str(data), "--rate", "USD=1")  # fmt: skip
    assert code == 0 and "[candidate] fdh-live@1" in out and "rule amount_very_high" in out


def test_backtest_bad_data_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "gen.csv"
    write_generated(data, n=300)
    code, _, err = run(capsys, "policy", "backtest", str(EXAMPLES / "fdh-live.toml"),
                       "--data", str(data))  # fmt: skip
    assert code == 4 and "no exchange rate configured for USD" in err and ":line " in err


def test_review_cli_list_show_resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = tmp_path / "node"
    node.mkdir()
    assert run(capsys, "review", "list", "--node", str(node))[0] == 4  # no queue yet
    with open_review_queue(node) as q:
        q.enqueue_many([
            ReviewItem("tx1", 1_700_000_000_000_000, b"\x01" * 16, b"\x02" * 16, 99.0, 0.7,
                       "review", ("rule:r@v1: big", "AMOUNT_HIGH"), "p@1#abc", {"velocity.c": 4}),
            ReviewItem("tx2", 1_700_000_100_000_000, b"\x01" * 16, b"\x02" * 16, 5.0, 0.2,
                       "step_up", ("action:step_up",), "p@1#abc", {}),
        ], now_us=1)  # fmt: skip
    code, out, _ = run(capsys, "review", "list", "--node", str(node), "--json")
    assert code == 0 and [i["tx_id"] for i in json.loads(out)["items"]] == ["tx1", "tx2"]
    code, out, _ = run(capsys, "review", "show", "--node", str(node), "tx1")
    assert code == 0 and "rule:r@v1: big" in out and "velocity.c" in out and "tx2" in out
    out_file = node / "labels" / "review-labels.jsonl"
    code, out, _ = run(capsys, "review", "resolve", "--node", str(node), "tx1", "fraud",
                       "--analyst", "ann", "--note", "called the customer",
                       "--labels-out", str(out_file))  # fmt: skip
    assert code == 0 and "1 label(s)" in out
    labels = (node / "labels" / "review-labels.jsonl").read_text().splitlines()
    assert [json.loads(x)["kind"] for x in labels] == ["fraud"]
    code, _, err = run(capsys, "review", "resolve", "--node", str(node), "tx1", "genuine")
    assert code == 4 and "already resolved" in err
    code, out, _ = run(capsys, "review", "list", "--node", str(node), "--status", "fraud")
    assert code == 0 and "tx1" in out and "tx2" not in out


def test_bench_policy_runs_and_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "bench", "policy", "--rules", "12", "--batch", "512",
                       "--batches", "2", "--repeat", "1", "--warm", "512", "--json")  # fmt: skip
    assert code == 0
    rep = json.loads(out)
    assert rep["rules"] == 12 and rep["transactions"] == 1024
    assert rep["ns_per_tx"] > 0 and rep["cpu_ns_per_tx"] > 0 and rep["ns_per_tx_velocity_only"] > 0
    assert 0 <= rep["share_decided_by_policy"] <= 1
