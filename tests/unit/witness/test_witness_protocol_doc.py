"""The worked examples in docs/protocol.md section 6 are what the code produces."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.core import crypto
from fraudnet.core.audit.checkpoint import Checkpoint, cosign, sign_checkpoint
from fraudnet.core.audit.witness import encode_checkpoint_msg
from fraudnet.core.consensus import Attestation, Evidence, sign_attestation

DOC = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text()
FLAT = DOC.replace("\n", "").replace(" ", "")


def test_attestation_example() -> None:
    k = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    att = Attestation("testnet", "bank-a", "card", b"\xab" * 32, 0, 2_900_000, 1, "risk", 9,
                      Evidence(1, 1, ("amount_high",)), 1_740_000_000_000_000)  # fmt: skip
    sa = sign_attestation(att, k)
    assert len(sa.to_wire()) == 191
    assert crypto.public_bytes(k).hex() in DOC
    assert sa.sig.hex() in FLAT


def test_checkpoint_and_cosign_examples() -> None:
    k = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    w = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
    cp = Checkpoint(crypto.public_bytes(k), 42, 1_740_000_000_000_000, b"\x5a" * 32)
    signed = sign_checkpoint(k, "testnet", cp)
    msg = encode_checkpoint_msg(signed)
    assert len(msg) == 154 and msg[:5].hex() == "464e574301"
    assert signed[-64:].hex() in FLAT
    assert cosign(w, "testnet", signed).hex() in FLAT
