"""Witnessing: cosign peers' checkpoints; detect a rewritten log and a split view (core + CLI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudnet.adapters.storage.audit_files import read_checkpoints
from fraudnet.adapters.storage.audit_log import open_audit_log
from fraudnet.adapters.witness import latest_signed_checkpoint, read_witness_dir
from fraudnet.cli.main import main
from fraudnet.core import crypto
from fraudnet.core.audit.schema import event_record
from fraudnet.core.audit.witness import (
    Cosigned,
    SplitView,
    Witness,
    check_against_log,
    decode_checkpoint_msg,
    decode_cosign_msg,
    encode_checkpoint_msg,
    encode_cosign_msg,
    make_signer,
)
from fraudnet.errors import IntegrityError

NET = "witnet"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)
W1 = Ed25519PrivateKey.from_private_bytes(b"\x21" * 32)
W2 = Ed25519PrivateKey.from_private_bytes(b"\x22" * 32)
OUTSIDER = Ed25519PrivateKey.from_private_bytes(b"\x33" * 32)
T0 = 1_700_000_000_000_000


def witness(key: Ed25519PrivateKey) -> Witness:
    trusted = {crypto.public_bytes(LOG_KEY): "bank-a", crypto.public_bytes(key): "me"}
    return Witness(NET, trusted, make_signer(key, NET), crypto.public_bytes(key))


def write_log(d: Path, tag: str, sizes: list[int], *, same_until: int = 0) -> list[bytes]:
    """A real audit log of LOG_KEY; a signed checkpoint at each of ``sizes``; returns them."""
    t = [T0]

    def clock() -> int:
        t[0] += 1000
        return t[0]

    out = []
    with open_audit_log(d / "audit", LOG_KEY, network_id=NET, clock=clock) as log:
        n = 0
        for size in sizes:
            while n < size:
                log.append_many([event_record("config_change", at_us=T0 + n, actor="node:a",
                                               action="set",
                                               change=f"{tag if n >= same_until else 'honest'}-{n}")])  # fmt: skip
                n += 1
            log.checkpoint()
            signed = latest_signed_checkpoint(d / "audit")
            assert signed is not None and int.from_bytes(signed[37:45], "big") == size
            out.append(signed)
    return out


def store(d: Path, recs: list[Cosigned]) -> Path:
    (d / "witness").mkdir(parents=True, exist_ok=True)
    with (d / "witness" / "cosigned.jsonl").open("a") as f:
        for r in recs:
            f.write(json.dumps(r.to_json()) + "\n")
    return d


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_witness_cosigns_and_messages_round_trip(tmp_path: Path) -> None:
    cps = write_log(tmp_path / "a", "x", [5, 9])
    w = witness(W1)
    obs = w.observe(decode_checkpoint_msg(encode_checkpoint_msg(cps[0])), T0)
    assert obs.kind == "cosign" and obs.cosigned is not None
    c = decode_cosign_msg(encode_cosign_msg(obs.cosigned), NET)
    assert c == obs.cosigned and c.verify(crypto.public_bytes(LOG_KEY)).tree_size == 5
    assert w.observe(cps[0], T0).kind == "duplicate"
    assert w.observe(cps[1], T0).kind == "cosign"
    # a checkpoint of a key the witness does not trust, or a forged one, is never cosigned
    other = write_log(tmp_path / "o", "x", [3])[0]
    forged = other[:-1] + bytes([other[-1] ^ 1])
    assert w.observe(forged, T0).kind == "untrusted"
    with pytest.raises(IntegrityError):
        decode_cosign_msg(b"FNWS\x01" + b"\x00" * 10, NET)
    bad = Cosigned(NET, cps[0], crypto.public_bytes(W2), obs.cosigned.cosignature)
    with pytest.raises(IntegrityError, match="cosignature"):
        bad.verify(crypto.public_bytes(LOG_KEY))


def test_rewritten_log_is_detected_by_witnesses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = tmp_path / "node"
    cps = write_log(node, "honest", [4, 8, 12])
    w1, w2 = witness(W1), witness(W2)
    recs = [o.cosigned for w in (w1, w2) for cp in cps if (o := w.observe(cp, T0)).cosigned]
    store(tmp_path / "w1", recs[:3])
    store(tmp_path / "w2", recs[3:])
    pub = crypto.public_bytes(LOG_KEY).hex()
    code, out, _ = run(capsys, "audit", "verify", str(node), "--key", pub,
                       "--witnesses", str(tmp_path / "w1"), str(tmp_path / "w2"))  # fmt: skip
    assert code == 0, out
    assert "6 cosigned checkpoints from 2 witnesses match" in out
    # the operator rewrites history from record 6 on and re-signs everything with the node key
    shutil.rmtree(node / "audit")
    write_log(node, "rewritten", [4, 12], same_until=6)
    assert run(capsys, "audit", "verify", str(node), "--key", pub)[0] == 0  # self-consistent
    code, out, err = run(capsys, "audit", "verify", str(node), "--key", pub, "--json",
                         "--witnesses", str(tmp_path / "w1"), str(tmp_path / "w2"))  # fmt: skip
    assert code != 0
    doc = json.loads(out)["witnesses"]
    assert not doc["ok"]
    assert {f["tree_size"] for f in doc["findings"] if f["kind"] == "rewritten"} == {8, 12}
    assert "rewritten at tree size 8" in err
    # a log cut short of what witnesses saw: truncated
    shutil.rmtree(node / "audit")
    write_log(node, "honest", [4])
    code, _, err = run(capsys, "audit", "verify", str(node), "--witnesses", str(tmp_path / "w1"))
    assert code != 0 and "truncated at tree size 8" in err


def test_split_view_is_detected_and_provable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the node keeps two forks of its log and shows fork A to witness 1, fork B to witness 2
    a = write_log(tmp_path / "fork-a", "a", [3, 7])
    b = write_log(tmp_path / "fork-b", "b", [3, 7])
    w1, w2 = witness(W1), witness(W2)
    store(tmp_path / "w1", [o.cosigned for cp in a if (o := w1.observe(cp, T0)).cosigned])
    store(tmp_path / "w2", [o.cosigned for cp in b if (o := w2.observe(cp, T0)).cosigned])
    pub = crypto.public_bytes(LOG_KEY).hex()
    code, out, err = run(capsys, "audit", "verify", str(tmp_path / "fork-a"), "--key", pub,
                         "--json", "--witnesses", str(tmp_path / "w1"),
                         str(tmp_path / "w2"))  # fmt: skip
    assert code != 0 and "split-view at tree size 3" in err
    doc = json.loads(out)["witnesses"]
    assert {sv["tree_size"] for sv in doc["split_views"]} == {3, 7}
    # the same from one export file handed to an auditor
    export = tmp_path / "witnesses.jsonl"
    code, out, _ = run(capsys, "audit", "witness-export", str(tmp_path / "w1"),
                       str(tmp_path / "w2"), "--log-key", pub, "--out", str(export))  # fmt: skip
    assert code == 0 and "wrote 4 witness records" in out
    code, _, err2 = run(capsys, "audit", "verify", str(tmp_path / "fork-a"), "--key", pub,
                        "--witnesses", str(export))  # fmt: skip
    assert code != 0 and "split-view at tree size 3" in err2
    proof = SplitView.from_json(doc["split_views"][0], "test")
    assert proof.verify() == 3  # checkable with the log key alone, no log needed
    # a gossiping witness that hears both forks detects it at once and stops cosigning
    w3 = witness(W1)
    assert w3.observe(a[0], T0).kind == "cosign"
    obs = w3.observe(b[0], T0)
    assert obs.kind == "split-view" and obs.split_view is not None
    assert obs.split_view.verify() == 3
    assert w3.observe(a[1], T0).kind == "known-forked"
    # the non-conflicting pair is not a proof
    with pytest.raises(IntegrityError):
        SplitView(NET, a[0], a[0]).verify()


def test_witness_store_parsing_errors_are_typed(tmp_path: Path) -> None:
    d = tmp_path / "w" / "witness"
    d.mkdir(parents=True)
    (d / "cosigned.jsonl").write_text('{"v": 1, "network": "x", "checkpoint": "zz"}\n{}\n')
    with pytest.raises(IntegrityError, match=r"cosigned\.jsonl:1"):
        read_witness_dir(tmp_path / "w")
    with pytest.raises(IntegrityError, match="no witness records"):
        read_witness_dir(tmp_path)


@settings(max_examples=30, deadline=None)
@given(
    order=st.permutations(list(range(6))),
    fork_at=st.sampled_from([None, 0, 2, 4]),
)
def test_split_view_found_in_any_order(order: list[int], fork_at: int | None) -> None:
    """Witness.observe flags a split view iff two same-size checkpoints differ, whatever order."""
    from fraudnet.core.audit.checkpoint import Checkpoint, sign_checkpoint

    pub = crypto.public_bytes(LOG_KEY)

    def cp(size: int, fork: bool) -> bytes:
        root = bytes([size]) * 31 + (b"\x01" if fork else b"\x00")
        return sign_checkpoint(LOG_KEY, NET, Checkpoint(pub, size, T0 + size, root))

    msgs = [cp(i, False) for i in range(5)] + [cp(fork_at if fork_at is not None else 9, True)]
    w = witness(W1)
    kinds = [w.observe(msgs[i], T0 + 100).kind for i in order]
    assert ("split-view" in kinds) == (fork_at is not None)
    recs = [Cosigned(NET, m, crypto.public_bytes(W1), make_signer(W1, NET)(m)) for m in msgs]
    rep = check_against_log(pub, NET, [recs[i] for i in order], lambda n: None, 100)
    assert (len(rep.split_views) == 1) == (fork_at is not None)


def test_checkpoint_files_still_readable(tmp_path: Path) -> None:
    cps = write_log(tmp_path, "x", [2, 5])
    assert read_checkpoints(tmp_path / "audit")[-1] == cps[-1]
