"""The layering rule of docs/architecture.md, enforced on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fraudnet"

FORBIDDEN_IN_CORE = {
    "asyncio", "trio", "faust", "mode", "libp2p", "socket", "threading", "aiokafka",
    "confluent_kafka", "aiohttp", "subprocess", "multiprocessing", "time", "random",
    "os", "pathlib", "io", "shutil", "tempfile", "signal", "select", "selectors",
    "sqlite3", "click", "rich", "prometheus_client", "logging",
}  # fmt: skip
FORBIDDEN_FRAUDNET_IN_CORE = (
    "fraudnet.adapters",
    "fraudnet.cli",
    "fraudnet.replay",
    "fraudnet.config",
)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


CORE_FILES = sorted((PKG / "core").rglob("*.py"))


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_core_is_sans_io(path: Path) -> None:
    bad = []
    for lineno, mod in _imports(path):
        top = mod.split(".")[0]
        if top in FORBIDDEN_IN_CORE or mod.startswith(FORBIDDEN_FRAUDNET_IN_CORE):
            bad.append(f"{path.relative_to(PKG)}:{lineno} imports {mod}")
    assert not bad, "\n".join(bad)


def test_errors_imports_nothing_from_fraudnet() -> None:
    mods = [m for _, m in _imports(PKG / "errors.py")]
    assert not [m for m in mods if m.startswith("fraudnet")]


@pytest.mark.parametrize(
    "path", sorted((PKG / "adapters").rglob("*.py")), ids=lambda p: str(p.relative_to(PKG))
)
def test_adapters_do_not_import_cli(path: Path) -> None:
    bad = [m for _, m in _imports(path) if m.startswith("fraudnet.cli")]
    assert not bad


def test_numba_only_in_features_and_scoring() -> None:
    allowed = {"features", "scoring"}
    for path in (PKG / "core").rglob("*.py"):
        for _, mod in _imports(path):
            if mod.split(".")[0] == "numba":
                assert path.parent.name in allowed, f"{path} imports numba"
