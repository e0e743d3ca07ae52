"""Run a scenario in simulated time: build the world, feed arrivals, collect per-query rows.

Each policy runs in its own SimPy environment over the same queries, arrival times and seeds, so
ratios between policies come from one run.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import simpy

from sim import costs
from sim.interpreter import Node, SimInterpreter, World
from sim.link import Channel
from testbed.bandit import BanditRun, DecisionLog, Profiling, fit_records, sampled_frames
from testbed.bandwidth import MahimahiLink, read_mahimahi, scale_to_mean
from testbed.cache import cache_dir
from testbed.codec.size import TokenFormat
from testbed.direction import link_seed
from testbed.errors import TestbedError
from testbed.energy import add_energy
from testbed.policies.base import PolicyContext, PolicySpec, finish_bandit, start_bandit, start_router
from testbed.policies.registry import resolve
from testbed.profiles import HardwareProfile, load_profile
from testbed.query import DENSITIES, QueryRecord
from testbed.results import RunResult, crop_plan_rows, density_regret, order_rows, regret_cost, routing_rows
from testbed.router.calibration import Calibration, calibration_report, scenario_calibration
from testbed.scenario import Scenario
from testbed.tokenizer.sampling import KEYFRAME_SAMPLER
from testbed.streams.run import StreamRun
from testbed.streams.trace import StreamRecord, StreamWorkload, read_stream_trace
from testbed.streams.trace import table_to_streams
from testbed.streams.trace import to_table as stream_table
from testbed.traces import Workload, read_trace, table_to_workload, to_table
from testbed.workload import query_order
from testbed.workload.synthetic import synthetic_workload

Progress = Callable[[int], None]


@functools.lru_cache(maxsize=8)
def _synthetic(benchmarks: tuple[str, ...], n: int, seed: int, context_signal: float) -> Workload:
    frame, provenance, params = synthetic_workload(benchmarks, n, seed, context_signal)
    return table_to_workload(to_table(frame, provenance, params), provenance)


@functools.lru_cache(maxsize=4)
def _synthetic_image(n: int, seed: int) -> Workload:
    from testbed.workload.synthetic_image import synthetic_image_workload

    frame, provenance, params = synthetic_image_workload(n, seed)
    return table_to_workload(to_table(frame, provenance, params), provenance)


@functools.lru_cache(maxsize=4)
def _synthetic_crop(n: int, seed: int) -> Workload:
    from testbed.workload.synthetic_crop import synthetic_crop_workload

    frame, provenance, params = synthetic_crop_workload(n, seed)
    return table_to_workload(to_table(frame, provenance, params), provenance)


@functools.lru_cache(maxsize=4)
def _synthetic_streams(datasets: tuple[str, ...], seed: int, streams: int) -> StreamWorkload:
    from testbed.streams.synthetic import synthetic_streams

    frame, provenance, params = synthetic_streams(datasets, seed, streams)
    return table_to_streams(stream_table(frame, provenance, params), provenance)


def load_streams(sc: Scenario) -> StreamWorkload:
    """A stream scenario's streams: the calibrated synthetic ones, or a stream trace."""
    if sc.workload.kind == "stream":
        return _synthetic_streams(sc.stream.datasets, sc.seed, sc.stream.streams_per_dataset)
    return read_stream_trace(sc.resolve_path(sc.workload.path))


def load_workload(sc: Scenario) -> Workload:
    """The scenario's workload: generated (synthetic, labelled) or read from a trace file. The sim
    replays recorded model outcomes, so a manifest (queries without outcomes) is refused."""
    if sc.workload.streams:
        raise TestbedError(f"workload.kind = {sc.workload.kind!r} is camera streams: load it with load_streams")
    if sc.workload.kind == "synthetic":
        return _synthetic(sc.workload.benchmarks, sc.workload.queries_per_benchmark, sc.seed,
                          sc.workload.context_signal)
    if sc.workload.kind == "synthetic-image":
        return _synthetic_image(sc.workload.queries_per_benchmark, sc.seed)
    if sc.workload.kind == "synthetic-crop":
        return _synthetic_crop(sc.workload.queries_per_benchmark, sc.seed)
    if sc.workload.kind != "trace":
        raise TestbedError(f"workload.kind = {sc.workload.kind!r} holds queries but no model outcomes: run it with "
                           "`testbed live SCENARIO --inproc`; the sim replays traces (kind = 'trace')")
    return read_trace(sc.resolve_path(sc.workload.path))


@functools.lru_cache(maxsize=4)  # a trace scaled to ~100 Mbit/s holds tens of millions of stamps
def _trace_link(path: str, target_mbps: float) -> MahimahiLink:
    stamps = read_mahimahi(Path(path))
    if target_mbps > 0:
        stamps = scale_to_mean(stamps, target_mbps)
    return MahimahiLink(stamps)


