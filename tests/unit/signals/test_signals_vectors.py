"""The test vectors of docs/protocol.md, so the spec and the code cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.core.ids import pseudonym
from fraudnet.core.signals import Signal, SignalPayload, decode_envelope, encode_payload, seal

DOC = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text()
KEY = bytes(range(32))


def _hex_after(label: str) -> str:
    block = DOC.rsplit(label, 1)[1].split("\n\n", 1)[0].split("envelope =", 1)[0]
    return "".join(re.findall(r"[0-9a-f]{4,}", block))


def test_pseudonym_vectors_match_the_doc() -> None:
    for kind, value in [
        ("card", "4111 1111-1111 1111"),
        ("card", "card-42"),
        ("terminal", "  T-17 "),
        ("merchant", "ACME Café"),
    ]:
        assert pseudonym(KEY, kind, value).hex() in DOC


def test_envelope_vector_matches_the_doc() -> None:
    sk = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    ps = pseudonym(KEY, "card", "4111111111111111")
    sig = Signal("card", ps, 900, ("velocity",), 1699999980000000, 1700086380000000, (4, 1))
    p = SignalPayload("testnet", "bank-a", 0, 1, 1700000000000000, (sig,))
    payload_hex = encode_payload(p).hex()
    assert payload_hex == _hex_after("    payload  =")
    env = seal(sk, p)
    assert decode_envelope(env).payload.hex() == payload_hex
    doc_env = _hex_after("    envelope =").replace("payload", "")
    assert (
        env.hex()
        == doc_env[: len("9601a77369676e616c73a7746573746e6574a662616e6b2d61c462")]
        + payload_hex
        + doc_env[len("9601a77369676e616c73a7746573746e6574a662616e6b2d61c462") :]
    )
