"""Bundle loading: validation with file:line(:column), pseudonyms only, hash, limits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from policy_helpers import HEADER, card_list, ref_of, rule, segment, velocity

from fraudnet.core.policy import load_bundle
from fraudnet.errors import PolicyError

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "policies"


def err(text: str) -> str:
    with pytest.raises(PolicyError) as ei:
        load_bundle(text.encode(), "b.toml")
    return str(ei.value)


def test_examples_load() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("*.toml"))
    assert {"fdh-amount-velocity.toml", "generated-segments.toml"} <= set(names)
    for p in EXAMPLES.glob("*.toml"):
        b = load_bundle(p.read_bytes(), str(p))
        assert b.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()


def test_full_bundle_compiles() -> None:
    text = (
        HEADER
        + "\n[thresholds]\nreview_at = 0.4\nblock_at = 0.8\n"
        + velocity("c1h", "card", "count", "1h", "5m")
        + segment("ecom", 'channel == "ecom"', 0.3, 0.7)
        + rule("big", "block", "amount > 500 and velocity.c1h > 2", version=3, desc="Big")
        + card_list("vip", "allow", [(ref_of(7), "2030-01-01T00:00:00Z")])
        + card_list("bad_bins", "deny", [("411111", "")], kind="bin")
    )
    b = load_bundle(text.encode(), "b.toml")
    assert (b.review_at, b.block_at) == (0.4, 0.8)
    assert b.rules[0].reason == "rule:big@v3: Big"
    assert b.velocities["c1h"].key.buckets == 12
    assert b.lists[0].entries[0].key == 7
    assert b.lists[0].entries[0].expires_s == 1893456000.0
    assert b.policy_id.startswith("t@1#")
    assert not b.needs_features()


def test_unknown_field_names_file_and_line() -> None:
    text = HEADER + rule("a", "block", "amount > 1").replace("action =", "acton =")
    msg = err(text)
    assert msg.startswith("b.toml:9: rules[0]: unknown field 'acton'")


def test_type_error_line() -> None:
    text = HEADER + rule("a", "block", "amount > 1").replace("version = 1", 'version = "1"', 1)
    text = text.replace('[policy]\nname = "t"\nversion = "1"', '[policy]\nname = "t"\nversion = 1')
    msg = err(text)
    assert msg == "b.toml:7: rules[0].version: expected int, found str"


def test_condition_error_has_line_and_column() -> None:
    text = HEADER + rule("a", "block", "amount > 1") + rule("b", "review", "amount >> 2")
    msg = err(text)
    # second rule's `when` is line 17, the second ">" is at column 19: when = '''amount >> 2'''
    assert msg.startswith("b.toml:17:19: rules[1].when:")
    assert "unexpected '>'" in msg


def test_missing_and_duplicate_and_bad_values() -> None:
    assert "missing required field 'policy'" in err("[thresholds]\nreview_at = 0.1\n")
    assert "declared twice" in err(HEADER + rule("a", "block", "true") + rule("a", "block", "true"))
    assert "action must be one of" in err(HEADER + rule("a", "deny", "true"))
    assert "need 0 <= review_at" in err(HEADER + "[thresholds]\nreview_at = 0.9\nblock_at = 0.1\n")
    assert "resolution must divide" in err(HEADER + velocity("v", "card", "count", "1h", "7m"))
    assert "entity must be one of" in err(HEADER + velocity("v", "ip", "count", "1h"))
    assert "expected a duration" in err(HEADER + velocity("v", "card", "count", "hour"))
    assert "kind must be one of" in err(HEADER + card_list("l", "allow", [], kind="ip"))


def test_syntax_error_is_reported_with_location() -> None:
    msg = err("[policy\nname = 1\n")
    assert msg.startswith("b.toml: TOML syntax error:")
    assert "line 1" in msg


def test_raw_identifiers_are_refused() -> None:
    pan = "4111111111111111"
    msg = err(HEADER + f"# card {pan}\n")
    assert msg.startswith("b.toml:4: looks like a card number")
    assert pan not in msg
    text = HEADER + '\n[[lists]]\nid = "l"\nkind = "card"\naction = "deny"\n'
    text += '\n[[lists.entries]]\nvalue = "card-42"\n'
    assert "never a raw value" in err(text)
    text2 = HEADER + '\n[[lists]]\nid = "l"\nkind = "card"\naction = "deny"\n'
    text2 += '\n[[lists.entries]]\nref = "XYZ"\n'
    assert "32 lowercase hex" in err(text2)


def test_hex_refs_are_not_mistaken_for_pans() -> None:
    ref = "4111111111111111" + "ab" * 8  # a digit run inside a 32-hex token
    load_bundle((HEADER + card_list("l", "deny", [(ref, "")])).encode(), "b.toml")


def test_not_utf8_and_too_big() -> None:
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_bundle(b"\xff\xfe", "b.toml")
    with pytest.raises(PolicyError, match="larger than"):
        load_bundle(b"#" * (17 << 20), "b.toml")


def test_nested_entry_line() -> None:
    text = HEADER + card_list("l", "deny", [(ref_of(1), ""), (ref_of(2), "")])
    text = text.replace(f'ref = "{ref_of(2)}"', f'ref = "{ref_of(2)}"\ncolour = "red"')
    assert err(text).startswith("b.toml:15: lists[0].entries[1]: unknown field 'colour'")
