"""Run a scenario: pick modes, run them (simulated or real processes), report.

:func:`run_scenario` is what ``fraudnet scenario run`` calls. A *backend*
turns ``(scenario, mode, data, seed)`` into a :class:`~.simrun.RunResult`;
the report is computed from that alone, so both backends share metrics,
checks, ``report.json`` and plots:

* :class:`SimBackend` -- the deterministic simulation (``--sim``).
* :class:`ProcessBackend` -- real ``fraudnet node run`` processes on
  127.0.0.x (:mod:`.processes`): nodes from :mod:`fraudnet.testing`'s
  network helpers, fed through ``POST /v1/decide``; decisions, block
  verdicts (verdict stores) and audit-log verification collected. ``crash``
  and (network mode) ``partition`` faults are applied to the processes; the
  other faults are simulation-only: they are listed under ``faults_ignored``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

from fraudnet.errors import ConfigError, UnavailableError

from .report import check_expectations, gap_closed, mode_report, write_plots, write_report
from .scenario import MODES, Scenario
from .simrun import RunResult, run_mode
from .sources import Dataset, load_data
from .trained import ModeModels, fit_mode_models

__all__ = ["Backend", "ProcessBackend", "SimBackend", "run_scenario"]


class Backend(Protocol):
    name: str

    def run(self, sc: Scenario, mode: str, data: Dataset, seed: int) -> RunResult: ...


class SimBackend:
    name = "simulation"

    def __init__(self, models: dict[str, ModeModels] | None = None) -> None:
        #: a trained scenario's models per mode (see :mod:`.trained`)
        self.models = models or {}

    def run(self, sc: Scenario, mode: str, data: Dataset, seed: int) -> RunResult:
        return run_mode(sc, mode, data, seed, self.models.get(mode))


class ProcessBackend:
    """Real node processes on 127.0.0.x (:mod:`.processes`; faults are simulation-only)."""

    name = "processes"

    def __init__(self, work_dir: Path | None = None) -> None:
        self.work_dir = work_dir

    def run(self, sc: Scenario, mode: str, data: Dataset, seed: int) -> RunResult:
        import requests

        from .processes import run_processes

        try:
            return run_processes(sc, mode, data, seed, self.work_dir)
        except (AssertionError, OSError, requests.RequestException) as e:
            # fraudnet.testing's bounded waits raise AssertionError on a timeout
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UnavailableError(f"process mode ({mode}): {msg}") from None


def run_scenario(
    sc: Scenario,
    *,
    modes: tuple[str, ...] | None = None,
    sim: bool = True,
    seed: int | None = None,
    data_path: str | None = None,
    out_dir: Path | None = None,
    plots: bool = True,
    model_cache: Path | None = None,
) -> dict[str, Any]:
    """Run ``modes`` of ``sc`` and return the report (written to ``out_dir`` if given).

    A ``trained`` scenario fits its models per mode first (:mod:`.trained`),
    cached under ``model_cache`` when given (else fitted on every run).
    """
    modes = modes or sc.modes
    for m in modes:
        if m not in MODES:
            raise ConfigError(f"mode {m!r}: expected one of {', '.join(MODES)}")
    trained = sc.scoring.scorer == "trained"
    if trained and not sim:
        raise ConfigError(
            f'{sc.path}: scorer = "trained" runs in simulation mode only (--sim); '
            'real nodes take a model file (scorer = "model")'
        )
    seed = sc.seed if seed is None else seed
    if data_path is None and sc.data.path and not Path(sc.data.path).is_absolute():
        data_path = str(Path(sc.path).parent / sc.data.path)  # relative to the scenario file
    data = load_data(sc.data, sc.network.members, seed, data_path)
    models: dict[str, ModeModels] = {}
    fit_s: dict[str, float] = {}
    for m in modes if trained else ():
        t = time.perf_counter()
        models[m] = fit_mode_models(sc, m, data, model_cache)
        fit_s[m] = round(time.perf_counter() - t, 3)
    backend: Backend = SimBackend(models) if sim else ProcessBackend(out_dir)
    runs: dict[str, RunResult] = {}
    reports: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    for m in modes:
        t = time.perf_counter()
        runs[m] = backend.run(sc, m, data, seed)
        timings[m] = round(time.perf_counter() - t, 3)
        reports[m] = mode_report(runs[m], data, sc)
    baseline = None
    if sc.expect.max_honest_drop is not None and "network" in modes:
        base_sc = sc.without_attackers()
        base_run = backend.run(base_sc, "network", data, seed)
        baseline = mode_report(base_run, data, base_sc)
    checks = check_expectations(sc, reports, baseline)
    ap = {k: v.get("average_precision") for k, v in reports.items()}
    report: dict[str, Any] = {
        "scenario": sc.name,
        "file": sc.path,
        "backend": backend.name,
        "seed": seed,
        "members": sc.network.members,
        "f": sc.network.f,
        "transactions": len(data.records),
        "frauds": sum(r.label for r in data.records),
        "modes": reports,
        "wall_seconds": timings,
        "expectations": checks,
        "gap_closed": gap_closed(ap),
    }
    if trained:
        report["training"] = {
            m: {**mm.info, "fit_seconds": fit_s[m], "models": sorted(
                {d.meta.get("candidate", "?") for d in mm.deciders.values()})}
            for m, mm in models.items()
        }  # fmt: skip
    if not sim:
        # applied on real processes: crash (any mode), partition (network mode)
        report["faults_ignored"] = [f.kind for f in sc.faults
                                    if f.kind not in ("crash", "partition")]  # fmt: skip
        for r in reports.values():  # not measured on real processes (see processes.py)
            for k in ("verdict_delay_p50_s", "verdict_delay_p99_s", "propagation_p50_ms",
                      "propagation_p99_ms", "attestation_propagation_p99_ms"):  # fmt: skip
                r[k] = None
            r["latency_is_virtual"] = False
    if baseline is not None:
        report["baseline_no_attacker"] = {
            k: baseline[k] for k in ("honest", "false_block_verdicts", "liveness")
        }
    if out_dir is not None:
        write_report(out_dir, report)
        if plots:
            report["plots"] = [str(p) for p in write_plots(out_dir, runs, data)]
            write_report(out_dir, report)
    return report
