"""A member floods a node with valid-looking invalid envelopes at 100x its quota.

Real py-libp2p hosts on 127.0.0.x (victim and honest member in this process,
the flooder in its own; the scenario is :func:`fraudnet.bench.flood.run`, the
same code as ``fraudnet bench flood``). Claims (docs/threat-model.md):

1. each kind -- bad signature, wrong network, replay, stale, future-dated -- is
   rejected with its own counter, and nothing of the flood is accepted;
2. REJECTs (and the author's own replayed/stale/future envelopes) penalise the
   flooder until it is graylisted through GossipSub peer scoring;
3. from then on its messages are dropped before validation: the number of
   validations is bounded (9 to graylist, then about one per 10 s of decay),
   not proportional to the flood;
4. every honest signal published during the flood still arrives, and the
   honest member is not penalised.
"""

from __future__ import annotations

import os

import pytest

from fraudnet.adapters.p2p.scoring import GRAYLIST_THRESHOLD
from fraudnet.bench.flood import run

pytestmark = pytest.mark.integration

DURATION = 6.0
QUOTA = 1.0


@pytest.fixture(scope="module")
def flood() -> dict[str, object]:
    port = 45000 + (os.getpid() % 200) * 10
    return run(duration=DURATION, multiple=100.0, quota=QUOTA, burst=2.0, flush_ms=1000,
               heartbeat_ms=300, honest_per_s=5.0, base_port=port)  # fmt: skip


def test_every_kind_of_hostile_envelope_is_rejected_with_its_own_counter(flood: dict) -> None:
    assert flood["rejected"]["bad_signature"] >= 1  # type: ignore[index]
    assert flood["rejected"]["wrong_network"] >= 1  # type: ignore[index]
    assert flood["ignored"]["replay"] >= 1  # type: ignore[index]
    assert flood["ignored"]["expired"] >= 1  # type: ignore[index]
    assert flood["ignored"]["clock_skew"] >= 1  # type: ignore[index]
    # the flooder authored its replayed/stale/future envelopes: those penalise it too
    assert flood["author_penalised"] >= 3
    assert flood["accepted_from_flooder"] == 0


def test_flooder_is_graylisted_and_then_dropped_before_validation(flood: dict) -> None:
    assert flood["time_to_graylist_s"] is not None
    assert flood["flooder_score"] < GRAYLIST_THRESHOLD
    reached = flood["flood_reaching_victim"]
    assert reached >= 100, flood  # a flood did arrive (offered at 100x the quota)
    # validations are bounded by the scoring, not by the flood size
    assert flood["flood_validations"] <= 9 + DURATION / 5 + 3, flood
    assert flood["dropped_before_validation"] >= 0.9 * reached, flood


def test_honest_signals_still_arrive_and_the_honest_member_is_not_penalised(
    flood: dict,
) -> None:
    assert flood["honest_signals"] >= DURATION * 5 * 0.8
    assert flood["honest_delivered"] == flood["honest_signals"], flood
    assert flood["honest_score"] >= 0.0
