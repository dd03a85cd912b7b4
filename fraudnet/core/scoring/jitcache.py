"""Numba's on-disk cache, keyed on the whole call tree of a kernel.

Numba's cache (``cache=True``) keys a compiled function on its own
bytecode and invalidates it when *its own source file* changes. A kernel
that calls jitted functions from other modules (``score_fused`` calls the
feature kernel and the tree kernel) has those callees compiled into it, so
after an upgrade that changes only a callee's module the cache silently
serves the old callee's machine code. This happened here: a stale
``score_fused`` kept a previous tree layout and ran 1.7x slower (14.6 vs
8.6 µs per transaction) -- and a semantic change in a callee would have
been served stale just the same.

:func:`deep_cache` replaces a dispatcher's cache with one whose index key
also holds a digest of every jitted function reachable from it (their
bytecode and constants, recursively) and of the plain global values they
read (numbers, strings, tuples, arrays: numba freezes globals at compile
time). Any change below the kernel then misses the cache and recompiles.
"""

from __future__ import annotations

import hashlib
import types
from typing import Any, TypeVar

import numpy as np
from numba.core.caching import FunctionCache
from numba.core.dispatcher import Dispatcher

__all__ = ["deep_cache", "deep_digest"]

T = TypeVar("T")
_PLAIN = (int, float, bool, str, bytes, complex, type(None))


def _callee(v: Any) -> types.FunctionType | None:
    if isinstance(v, Dispatcher):
        f = v.py_func
        return f if isinstance(f, types.FunctionType) else None
    return None


def _code_bytes(code: types.CodeType, h: Any) -> list[str]:
    """Feed ``code`` (and nested code objects) into ``h``; return the names it reads."""
    h.update(code.co_code)
    names = list(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names += _code_bytes(c, h)
        else:
            h.update(repr(c).encode())
    return names


def _value(v: Any, h: Any) -> None:
    if isinstance(v, np.ndarray) and v.dtype != object:
        h.update(str(v.dtype).encode() + str(v.shape).encode() + v.tobytes())
    elif isinstance(v, _PLAIN) or (isinstance(v, tuple) and all(isinstance(e, _PLAIN) for e in v)):
        h.update(repr(v).encode())


def deep_digest(func: types.FunctionType) -> str:
    """SHA-256 over ``func`` and every jitted function it reaches (see module docstring)."""
    h = hashlib.sha256()
    seen: set[int] = set()
    todo = [func]
    while todo:
        f = todo.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        h.update(f"{f.__module__}.{f.__qualname__}".encode())
        names = _code_bytes(f.__code__, h)
        g = f.__globals__
        modules = [v for v in g.values() if isinstance(v, types.ModuleType)]
        for name in names:
            if name in g:
                v = g[name]
                cal = _callee(v)
                if cal is not None:
                    todo.append(cal)
                else:
                    h.update(name.encode())
                    _value(v, h)
            # attribute access on an imported module (``kernels.fold_many``)
            for m in modules:
                cal = _callee(getattr(m, name, None))
                if cal is not None:
                    todo.append(cal)
    return h.hexdigest()


class _DeepCache(FunctionCache):
    """A :class:`FunctionCache` whose index key includes :func:`deep_digest`."""

    def __init__(self, py_func: types.FunctionType) -> None:
        super().__init__(py_func)  # type: ignore[no-untyped-call]  # numba is untyped
        self._deep: str | None = None

    def _index_key(self, sig: Any, codegen: Any) -> tuple[Any, ...]:
        if self._deep is None:
            self._deep = deep_digest(self._py_func)
        key: tuple[Any, ...] = super()._index_key(sig, codegen)  # type: ignore[no-untyped-call]
        return (*key, self._deep)


def deep_cache(dispatcher: T) -> T:
    """Key ``dispatcher``'s on-disk cache on its whole call tree (no-op without the JIT)."""
    d: Any = dispatcher
    if isinstance(dispatcher, Dispatcher) and type(getattr(d, "_cache", None)) is FunctionCache:
        py = d.py_func
        if isinstance(py, types.FunctionType):
            setattr(d, "_cache", _DeepCache(py))  # noqa: B010  # a private numba attribute
    return dispatcher
