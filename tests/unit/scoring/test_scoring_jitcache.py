"""The fused kernel's disk cache is keyed on its whole call tree (callees in other modules)."""

from __future__ import annotations

import types

import numba
import pytest

from fraudnet.core.scoring import fused
from fraudnet.core.scoring.jitcache import _DeepCache, deep_cache, deep_digest

pytestmark = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="no dispatchers without the JIT")


def _kernel(dep_body: str, limit: int = 3) -> types.FunctionType:
    dep = types.ModuleType("fake_dep")
    exec(f"import numba\n@numba.njit\ndef dep(a):\n    return {dep_body}\n", dep.__dict__)
    top = types.ModuleType("fake_top")
    top.__dict__.update(dep_mod=dep, dep=dep.dep, LIMIT=limit)
    src = "import numba\n@numba.njit\ndef top(a):\n    return dep_mod.dep(a) + dep(a) + LIMIT\n"
    exec(src, top.__dict__)
    return top.top.py_func


def test_digest_follows_callees_in_other_modules_and_frozen_globals() -> None:
    base = deep_digest(_kernel("a + 1"))
    assert deep_digest(_kernel("a + 1")) == base  # deterministic
    assert deep_digest(_kernel("a * 2")) != base  # a callee in another module changed
    assert deep_digest(_kernel("a + 1", limit=4)) != base  # a frozen global changed


def test_fused_kernel_uses_the_deep_cache() -> None:
    assert isinstance(fused.score_fused._cache, _DeepCache)
    digest = deep_digest(fused.score_fused.py_func)
    assert len(digest) == 64
    key = fused.score_fused._cache._index_key((), _Codegen())
    assert key[-1] == digest


def test_deep_cache_leaves_plain_functions_alone() -> None:
    def f() -> int:
        return 1

    assert deep_cache(f) is f


class _Codegen:
    def magic_tuple(self) -> tuple[str, ...]:
        return ("test",)
