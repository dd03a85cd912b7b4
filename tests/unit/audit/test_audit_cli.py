"""``fraudnet audit ...`` end to end through the real entry point (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.adapters.storage.audit_files import list_segments
from fraudnet.adapters.storage.audit_log import AuditPolicy, open_audit_log
from fraudnet.cli.main import main
from fraudnet.core import crypto
from fraudnet.core.audit.schema import decision_record, event_record
from fraudnet.core.records import Decision


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, str]:
    key = Ed25519PrivateKey.generate()
    t = [1_700_000_000_000_000]

    def clock() -> int:
        t[0] += 400_000
        return t[0]

    pol = AuditPolicy(max_segment_bytes=5000)
    with open_audit_log(tmp_path / "audit", key, policy=pol, clock=clock) as log:
        log.append_many([event_record("node_start", at_us=t[0], actor="node:a", action="start")])
        for i in range(60):
            d = Decision(f"tx{i}", bytes([i]) * 16, ("allow", "review", "block")[i % 3],
                         i / 60, ("r1",), "m1", t[0], t[0] + i, 100 + i)  # fmt: skip
            log.append_many([decision_record(d, actor="node:a", origin="api")])
            log.append_many([event_record("signal_sent", at_us=t[0] + i, actor="node:a",
                                          action="send", signal_id=f"s{i}")])  # fmt: skip
            log.commit()
    return tmp_path, crypto.public_bytes(key).hex()


def test_verify_ok_then_tampered(
    node: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    d, pub = node
    code, out, _ = run(capsys, "audit", "verify", str(d), "--key", pub)
    assert code == 0 and "OK: 121 records" in out
    code, out, _ = run(capsys, "audit", "verify", str(d), "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    seg = list_segments(d / "audit")[1].log
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 4
    seg.write_bytes(bytes(data))
    code, out, err = run(capsys, "audit", "verify", str(d), "--key", pub)
    assert code == 5 and "modified" in err and "record" in err
    code, _, err = run(capsys, "audit", "verify", str(d), "--key", "00" * 32)
    assert code == 5


def test_show_filters(node: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    d, _ = node
    code, out, _ = run(capsys, "audit", "show", str(d), "--tx", "tx7", "--format", "jsonl")
    rows = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and len(rows) == 1 and rows[0]["details"]["tx_id"] == "tx7"
    code, out, _ = run(capsys, "audit", "show", str(d), "--kind", "signal_sent", "--format",
                       "jsonl", "--limit", "5")  # fmt: skip
    assert [json.loads(x)["kind"] for x in out.splitlines()] == ["signal_sent"] * 5
    code, out, _ = run(capsys, "audit", "show", str(d), "--entity", ("07" * 16)[:8],
                       "--format", "jsonl")  # fmt: skip
    assert [json.loads(x)["details"]["tx_id"] for x in out.splitlines()] == ["tx7"]
    code, out, _ = run(capsys, "audit", "show", str(d), "--kind", "node_start")
    assert code == 0 and "node_start" in out and len(out.splitlines()) == 2
    code, _, err = run(capsys, "audit", "show", str(d), "--since", "yesterday")
    assert code == 4 and "--since" in err


def test_prove_and_check_proof(
    node: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    d, pub = node
    proof = tmp_path / "p.json"
    code, _, _ = run(capsys, "audit", "prove", str(d), "--record", "17", "--out", str(proof))
    assert code == 0
    code, out, _ = run(capsys, "audit", "check-proof", str(proof), "--key", pub)
    assert code == 0 and "OK: record 17" in out
    doc = json.loads(proof.read_text())
    last = int(doc["record_payload"][-2:], 16) ^ 1
    doc["record_payload"] = doc["record_payload"][:-2] + f"{last:02x}"
    proof.write_text(json.dumps(doc))
    code, _, err = run(capsys, "audit", "check-proof", str(proof), "--key", pub)
    assert code == 5 and "NOT included" in err
    proof.write_text("not json")
    code, _, err = run(capsys, "audit", "check-proof", str(proof))
    assert code == 4


def test_consistency_and_checkpoint_export(
    node: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    d, _ = node
    old = tmp_path / "old.json"
    code, out, _ = run(capsys, "audit", "checkpoint", str(d), "--size", "0", "--out", str(old))
    assert code == 0
    code, out, _ = run(capsys, "audit", "consistency", str(d), str(old), "121")
    assert code == 0 and json.loads(out)["verified"] is True
    code, _, err = run(capsys, "audit", "consistency", str(d), "121", str(old))
    assert "larger" in err
    assert code == 4


def test_stats_and_report(
    node: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    d, _ = node
    code, out, _ = run(capsys, "audit", "stats", str(d), "--json")
    s = json.loads(out)
    assert code == 0 and s["records"] == 121
    assert s["decision_outcomes"] == {"allow": 20, "block": 20, "review": 20}
    assert s["latency_us"]["p50"] == 129 and s["latency_us"]["max"] == 159
    page = tmp_path / "r.html"
    code, _, _ = run(capsys, "audit", "report", str(d), "--html", str(page))
    html = page.read_text()
    assert code == 0 and "<svg" in html and "decisions (60)" in html and "signals (60)" in html


def test_not_a_log(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "audit", "verify", str(tmp_path))
    assert code == 4 and "not an audit log" in err
