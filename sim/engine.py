"""Run a scenario in simulated time: build the world, feed arrivals, collect per-query rows.

Each policy runs in its own SimPy environment over the same queries, arrival times and seeds, so
ratios between policies come from one run.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import simpy

from testbed.sim import costs
from testbed.sim.interpreter import Node, SimGen, SimInterpreter, World
from testbed.sim.link import Channel
from testbed.bandit import BanditRun, Profiling, sampled_frames
from testbed.bandwidth import MahimahiLink, read_mahimahi, scale_to_mean
from testbed.codec.size import TokenFormat
from testbed.direction import link_seed
from testbed.errors import TestbedError
from testbed.experiment import (ClientSchedule, Experiment, arrival_schedule, cached_note, client_streams,
                                run_totals)
from testbed.experiment import profiling_fit as experiment_fit
from testbed.policies.base import PolicyContext, PolicySpec
from testbed.profiles import HardwareProfile, load_profile
from testbed.query import QueryRecord
from testbed.ledger import density_regret, regret_cost
from testbed.results import RunResult
from testbed.router.calibration import Calibration, calibration_report, scenario_calibration
from testbed.scenario import Scenario
from testbed.tokenizer.sampling import KEYFRAME_SAMPLER
from testbed.streams.run import StreamRun
from testbed.streams.trace import StreamRecord, StreamWorkload, read_stream_trace
from testbed.streams.trace import table_to_streams
from testbed.streams.trace import to_table as stream_table
from testbed.traces import Workload, read_trace, table_to_workload, to_table
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


def _client(interp: SimInterpreter, w: World, plan: ClientSchedule, progress: Progress | None) -> SimGen:
    """One client's queries in simulated time: closed loop (each after the last answer, think_s
    later) or at its Poisson gaps, each query a process of its own."""
    def one(rec: QueryRecord) -> SimGen:
        yield w.env.process(interp.run_query(rec, plan.client))
        if progress:
            progress(1)

    if plan.gaps_s is None:
        for rec in plan.records:
            yield from one(rec)
            if plan.think_s:
                yield w.env.timeout(plan.think_s)
        return
    for rec, gap in zip(plan.records, plan.gaps_s):
        yield w.env.timeout(gap)
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
    for plan in arrival_schedule(records, sc.arrivals, sc.seed):
        w.env.process(_client(interp, w, plan, progress))
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
    return run_totals(policy, w.env.now, w.edge.gpu_busy_s, edge_gpus, sum(c.bytes for c in ups),
                      sum(c.bytes for c in downs), max(c.busy_s for c in ups) / span,
                      max(c.busy_s for c in downs) / span)


def profiling_fit(records: Sequence[QueryRecord], calibration: Calibration, seed: int) -> Profiling:
    """The density agents' profiling fit on trace records (testbed.experiment.profiling_fit), each
    record's frames as the keyframe sampler takes them."""
    return experiment_fit(records, _frames(records), calibration, seed)


def _frames(records: Sequence[QueryRecord]) -> list[float]:
    return [sampled_frames(r.query.media, KEYFRAME_SAMPLER) for r in records]


def experiment(sc: Scenario, calibration: Calibration, profile_split: Sequence[QueryRecord]) -> Experiment:
    """The run's experiment over trace records (their frames counted by the keyframe sampler)."""
    return Experiment(sc, calibration, profile_split, lambda: _frames(profile_split))


def policy_context(sc: Scenario, name: str, calibration: Calibration,
                   profile_split: Sequence[QueryRecord]) -> PolicyContext:
    """What policy `name` runs with in `sc` (testbed.experiment.Experiment.prepare)."""
    return experiment(sc, calibration, profile_split).prepare(name)[1]


def trace_rewards(bandit: BanditRun, records: Sequence[QueryRecord]) -> dict[str, np.ndarray]:
    """Every density's proxy reward of each query whose trace holds every density's logits."""
    return {r.query.query_id: bandit.proxy_rewards(r.large_logits, sampled_frames(r.query.media, KEYFRAME_SAMPLER))
            for r in records if all(a in r.large_logits for a in bandit.cost.densities)}


def simulate_stream_policy(sc: Scenario, profile: HardwareProfile, spec: PolicySpec, ctx: PolicyContext,
                           streams: Sequence[StreamRecord],
                           progress: Progress | None = None) -> tuple[list[dict], dict]:
    """Per-frame rows and run totals of one stream policy. Each client plays its streams one after
    another, the next starting when the one before ends (its last frame's deadline); a stream's
    frames arrive at their capture times. Rows are built after the clock stops, so that work of
    uploads still in flight when a stream ended is in them (their answers are never used)."""
    w = build_world(sc, profile)
    interp = SimInterpreter(w, spec, ctx)

    def client(queue: Sequence[StreamRecord], c: int) -> SimGen:
        for rec in queue:
            run = StreamRun(rec, c, sc.stream.tau_s, sc.stream.vision_tokens, cloud_extra_s=sc.stream.cloud_extra_s)
            yield w.env.process(interp.run_stream(run))
            end = run.start_s + run.end_s
            if w.env.now < end:
                yield w.env.timeout(end - w.env.now)
            if progress:
                progress(rec.n)

    for c, queue in enumerate(client_streams(streams, sc.arrivals.clients)):
        w.env.process(client(queue, c))
    w.env.run()
    rows = [row for run in w.streams for row in run.rows(spec.name, "sim")]
    return rows, world_totals(w, spec.name, sc.nodes.edge_gpus)


def run_stream_scenario(sc: Scenario, progress: Progress | None = None, profile: HardwareProfile | None = None,
                        workload: StreamWorkload | None = None) -> RunResult:
    """Simulate every stream policy of `sc` on its streams (no calibration split: none is fitted)."""
    workload = workload or load_streams(sc)
    profile = profile or load_profile(sc.profile_path())
    ex = Experiment(sc, Calibration(1.0, 1.0), ())
    for name in sc.policies.run:
        spec, ctx = ex.prepare(name)
        ex.finish(spec, ctx, *simulate_stream_policy(sc, profile, spec, ctx, workload.streams, progress))
    frames = pd.DataFrame(ex.rows)
    if len(frames):
        rank = {p: i for i, p in enumerate(sc.policies.run)}
        frames = (frames.assign(_p=frames.policy.map(rank)).sort_values(["_p"], kind="stable")
                  .drop(columns="_p").reset_index(drop=True))
    return ex.result(frames, workload.provenance, f"{profile.name} ({profile.provenance})", workload.parameters,
                     "sim", (), None)


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
    ex = experiment(sc, calibration, workload.split("profile"))
    for name in sc.policies.run:
        spec, ctx = ex.prepare(name)
        rows, totals = simulate_policy(sc, profile, spec, ctx, test, progress)
        bandit = ctx.state.bandit
        ex.finish(spec, ctx, rows, totals, trace_rewards(bandit, test) if bandit is not None else None)
    queries = ex.queries(workload.benchmarks(), profile)
    check_sane(queries, sc)
    report = calibration_report(calibration, test, "test", source, sc.calibration.bins)
    notes = tuple(n for n in (profile.energy_note(), cached_note(ex.profiling)) if n)
    return ex.result(queries, workload.provenance, f"{profile.name} ({profile.provenance})", workload.parameters,
                     "sim", notes, report)
