"""The strict scenario loader: every problem names file, key and line; no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudnet.errors import ConfigError
from fraudnet.replay.scenario import load_scenario, parse_scenario

GOOD = """
[scenario]
name = "x"
seed = 3

[network]
members = 4
f = 1

[data]
attacks = [{ kind = "card_testing", day = 0, count = 3 }]

[[faults]]
kind = "partition"
at_s = 10
until_s = 20
groups = [["m00", "m01"], ["m02", "m03"]]

[expect]
max_false_block_verdicts = 0
"""


def test_good_file_parses() -> None:
    sc = parse_scenario(GOOD, "g.toml")
    assert sc.network.members == 4 and sc.seed == 3
    assert sc.data.attacks[0].kind == "card_testing"
    assert sc.faults[0].groups == (("m00", "m01"), ("m02", "m03"))
    assert sc.expect.active() == {"max_false_block_verdicts": 0}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (GOOD.replace("seed = 3", "sede = 3"), "f.toml:4: scenario.sede: unknown key"),
        (
            GOOD.replace("members = 4", 'members = "4"'),
            "f.toml:7: network.members: expected an integer",
        ),
        (
            GOOD.replace("members = 4", "members = 3"),
            "network.f: f=1 needs at least 3f+1=4 members",
        ),
        (
            GOOD.replace('"card_testing"', '"card_skimming"'),
            "data.attacks[0].kind: 'card_skimming' is not one of",
        ),
        (GOOD.replace('"m03"]]', '"m09"]]'), "faults[0].groups[1]: 'm09' is not a member"),
        (GOOD.replace("until_s = 20", "until_s = 5"), "faults[0].until_s: must be after at_s"),
        (
            GOOD.replace("max_false_block_verdicts = 0", "max_false_block_verdicts = true"),
            "expected an integer, got a boolean",
        ),
        (GOOD.replace('name = "x"', ""), "scenario.name: missing"),
        (GOOD + "\n[bogus]\n", "bogus: unknown key"),
        ("[scenario\nname=", "not valid TOML"),
        (
            GOOD.replace("[expect]", "[expect]\nmin_recall = 1.5"),
            "expect.min_recall: 1.5 out of range",
        ),
    ],
)
def test_bad_files_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_scenario(text, "f.toml")
    assert needle in str(e.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="scenario file not found"):
        load_scenario(tmp_path / "nope.toml")
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read scenario file"):
        load_scenario(p)


def test_without_attackers_drops_only_attackers() -> None:
    sc = parse_scenario(
        GOOD + '\n[[faults]]\nkind = "byzantine"\nmember = "m03"\n\n[[faults]]\nkind = "sybil"\n'
    )
    assert sc.byzantine == ("m03",)
    base = sc.without_attackers()
    assert [f.kind for f in base.faults] == ["partition"]
