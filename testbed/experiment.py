"""Running a scenario, whichever interpreter executes it: each policy's prepared context (knobs;
router and density agent warmed up on the profiling split), the arrival schedule its clients
follow, run totals, and the result assembled from every policy's rows. `sim/engine.py`,
`live/run.py` and `live/streams.py` only execute policies with their interpreter in between.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from testbed.artifacts import ArtifactRows, collect
from testbed.bandit import DecisionLog, Profiling, fit_records
from testbed.bandit.backbone import shipped_fits
from testbed.cache import cache_dir
from testbed.energy import add_energy
from testbed.errors import TestbedError
from testbed.policies.base import PolicyContext, PolicySpec, RunState, finish_bandit, start_bandit, start_router
from testbed.policies.registry import resolve
from testbed.profiles import HardwareProfile
from testbed.query import DENSITIES, QueryRecord
from testbed.results import RunResult, order_rows
from testbed.router.calibration import Calibration, CalibrationReport
from testbed.scenario import ArrivalsConfig, Scenario
from testbed.workload import query_order


@dataclass(frozen=True)
class ClientSchedule:
    """What one client submits: its queries in order and, for Poisson arrivals, the seconds from one
    arrival to the next (the first from the run's start); closed-loop clients submit the next query
    when the last is answered, `think_s` later."""

    client: int
    records: tuple[QueryRecord, ...]
    gaps_s: tuple[float, ...] | None = None
    think_s: float = 0.0


def arrival_schedule(records: Sequence[QueryRecord], arrivals: ArrivalsConfig, seed: int) -> tuple[ClientSchedule, ...]:
    """Every client's share of `records` (the seeded submission order dealt round-robin) and, for
    Poisson clients, their exponential gaps from a generator of each client's own: the same for the
    sim and live runs of one scenario and seed."""
    ordered = query_order(records, seed)
    n = arrivals.clients
    out = []
    for c in range(n):
        queue = tuple(ordered[c::n])
        gaps = None
        if arrivals.kind != "closed":
            rng = np.random.default_rng([seed, 3, c])
            gaps = tuple(float(rng.exponential(1.0 / arrivals.rate_per_client)) for _ in queue)
        out.append(ClientSchedule(c, queue, gaps, arrivals.think_s))
    return tuple(out)


def client_streams(streams: Sequence[Any], clients: int) -> tuple[tuple[Any, ...], ...]:
    """Camera streams dealt round-robin over the clients; each client plays its streams one after another."""
    return tuple(tuple(streams[c::clients]) for c in range(clients))


def run_totals(policy: str, makespan_s: float, edge_gpu_busy_s: float, edge_gpus: int, bytes_up: float,
               bytes_down: float, uplink_util_max: float = 0.0, downlink_util_max: float = 0.0) -> dict[str, Any]:
    """One policy's run totals (a row of totals.csv); link utilisation is 0 where the run cannot see it."""
    span = max(makespan_s, 1e-12)
    return {"policy": policy, "makespan_s": makespan_s, "edge_gpu_busy_s": edge_gpu_busy_s,
            "edge_gpu_util": edge_gpu_busy_s / (span * edge_gpus), "uplink_util_max": uplink_util_max,
            "downlink_util_max": downlink_util_max, "bytes_up": bytes_up, "bytes_down": bytes_down}


_FITS: dict[str, Profiling] = {}


def profiling_fit(records: Sequence[QueryRecord], frames: Sequence[float], calibration: Calibration,
                  seed: int) -> Profiling:
    """The density agents' profiling fit (backbone included) on labelled records that carry their
    context inputs, keyed by their content: every adaptive policy and sweep point of a process
    shares it (it is immutable; each policy warm-starts an agent of its own), and the backbone
    comes from the on-disk cache when another process fitted it already."""
    h = hashlib.sha256(f"{seed}:{calibration.small_t!r}:{list(frames)!r}".encode())
    for r in records:
        c = r.context
        h.update(r.query.query_id.encode())
        for v in (r.small_logits, *(r.large_logits.get(a) for a in DENSITIES), c.txt, c.vis,
                  np.array([np.nan if x is None else x for x in (c.s_max, c.s_mean, c.s_cplx)])):
            h.update(b"-" if v is None else np.ascontiguousarray(v, dtype=np.float64).tobytes())
    key = h.hexdigest()
    if key not in _FITS:
        while len(_FITS) >= 4:  # a sweep reuses its fit; the oldest of other workloads' goes
            del _FITS[next(iter(_FITS))]
        _FITS[key] = fit_records(records, frames, calibration.small_t, seed, cache=cache_dir() / "backbones")
    return _FITS[key]


def cached_note(profiling: Profiling | None) -> str:
    """One line when the density agents' backbone was not retrained."""
    if profiling is None or profiling.cached_from is None:
        return ""
    found = profiling.cached_from
    where = f"the fit shipped for it, traces/backbones/{found.name}" if found.parent == shipped_fits() else str(found)
    return (f"bandit backbone: cached fit reused (same profiling split, temperature and seed: {where}), "
            "not retrained")


@dataclass
class Experiment:
    """One run of a scenario's policies: prepares each policy's context on the labelled profiling
    split and gathers what each policy's run gives back (rows, totals, what its family learned for
    the run's artifacts, decision logs), then assembles the result. `frames`: per profiling record, the frames its
    small model saw (what the density agent's features count); None when no policy has an agent."""

    sc: Scenario
    calibration: Calibration
    profile_split: Sequence[QueryRecord]
    frames: Callable[[], Sequence[float]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    totals: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[str, DecisionLog] = field(default_factory=dict)
    profiling: Profiling | None = None
    learned: list[tuple[str, tuple[ArtifactRows, ...], RunState]] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def prepare(self, name: str) -> tuple[PolicySpec, PolicyContext]:
        """Policy `name`'s spec and a fresh context: its knobs, its family's router warmed up, and for
        an adaptive-density policy a density agent warm-started from the profiling fit."""
        sc = self.sc
        spec = resolve(name)
        knobs = sc.policies.knobs_for(name)
        state = spec.new_state(self.calibration)
        start_router(spec, knobs, state, self.profile_split, sc.models.default_density, sc.seed)
        if spec.agent:
            if not self.profile_split:
                raise TestbedError(f"{name}: its density agent is fitted on the profiling split, which this "
                                   "workload lacks (give some queries split = 'profile')")
            if self.profiling is None:
                frames = self.frames() if self.frames is not None else [1.0] * len(self.profile_split)
                self.profiling = profiling_fit(self.profile_split, frames, self.calibration, sc.seed)
            state.bandit = start_bandit(spec, knobs, self.profiling, self.calibration, sc.seed, sc.resolve_path,
                                        {"scenario": sc.name, **self.meta})
        return spec, PolicyContext(knobs, state, sc.models.default_density)

    def finish(self, spec: PolicySpec, ctx: PolicyContext, rows: list[dict[str, Any]], totals: dict[str, Any],
               rewards: dict[str, np.ndarray] | None = None) -> None:
        """Keep one policy's rows and totals and what its run learned: its state for its family's
        artifacts (a threshold picked, a crop plan), its decision log (`rewards`: each density's proxy
        reward per query, where known), and its agent's state saved where its knobs say."""
        sc, state = self.sc, ctx.state
        self.ran.append(spec.name)
        self.rows += rows
        self.totals.append(totals)
        if spec.router is not None and spec.router.artifacts:
            self.learned.append((spec.name, spec.router.artifacts, state))
        if state.bandit is not None:
            log = state.bandit.decision_log(rewards)
            if log is not None:
                self.logs[spec.name] = log
            finish_bandit(spec, ctx.knobs, state.bandit, sc.resolve_path, {"scenario": sc.name, **self.meta})

    def queries(self, benchmarks: Sequence[str], power: HardwareProfile) -> pd.DataFrame:
        """Every policy's rows in scenario and workload order, with energy from `power`'s model."""
        return add_energy(order_rows(self.rows, self.ran, benchmarks), power)

    def result(self, queries: pd.DataFrame, provenance: str, hardware: str, parameters: dict[str, Any],
               mode: str, notes: Sequence[str], report: CalibrationReport | None, **kw: Any) -> RunResult:
        """The run's result: its rows, totals and everything the policies learned."""
        return RunResult(queries, pd.DataFrame(self.totals), provenance, hardware, self.calibration, parameters, mode,
                         tuple(notes), self.logs, self.profiling, calibration_report=report,
                         artifacts=collect(self.learned, queries), **kw)
