"""Helpers shared by the policy tests (bundle text builders and input batches)."""

from __future__ import annotations

import numpy as np

from fraudnet.core.policy import PolicyInput

HEADER = '[policy]\nname = "t"\nversion = 1\n'


def rule(rid: str, action: str, when: str, version: int = 1, desc: str | None = None) -> str:
    return (
        f'\n[[rules]]\nid = "{rid}"\nversion = {version}\n'
        f'description = "{desc or rid + " fired"}"\naction = "{action}"\n'
        f"when = '''{when}'''\n"
    )


def velocity(vid: str, entity: str, measure: str, window: str, resolution: str = "") -> str:
    res = f'resolution = "{resolution}"\n' if resolution else ""
    return (
        f'\n[[velocity]]\nid = "{vid}"\nentity = "{entity}"\nmeasure = "{measure}"\n'
        f'window = "{window}"\n{res}'
    )


def segment(sid: str, when: str, review_at: float, block_at: float) -> str:
    return (
        f"\n[[segments]]\nid = \"{sid}\"\nwhen = '''{when}'''\n"
        f"review_at = {review_at}\nblock_at = {block_at}\n"
    )


def card_list(lid: str, action: str, refs: list[tuple[str, str]], kind: str = "card") -> str:
    out = f'\n[[lists]]\nid = "{lid}"\nkind = "{kind}"\naction = "{action}"\n'
    for ident, expires in refs:
        key = "value" if kind in ("bin", "country") else "ref"
        out += f'\n[[lists.entries]]\n{key} = "{ident}"\n'
        if expires:
            out += f"expires = {expires}\n"
    return out


def ref_of(key: int) -> str:
    """A 16-byte ref whose key64 is ``key``."""
    return key.to_bytes(8, "little").hex() + "00" * 8


def batch(n: int = 6, *, seed: int = 0, t0: float = 1.7e9, **cols: object) -> PolicyInput:
    rng = np.random.default_rng(seed)
    base: dict[str, object] = {
        "ts_s": t0 + np.arange(n) * 10.0,
        "amount": np.full(n, 10.0),
        "card_key": np.arange(n).astype(np.uint64),
        "terminal_key": np.zeros(n, dtype=np.uint64),
        "score": np.zeros(n),
    }
    base.update(cols)
    _ = rng
    return PolicyInput.from_arrays(**base)  # type: ignore[arg-type]
