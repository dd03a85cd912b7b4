"""A member floods a node with valid-looking invalid envelopes at 100x its quota.

Real py-libp2p hosts on 127.0.0.x (victim and honest member in this process,
the flooder in its own; the scenario is :func:`fraudnet.bench.flood.run`, the
same code as ``fraudnet bench flood``). Claims (docs/threat-model.md):

1. each kind -- bad signature, wrong network, replay, stale, future-dated -- is
   rejected with its own counter, and nothing of the flood is accepted;
2. REJECTs (and the author's own replayed/stale/future envelopes) penalise the
   flooder until it is graylisted through GossipSub peer scoring;
3. from then on its messages are dropped before validation, and at the next
   heartbeat it is disconnected and banned: the number of validations is bounded
   (9 to graylist), not proportional to the flood (the drop gate itself is
   unit-tested in tests/unit/p2p/test_p2p_flood_scoring.py);
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


def test_flooder_is_graylisted_banned_and_validations_stay_bounded(flood: dict) -> None:
    offered = 100 * QUOTA * DURATION
    assert flood["flood_sent"] >= 0.9 * offered, flood  # 100x the quota left the flooder
    assert flood["time_to_graylist_s"] is not None
    assert flood["flooder_lowest_score"] < GRAYLIST_THRESHOLD
    assert flood["bans"] == 1  # disconnected once graylisted ...
    assert flood["reconnects_refused"] >= 1  # ... and its redials are refused
    # validations are bounded by the scoring (9 REJECTs graylist), not by the flood size;
    # whatever arrived between graylisting and the ban was dropped before validation
    assert flood["flood_validations"] <= 12, flood
    assert (
        flood["flood_reaching_victim"]
        == flood["flood_validations"] + flood["dropped_before_validation"]
    )
    assert flood["flood_reaching_victim"] < 0.5 * offered


def test_honest_signals_still_arrive_and_the_honest_member_is_not_penalised(
    flood: dict,
) -> None:
    assert flood["honest_signals"] >= DURATION * 5 * 0.8
    assert flood["honest_delivered"] == flood["honest_signals"], flood
    assert flood["honest_score"] >= 0.0
