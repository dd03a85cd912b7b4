"""Every byte the nodes send is captured; no card number or terminal id may appear in it.

Two capture points, both wrapping py-libp2p classes for the duration of the test:
the plaintext handed to Noise (before encryption: handshake payloads, muxer frames,
GossipSub RPCs) and the raw TCP bytes written to the socket.
"""

from __future__ import annotations

import time

import pytest
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.security.noise.io import BaseNoiseMsgReadWriter
from p2p_cluster import RING, make_cluster, start_all, stop_all, wait_for

from fraudnet.core.ids import is_luhn_valid
from fraudnet.core.signals import SignalPolicy

pytestmark = pytest.mark.integration


def luhn_cards(n: int) -> list[str]:
    out, base = [], 4_539_148_803_436_460
    while len(out) < n:
        base += 7919
        body = str(base)[:15]
        for d in "0123456789":
            if is_luhn_valid(body + d):
                out.append(body + d)
                break
    return out


def test_no_card_number_or_terminal_id_on_the_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    plain: list[bytes] = []
    wire: list[bytes] = []
    orig_noise, orig_raw = BaseNoiseMsgReadWriter.write_msg, RawConnection.write

    async def noise_write(self, msg: bytes, prefix_encoded: bool = False) -> None:  # type: ignore[no-untyped-def]
        plain.append(bytes(msg))
        await orig_noise(self, msg, prefix_encoded)

    async def raw_write(self, data: bytes) -> None:  # type: ignore[no-untyped-def]
        wire.append(bytes(data))
        await orig_raw(self, data)

    monkeypatch.setattr(BaseNoiseMsgReadWriter, "write_msg", noise_write)
    monkeypatch.setattr(RawConnection, "write", raw_write)

    nodes, _ = make_cluster(["bank-a", "bank-b", "bank-c"], key_seed=100)
    start_all(nodes, 2)
    try:
        cards = luhn_cards(40)
        terminals = [f"TERM{7000 + i:05d}" for i in range(40)]
        assert all(is_luhn_valid(c) and len(c) == 16 for c in cards)
        policy = SignalPolicy(threshold=0.5, burst=100)
        now = int(time.time() * 1e6)
        sent: list[bytes] = []
        a = nodes["bank-a"]
        for card, term in zip(cards, terminals, strict=True):
            policy.note_transactions(1)
            for kind, value in (("card", card), ("terminal", term)):
                _, ps = RING.pseudonym(kind, value, now)
                s = policy.offer(kind, ps, 0.97, now, reasons=("velocity",), n_tx=3)
                assert s is not None
                sent.append(ps)
                a.svc.publish_nowait([s])
        for other in (nodes["bank-b"], nodes["bank-c"]):
            wait_for(
                lambda other=other: (
                    len({s.pseudonym for p in other.received() for s in p.signals}) >= len(sent)
                ),
                what="all signals delivered",
            )
    finally:
        stop_all(nodes)
    blob_plain, blob_wire = b"".join(plain), b"".join(wire)
    # the capture really saw the signal traffic (pseudonyms are in the plaintext)
    assert all(ps in blob_plain for ps in sent)
    for blob in (blob_plain, blob_wire):
        for card in cards:
            n = int(card)
            for needle in (
                card.encode(),
                n.to_bytes(8, "big"),
                n.to_bytes(8, "little"),
                card[-10:].encode(),
            ):
                assert needle not in blob
        for term in terminals:
            assert term.encode() not in blob and term.encode("utf-16-le") not in blob
