"""Sweeps and replications as library calls: every point of a scenario's [sweep] (`run_sweep`), or
the scenario on seeds seed, seed+1, ... (`run_replications`), run in the sim one after another
(`serial`), over a process pool on this machine (`local`) or on a Ray cluster (`ray`), each point's
results folder written whole or not at all, and the points' summaries merged in grid (seed) order,
so the tables are the same whatever ran them.

A point is named to a worker by plain values (the scenario's file, the command line's overrides, the
point's index in the grid, its folder), and the worker rebuilds it: nothing but a point's tables
comes back. With Ray, a worker on another machine needs the repository at the same path, and writes
the point's folder on its own disk unless `out` is on a shared file system.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import pandas as pd

from testbed.errors import TestbedError

EXECUTORS = ("serial", "local", "ray")


class PointFailed(TestbedError):
    """A sweep point that raised: its index, its assignment and the one-line reason."""


@dataclass(frozen=True)
class PointJob:
    """What a worker needs to run one point: plain values only."""

    scenario: str  # a scenario name or a path to its TOML file
    overrides: dict[str, Any]  # dotted keys the command line set (--seed, --queries)
    index: int
    folder: str  # the point's results folder (written whole: built as <folder>.partial, then renamed)
    plots: bool = False  # the point's own figures (the sweep's table and plot are always made)
    seed: int | None = None  # a replication: the scenario (no sweep) on this seed


@dataclass(frozen=True)
class PointOutcome:
    """One point's tables, as the serial loop would have had them in memory."""

    index: int
    assignment: dict[str, Any]
    summary: pd.DataFrame
    crop: pd.DataFrame
    label: str
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    comparison: pd.DataFrame | None = None  # the paper comparison, for a scenario that asks for one


@dataclass(frozen=True)
class SweepResult:
    """Every point's outcome in grid order, and the merged tables."""

    points: tuple[PointOutcome, ...]
    keys: tuple[str, ...]
    table: pd.DataFrame = field(repr=False)
    crop: pd.DataFrame = field(repr=False)


_LOADED: dict[tuple[str, str], Any] = {}
"""The sweep scenarios this process has loaded, by (scenario, overrides): a worker validates a sweep once,
not once per point (a 1,000-point sweep validates its 1,000 points on loading)."""


def sweep_scenario(scenario: str, overrides: dict[str, Any], loaded: Any = None) -> Any:
    """`scenario` with `overrides` applied (the sweep kept), loaded once per process; `loaded`: the
    caller's own copy, remembered (a pool forked next inherits it)."""
    import json

    key = (scenario, json.dumps(overrides, sort_keys=True, default=str))
    if loaded is not None:
        _LOADED[key] = loaded
    if key not in _LOADED:
        from testbed.scenario import load_scenario, with_overrides

        sc = load_scenario(scenario)
        _LOADED[key] = replace(with_overrides(sc, overrides), sweep=sc.sweep) if overrides else sc
    return _LOADED[key]


def point_scenario(scenario: str, overrides: dict[str, Any], index: int) -> tuple[dict[str, Any], Any]:
    """(assignment, scenario) of point `index` of `scenario` with `overrides` applied."""
    return sweep_scenario(scenario, overrides).point(index)


def run_point(job: PointJob) -> PointOutcome:
    """Run one point and write its folder (`<folder>.partial` first, renamed when whole; removed if the
    point fails, which raises PointFailed naming it)."""
    assignment: dict[str, Any] = {}
    final = Path(job.folder)
    partial = final.with_name(final.name + ".partial")
    try:
        from testbed.sim.engine import run_scenario
        from testbed.sim.fit import comparison as paper_comparison
        from testbed import report
        from testbed.profiles import load_profile
        from testbed.results import label, write_run
        from testbed.scenario import resolved_toml

        if job.seed is None:
            assignment, point = point_scenario(job.scenario, job.overrides, job.index)
        else:
            assignment = {"seed": job.seed}
            point = replace(sweep_scenario(job.scenario, job.overrides), seed=job.seed, replications=0)
        profile = load_profile(point.profile_path())
        run = run_scenario(point, None, profile)
        summary = report.summarize(run.queries, point.policies.baselines)
        comparison = paper_comparison(point, run.queries, profile) if point.paper_comparison else None
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        write_run(partial, point.name, point.description, resolved_toml(point), run, summary, comparison, point.seed,
                  plots=job.plots)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        return PointOutcome(job.index, assignment, summary, report.crop_summary(run.queries), label(run),
                            tuple(report.saturation_notes(run.queries)), tuple(run.notes), comparison)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        what = f"sweep point {job.index}" if job.seed is None else "replication"
        raise PointFailed(f"{what} ({assignment or 'its assignment could not be read'}): "
                          f"{type(exc).__name__}: {reason}") from None