def build_world(sc: Scenario, profile: HardwareProfile, trace_offset_s: float = 0.0,
                edge_timeout_s: float | None = None) -> World:
    """A fresh clock and edge; per client a device and a link (one shared link if network.shared);
    bandwidth traces read from `trace_offset_s` on (where a live run's policy started in its trace)."""
    env = simpy.Environment()
    net = sc.network
    up_trace = _trace_link(str(sc.resolve_path(net.up_trace)), net.trace_mean_mbps_up) if net.up_trace else None
    down_trace = _trace_link(str(sc.resolve_path(net.down_trace)), net.trace_mean_mbps_down) \
        if net.down_trace else None
    rtt = net.rtt_ms / 1000
    n_links = 1 if net.shared else sc.arrivals.clients

    def channels(rate: float, trace: MahimahiLink | None, direction: int) -> list[Channel]:
        made = [Channel(env, rate, rtt, net.efficiency, net.mtu, net.loss,
                        np.random.default_rng(link_seed(sc.seed, direction, i)), trace, net.slow_start_after_idle,
                        trace_offset_s)
                for i in range(n_links)]
        return made * sc.arrivals.clients if net.shared else made

    edge = Node(env, profile.edge, sc.nodes.edge_gpus, sc.nodes.edge_decode_workers)
    devices = [Node(env, profile.local, sc.nodes.local_gpus, sc.nodes.local_decode_workers)
               for _ in range(sc.arrivals.clients)]
    fmt = TokenFormat(sc.models.token_dim, sc.models.dtype, sc.models.compression_ratio)
    return World(env, profile, channels(net.up_mbps, up_trace, 0), channels(net.down_mbps, down_trace, 1), edge,
                 devices, fmt, sc.nodes.chunk_frames, edge_timeout_s=edge_timeout_s)


def _closed_client(interp: SimInterpreter, w: World, queue: list[QueryRecord], client: int, think_s: float,
                   progress: Progress | None):
    for rec in queue:
        yield w.env.process(interp.run_query(rec, client))
        if progress:
            progress(1)
        if think_s:
            yield w.env.timeout(think_s)


def _poisson_client(interp: SimInterpreter, w: World, queue: list[QueryRecord], client: int, rate: float,
                    rng: np.random.Generator, progress: Progress | None):
    def one(rec: QueryRecord):
        yield w.env.process(interp.run_query(rec, client))
        if progress:
            progress(1)

    for rec in queue:
        yield w.env.timeout(rng.exponential(1.0 / rate))
        w.env.process(one(rec))


def simulate_policy(sc: Scenario, profile: HardwareProfile, spec: PolicySpec, ctx: PolicyContext,
                    records: Sequence[QueryRecord], progress: Progress | None = None,
                    trace_offset_s: float = 0.0, edge_timeout_s: float | None = None) -> tuple[list[dict], dict]:
    """Per-query rows and run-level totals for one policy over `records`. Rows are built after the
    clock stops, so each holds the work of every future its query started; a policy that sends
    shared tokens at a density gets each escalated query's regret against the oracle density.
    `trace_offset_s`: the bandwidth traces' time at the policy's start (a replayed live run's);
    `edge_timeout_s`: Offloads unanswered by then fall back to the device, as in the live run replayed
    (None, the sim's default: the edge always answers)."""
    w = build_world(sc, profile, trace_offset_s, edge_timeout_s)
    interp = SimInterpreter(w, spec, ctx)
    ordered = query_order(records, sc.seed)
    n = sc.arrivals.clients
    for c in range(n):
        queue = ordered[c::n]
        if sc.arrivals.kind == "closed":
            w.env.process(_closed_client(interp, w, queue, c, sc.arrivals.think_s, progress))
        else:
            rng = np.random.default_rng([sc.seed, 3, c])
            w.env.process(_poisson_client(interp, w, queue, c, sc.arrivals.rate_per_client, rng, progress))
    w.env.run()
    cost = regret_cost(ctx.knobs)
    rows = [run.row(spec.name, "sim", density_regret(run.rec, run.answer, run.ledger.frames, cost)
                    if spec.uses_density and run.answer is not None else float("nan")) for run in w.runs]
    return rows, world_totals(w, spec.name, sc.nodes.edge_gpus)


def world_totals(w: World, policy: str, edge_gpus: int) -> dict[str, Any]:
    """A policy's run totals once the clock has stopped: makespan, the edge GPUs' busy time, each
    direction's busiest link and the bytes every link carried."""
    ups = list({id(c): c for c in w.uplinks}.values())
    downs = list({id(c): c for c in w.downlinks}.values())
    span = max(w.env.now, 1e-12)
    return {"policy": policy, "makespan_s": w.env.now, "edge_gpu_busy_s": w.edge.gpu_busy_s,
            "edge_gpu_util": w.edge.gpu_busy_s / (span * edge_gpus),
            "uplink_util_max": max(c.busy_s for c in ups) / span,
            "downlink_util_max": max(c.busy_s for c in downs) / span,
            "bytes_up": sum(c.bytes for c in ups), "bytes_down": sum(c.bytes for c in downs)}


