from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from fraudnet.adapters.sources import Unreadable, read_records
from fraudnet.adapters.storage.dedup import DedupStore
from fraudnet.errors import InputError
from fraudnet.replay.generator import GeneratorConfig, generate


def test_csv_gzip_and_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "t.csv.gz"
    with gzip.open(p, "wt") as f:
        f.write("a,b\n1,2\n3\n4,5\n")
    rows = list(read_records(p))
    assert rows[0][:2] == ("line 2", {"a": "1", "b": "2"})
    assert rows[1][0] == "line 3" and isinstance(rows[1][1], Unreadable)
    assert "expected 2 columns" in rows[1][1].reason
    assert rows[2][1] == {"a": "4", "b": "5"}


def test_jsonl_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text('{"a": 1}\n\n{oops\n')
    rows = list(read_records(p))
    assert rows[0][1] == {"a": 1}
    assert rows[1][0] == "line 3" and isinstance(rows[1][1], Unreadable)


def test_unknown_format_and_corrupt_gzip(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="format"):
        list(read_records(tmp_path / "x.parquet"))
    p = tmp_path / "x.csv.gz"
    p.write_bytes(b"not gzip")
    with pytest.raises(InputError, match="unreadable"):
        list(read_records(p))


def test_dedup_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "d.sqlite"
    s = DedupStore(db)
    s.add_many([("a", "allow", 0.1, 5, 1, b"c", b"t"), ("b", "block", 0.95, 6, 2, b"c", b"t")])
    s.close()
    s = DedupStore(db)
    assert s.seen_many(["a", "x", "b"]) == {"a", "b"}
    assert s.get("b") == ("block", 0.95, 6)
    assert s.lookup_entity("a") == (1, b"c", b"t")
    assert s.prune(before_us=6) == 1 and s.count() == 1


def test_generator_is_deterministic_and_has_frauds() -> None:
    cfg = GeneratorConfig(customers=200, terminals=400, days=20, seed=7)
    a = list(generate(cfg, limit=3000))
    b = list(generate(cfg, limit=3000))
    assert a == b and len(a) == 3000
    assert len({r["tx_id"] for r in a}) == 3000
    assert sum(r["label"] for r in a) > 0
    assert [r["timestamp"] for r in a] == sorted(r["timestamp"] for r in a)


def test_cross_member_attacks_are_labelled_and_cross_members() -> None:
    from collections import Counter

    from fraudnet.replay.generator import Attack

    cfg = GeneratorConfig(
        customers=300, terminals=600, days=5, members=4, seed=2,
        attacks=(
            Attack("card_testing", day=1, count=10, members=3, duration_s=1800),
            Attack("compromised_card", day=2, count=5, members=2),
            Attack("compromised_terminal", day=1, count=2),
            Attack("account_takeover", day=3, count=3, duration_s=86400),
        ),
    )  # fmt: skip
    recs = list(generate(cfg))
    assert recs == list(generate(cfg))
    by = Counter(r["scenario"] for r in recs)
    assert by[4] == 10 * 5 and by[5] == 5 * 4 and by[2] > 0 and by[6] > 0
    assert all(r["label"] == 1 for r in recs if r["scenario"] in (2, 4, 5, 6))
    testing = [r for r in recs if r["scenario"] == 4]
    for card in {r["card"] for r in testing}:
        rows = [r for r in testing if r["card"] == card]
        assert len({r["member"] for r in rows}) == 3  # one card, three acquirers
        assert sum(float(r["amount"]) < 3.01 for r in rows) == 4  # tiny probes, then a cash-out
    ts = [r["timestamp"] for r in recs]
    assert ts == sorted(ts)
    assert {r["member"] for r in recs} == {0, 1, 2, 3}