@contextlib.contextmanager
def local_pool(workers: int | None = None) -> Iterator[Executor]:
    """A pool of `workers` processes (default one per core) forked from this one now, so they start
    with what it has imported and loaded (a workload its caches hold). Open it before any other
    thread starts (a progress bar's): a fork copies no thread but could copy a lock one held."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import importlib

    # what run_point imports: once
    for module in ("testbed.sim.engine", "testbed.sim.fit", "testbed.report", "testbed.results"):
        importlib.import_module(module)

    n = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(_ready, range(n)))  # every worker forked here, not at the first point
        yield pool


def _ready(_: int) -> None:
    """A task that only makes the pool start its workers."""


def run_sweep(scenario: str, out: Path, *, overrides: dict[str, Any] | None = None, executor: str = "local",
              workers: int | None = None, address: str | None = None, plots: bool = False,
              progress: Callable[[int, int], None] | None = None, pool: Executor | None = None) -> SweepResult:
    """Run every point of `scenario`'s sweep into `out/point-NNN/` and merge their summaries.
    `executor`: serial, local (`pool`, else a `local_pool` of `workers`) or ray (`address` of a
    cluster, else a local Ray instance). `progress(done, total)` after each point."""
    overrides = dict(overrides or {})
    sc = sweep_scenario(scenario, overrides)
    jobs = [PointJob(scenario, overrides, i, str(out / f"point-{i:03d}"), plots) for i in range(sc.points)]
    points = execute(jobs, executor, workers, address, progress, pool)
    return SweepResult(points, tuple(sc.sweep), *merge(points, tuple(sc.sweep)))


@dataclass(frozen=True)
class ReplicationResult:
    """Every seed's outcome in seed order, the replication summary (each metric's mean and 95% CI
    over seeds) and, for a scenario with a paper comparison, the comparison over seeds."""

    points: tuple[PointOutcome, ...]
    table: pd.DataFrame = field(repr=False)
    comparison: pd.DataFrame | None = field(repr=False)

    @property
    def seeds(self) -> list[int]:
        return [int(p.assignment["seed"]) for p in self.points]


def run_replications(scenario: str, out: Path, replications: int, *, overrides: dict[str, Any] | None = None,
                     executor: str = "local", workers: int | None = None, address: str | None = None,
                     plots: bool = True, progress: Callable[[int, int], None] | None = None,
                     pool: Executor | None = None) -> ReplicationResult:
    """Run `scenario` (with `overrides`; no sweep) on seeds seed .. seed+replications-1 into
    `out/seed-<n>/` on `executor` (as `run_sweep`), and summarise each metric over the seeds."""
    from testbed import report

    overrides = dict(overrides or {})
    sc = sweep_scenario(scenario, overrides)
    if sc.points > 1:
        raise TestbedError("replications run one point; drop [sweep] or run its points one by one")
    if replications < 1:
        raise TestbedError(f"replications must be at least 1, got {replications}")
    jobs = [PointJob(scenario, overrides, i, str(out / f"seed-{sc.seed + i}"), plots, seed=sc.seed + i)
            for i in range(replications)]
    points = execute(jobs, executor, workers, address, progress, pool)
    comparisons = [p.comparison for p in points]
    table = report.replication_summary([p.summary for p in points])
    comparison = report.comparison_replicated(comparisons) if sc.paper_comparison else None  # type: ignore[arg-type]
    return ReplicationResult(points, table, comparison)


def execute(jobs: list[PointJob], executor: str = "local", workers: int | None = None, address: str | None = None,
            progress: Callable[[int, int], None] | None = None,
            pool: Executor | None = None) -> tuple[PointOutcome, ...]:
    """Run `jobs` on `executor` and return their outcomes in job order; `progress(done, total)` after each."""
    if executor not in EXECUTORS:
        raise TestbedError(f"unknown executor {executor!r}; one of {', '.join(EXECUTORS)}")
    outcomes: dict[int, PointOutcome] = {}
    n = len(jobs)

    def done(o: PointOutcome) -> None:
        outcomes[o.index] = o
        if progress is not None:
            progress(len(outcomes), n)

    if executor == "serial" or n == 1:
        for job in jobs:
            done(run_point(job))
    elif executor == "local":
        if pool is not None:
            _run_local(pool, jobs, done)
        else:
            with local_pool(workers) as own:
                _run_local(own, jobs, done)
    else:
        _run_ray(jobs, address, done)
    return tuple(outcomes[job.index] for job in jobs)


def _run_local(pool: Executor, jobs: list[PointJob], done: Callable[[PointOutcome], None]) -> None:
    from concurrent.futures import FIRST_EXCEPTION, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = {pool.submit(run_point, job) for job in jobs}
    try:
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for f in finished:
                done(f.result())  # a failed point raises here, naming itself
    except BrokenProcessPool:
        raise TestbedError("a sweep worker process died (killed, or out of memory); its point's folder was not "
                           "written") from None
    finally:
        for f in pending:
            f.cancel()


def _run_ray(jobs: list[PointJob], address: str | None, done: Callable[[PointOutcome], None]) -> None:
    try:
        import ray
    except ImportError:
        raise TestbedError("--executor ray needs Ray: pip install -e '.[ray]' (or pip install ray)") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray reports usage over the internet unless told not to
    started = not ray.is_initialized()
    if started:
        env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith("TESTBED_")}}
        if address is None:  # a local instance, on loopback
            ray.init(include_dashboard=False, log_to_driver=False, runtime_env=env, _node_ip_address="127.0.0.1")
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, runtime_env=env)
    try:
        remote = ray.remote(run_point)
        refs = {remote.remote(job): job for job in jobs}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            refs.pop(ready[0])
            try:
                done(ray.get(ready[0]))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if isinstance(getattr(exc, "cause", None), PointFailed) else None
                for r in refs:
                    ray.cancel(r)
                raise cause or TestbedError(str(exc).strip().splitlines()[0]) from None
    finally:
        if started:
            ray.shutdown()


def merge(points: tuple[PointOutcome, ...], keys: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sweep table (the all-benchmarks row of each policy at each point, in grid order) and the
    crop policies' curves over the swept keys."""
    from testbed import report

    table = pd.concat([p.summary.assign(**p.assignment) for p in points], ignore_index=True)
    table = table[table.benchmark == report.ALL][[*keys, "policy", "accuracy", "mean_s", "p50_s", "p95_s", "p99_s",
                                                  "local_share", "mb_up_per_query"]].reset_index(drop=True)
    crop = pd.concat([p.crop.assign(**p.assignment) for p in points], ignore_index=True)
    return table, crop