_PROFILING: dict[str, Profiling] = {}


def profiling_fit(records: Sequence[QueryRecord], calibration: Calibration, seed: int) -> Profiling:
    """The density agents' profiling fit (backbone included) on `records`, once per distinct
    profiling split, temperature and seed in this process: every adaptive policy and sweep point
    shares it (it is immutable; each policy warm-starts an agent of its own from it)."""
    h = hashlib.sha256(f"{seed}:{calibration.small_t!r}".encode())
    for r in records:
        c = r.context
        h.update(r.query.query_id.encode())
        for v in (r.small_logits, *(r.large_logits.get(a) for a in DENSITIES), c.txt, c.vis,
                  np.array([np.nan if x is None else x for x in (c.s_max, c.s_mean, c.s_cplx)])):
            h.update(b"-" if v is None else np.ascontiguousarray(v, dtype=np.float64).tobytes())
    key = h.hexdigest()
    if key not in _PROFILING:
        frames = [sampled_frames(r.query.media, KEYFRAME_SAMPLER) for r in records]
        while len(_PROFILING) >= 4:  # a sweep reuses its fit; the oldest of other workloads' goes
            del _PROFILING[next(iter(_PROFILING))]
        _PROFILING[key] = fit_records(records, frames, calibration.small_t, seed, cache=cache_dir() / "backbones")
    return _PROFILING[key]


def _cached_note(profiling: Profiling | None) -> str:
    """One line when the density agents' backbone was not retrained."""
    if profiling is None or not profiling.cached:
        return ""
    return (f"bandit backbone: cached fit reused from {cache_dir() / 'backbones'} (same profiling split, "
            "temperature and seed), not retrained")


def policy_context(sc: Scenario, name: str, calibration: Calibration,
                   profile_split: Sequence[QueryRecord]) -> PolicyContext:
    """What policy `name` runs with in `sc`: its knobs, and a fresh run state (for an adaptive-density
    policy, a density agent warm-started from the profiling split's fit; for a routing policy, its
    router trained and its threshold picked there)."""
    spec = resolve(name)
    knobs = sc.policies.knobs_for(name)
    state = spec.new_state(calibration)
    start_router(spec, knobs, state, profile_split, sc.models.default_density, sc.seed)
    if spec.agent:
        if not profile_split:
            raise TestbedError(f"{name}: its density agent is fitted on the profiling split, which this "
                               "workload lacks (give some queries split = 'profile')")
        state.bandit = start_bandit(spec, knobs, profiling_fit(profile_split, calibration, sc.seed), calibration,
                                    sc.seed, sc.resolve_path, {"scenario": sc.name})
    return PolicyContext(knobs, state, sc.models.default_density)


def trace_rewards(bandit: BanditRun, records: Sequence[QueryRecord]) -> dict[str, np.ndarray]:
    """Every density's proxy reward of each query whose trace holds every density's logits."""
    return {r.query.query_id: bandit.proxy_rewards(r.large_logits, sampled_frames(r.query.media, KEYFRAME_SAMPLER))
            for r in records if all(a in r.large_logits for a in bandit.cost.densities)}


def simulate_stream_policy(sc: Scenario, profile: HardwareProfile, spec: PolicySpec, ctx: PolicyContext,
                           streams: Sequence[StreamRecord], progress: Progress | None = None) -> tuple[list[dict], dict]:
    """Per-frame rows and run totals of one stream policy. Each client plays its streams one after
    another, the next starting when the one before ends (its last frame's deadline); a stream's
    frames arrive at their capture times. Rows are built after the clock stops, so that work of
    uploads still in flight when a stream ended is in them (their answers are never used)."""
    w = build_world(sc, profile)
    interp = SimInterpreter(w, spec, ctx)
    n = sc.arrivals.clients

    def client(queue: Sequence[StreamRecord], c: int):
        for rec in queue:
            run = StreamRun(rec, c, sc.stream.tau_s, sc.stream.vision_tokens, cloud_extra_s=sc.stream.cloud_extra_s)
            yield w.env.process(interp.run_stream(run))
            end = run.start_s + run.end_s
            if w.env.now < end:
                yield w.env.timeout(end - w.env.now)
            if progress:
                progress(rec.n)

    for c in range(n):
        w.env.process(client(streams[c::n], c))
    w.env.run()
    rows = [row for run in w.streams for row in run.rows(spec.name, "sim")]
    return rows, world_totals(w, spec.name, sc.nodes.edge_gpus)


