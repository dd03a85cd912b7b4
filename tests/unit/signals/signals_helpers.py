"""Shared builders for the signals tests (imported by path-qualified module name)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.core import crypto
from fraudnet.core.signals import Signal, SignalPayload

NET = "testnet"
T0 = 1_700_000_000_000_000  # µs


def keys(n: int) -> dict[str, Ed25519PrivateKey]:
    return {
        f"bank-{chr(97 + i)}": Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32)
        for i in range(n)
    }


def members(ks: dict[str, Ed25519PrivateKey]) -> dict[str, bytes]:
    return {name: crypto.public_bytes(k) for name, k in ks.items()}


def signal(i: int = 0, *, now: int = T0, ttl: int = 3_600_000_000) -> Signal:
    return Signal("card", bytes([i % 256]) * 32, 900, ("velocity",), now, now + ttl, (4, 1))


def payload(
    signer: str, seq: int, *, now: int = T0, net: str = NET, n: int = 2, epoch: int = 0
) -> SignalPayload:
    return SignalPayload(net, signer, epoch, seq, now, tuple(signal(i, now=now) for i in range(n)))