def run_stream_scenario(sc: Scenario, progress: Progress | None = None, profile: HardwareProfile | None = None,
                        workload: StreamWorkload | None = None) -> RunResult:
    """Simulate every stream policy of `sc` on its streams (no calibration split: none is fitted)."""
    from testbed.router.calibration import Calibration

    workload = workload or load_streams(sc)
    profile = profile or load_profile(sc.profile_path())
    rows: list[dict] = []
    totals = []
    for name in sc.policies.run:
        spec = resolve(name)
        ctx = PolicyContext(sc.policies.knobs_for(name), spec.new_state(Calibration(1.0, 1.0)),
                            sc.models.default_density)
        r, t = simulate_stream_policy(sc, profile, spec, ctx, workload.streams, progress)
        rows += r
        totals.append(t)
    frames = pd.DataFrame(rows)
    if len(frames):
        rank = {p: i for i, p in enumerate(sc.policies.run)}
        frames = (frames.assign(_p=frames.policy.map(rank)).sort_values(["_p"], kind="stable")
                  .drop(columns="_p").reset_index(drop=True))
    return RunResult(frames, pd.DataFrame(totals), workload.provenance, f"{profile.name} ({profile.provenance})",
                     Calibration(1.0, 1.0), workload.parameters, kind="stream")


HORIZON_S = 1e9
"""The latest simulated time a result may reach (31 years): beyond it float64 seconds lose sub-microsecond
resolution, and a query's delay can round to 0."""


def check_sane(queries: pd.DataFrame, sc: Scenario) -> None:
    """Refuse a run whose numbers are not results: non-finite times, or arrivals so sparse that they pass
    HORIZON_S (e.g. rate_per_client = 1e-300)."""
    times = queries[["submit_s", "delay_s"]].to_numpy(float) if len(queries) else np.zeros((0, 2))
    if not np.isfinite(times).all():
        raise TestbedError(f"{sc.name}: the run produced non-finite times; check the scenario's rates and sizes")
    if len(times) and float((times[:, 0] + times[:, 1]).max()) > HORIZON_S:
        raise TestbedError(f"{sc.name}: queries arrive past {HORIZON_S:.0e} s of simulated time (arrivals."
                           f"rate_per_client = {sc.arrivals.rate_per_client:g}/s); raise the rate or lower the queries")


def run_scenario(sc: Scenario, progress: Progress | None = None, profile: HardwareProfile | None = None,
                 workload: Workload | None = None) -> RunResult:
    """Simulate every policy of `sc` on its workload's test split (a stream scenario: its streams).
    Adaptive-density policies start from the profiling split's fit; their decision logs come back
    in the result, and an agent's state is saved where its knobs say."""
    if sc.workload.streams:
        return run_stream_scenario(sc, progress, profile)
    costs.forget_work()
    workload = workload or load_workload(sc)
    profile = profile or load_profile(sc.profile_path())
    calibration, source = scenario_calibration(sc, workload.split("profile"))
    test = workload.split("test") or workload.records
    rows: list[dict] = []
    totals = []
    logs: dict[str, DecisionLog] = {}
    profiling: Profiling | None = None
    picks = {}
    plans = {}
    for name in sc.policies.run:
        spec = resolve(name)
        knobs = sc.policies.knobs_for(name)
        ctx = policy_context(sc, name, calibration, workload.split("profile"))
        state = ctx.state
        if state.bandit is not None:  # the fit policy_context used (cached): written with the results
            profiling = profiling_fit(workload.split("profile"), calibration, sc.seed)
        r, t = simulate_policy(sc, profile, spec, ctx, test, progress)
        rows += r
        totals.append(t)
        if state.threshold is not None:
            picks[name] = state.threshold
        if state.crop is not None:
            plans[name] = state.crop
        if state.bandit is not None:
            log = state.bandit.decision_log(trace_rewards(state.bandit, test))
            if log is not None:
                logs[name] = log
            finish_bandit(spec, knobs, state.bandit, sc.resolve_path, {"scenario": sc.name})
    queries = add_energy(order_rows(rows, sc.policies.run, workload.benchmarks()), profile)
    check_sane(queries, sc)
    report = calibration_report(calibration, test, "test", source, sc.calibration.bins)
    notes = tuple(n for n in (profile.energy_note(), _cached_note(profiling)) if n)
    return RunResult(queries, pd.DataFrame(totals), workload.provenance, f"{profile.name} ({profile.provenance})",
                     calibration, workload.parameters, notes=notes, logs=logs, profiling=profiling,
                     calibration_report=report, routing=routing_rows(picks, queries),
                     crop_plans=crop_plan_rows(plans))
