"""Real runs of a scenario: load media, build the model pair, calibrate on the profiling split, and
run every policy with the scenario's arrivals (closed loop or Poisson clients, one thread each),
writing the same rows as the sim. Used by `testbed live --inproc` (and by live mode with a link).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, replace
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as cwait
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from testbed.live.real import EdgeLink, InProcEdge, RealInterpreter, RealNode, describe_tokens, to_density
from testbed.cache import cache_dir  # noqa: F401  (re-exported: live.run.cache_dir)
from testbed.errors import TestbedError
from testbed.experiment import ClientSchedule, Experiment, arrival_schedule, run_totals
from testbed.models.vlm import VLMPair
from testbed.notes import note
from testbed.policies.base import PolicyContext, PolicySpec
from testbed.policies.driver import drive, run_sync
from testbed.policies.effects import Crop, Inference, Locate, Offload, Payload
from testbed.policies.placement import run_steps
from testbed.policies.registry import resolve
from testbed.query import DENSITIES, ContextInputs, ImageMeta, QueryRecord, ViewOutcomes
from testbed.profiles import load_profile
from testbed.ledger import Ledger, QueryRun
from testbed.results import RunResult
from testbed.router.calibration import Calibration, calibration_report, scenario_calibration
from testbed.router.signals import media_signals
from testbed.scenario import Scenario
from testbed.tokenizer.sampling import DEFAULT_SAMPLER, KEYFRAME_SAMPLER
from testbed.traces import Workload
from testbed.workload.manifest import read_manifest, read_mvbench

if TYPE_CHECKING:
    from testbed.live.curve import ClientCurve
    from testbed.live.remote_edge import ZmqEdge

Progress = Callable[[int], None]


def load_media_workload(sc: Scenario, per_benchmark: int | None = None) -> Workload:
    """The scenario's queries with media files: a manifest, MVBench's JSON, or, for a synthetic
    workload, clips made with ffmpeg (SYNTHETIC queries; with the pocket pair, clips of easy-VQA
    images with templated questions it was trained to answer). `per_benchmark` keeps the first N queries
    of each benchmark (the generated workload makes N per class; 8 by default)."""
    kind = sc.workload.kind
    if kind == "trace":
        raise TestbedError("workload.kind = 'trace' holds metadata, not media files; real runs need files: "
                           "give a manifest (workload.kind = 'manifest')")
    if kind == "synthetic" and sc.models.preset == "pocket":
        # the pocket pair answers easy-VQA questions: clips of easy-VQA images (one GOP a scene)
        # with templated questions about one scene, 3 x 8 clips by default
        from testbed.live.pocket_videos import video_workload

        clips = 3 * (per_benchmark or 8)
        manifest = video_workload(cache_dir() / f"pocket-video-{clips}x80-seed{sc.seed}", clips, seed=sc.seed)
        return replace(read_manifest(manifest), provenance=f"synthetic:easy-vqa-clips:{sc.seed}")
    if kind == "synthetic":
        from testbed.live.videos import GENERATOR, generated_manifest

        manifest = generated_manifest(cache_dir() / "videos", per_benchmark or 8, sc.seed)
        wl = read_manifest(manifest)
        return replace(wl, provenance=f"synthetic:{GENERATOR}:{sc.seed}")
    if kind == "manifest":
        wl = read_manifest(sc.resolve_path(sc.workload.path))
    else:
        root = sc.resolve_path(sc.workload.video_root) if sc.workload.video_root else None
        wl = read_mvbench(sc.resolve_path(sc.workload.path), root)
    if per_benchmark:
        kept: dict[str, int] = {}
        records = []
        for r in wl.records:
            key = f"{r.query.benchmark}/{r.split}"
            limit = max(1, round(per_benchmark * (0.3 if r.split == "profile" else 0.7)))
            if kept.get(key, 0) < limit:
                kept[key] = kept.get(key, 0) + 1
                records.append(r)
        wl = replace(wl, records=tuple(records))
    return wl


@dataclass(frozen=True)
class Profiled:
    """A profiling query run for real: its record with the logits the models gave (the small
    model's, the native large model's, and with `shared` the large model's on the small model's
    tokens at every density), the bandit's context inputs and the frames sampled."""

    record: QueryRecord
    context: ContextInputs
    frames: int


def profile(records: Sequence[QueryRecord], device: RealNode, edge: RealNode, density: int,
            shared: bool = False, signals: bool = False) -> list[Profiled]:
    """Run the models on the profiling split: the small model on the device's keyframe tokens, the
    native large model on its own encoder's default tokens (what calibration fits, as the sim
    does), with `shared` the large LM on the small model's tokens at every density and the
    context inputs (what the density agent is fitted on; seed 000 SV-A), and with `signals` seed
    002's input signals (what the input-aware router is trained on)."""
    out = []
    for rec in records:
        q, m = rec.query, rec.query.media
        small_tok, large_tok = device.tokenizers["small"], edge.tokenizers["large"]
        if isinstance(m, ImageMeta):
            ts, tl = small_tok.image(m.path).tokens, large_tok.image(m.path).tokens
        else:
            ts = small_tok(m.path, KEYFRAME_SAMPLER, pipelined=True, meta=m).tokens
            tl = large_tok(m.path, DEFAULT_SAMPLER, pipelined=False, meta=m).tokens
        small_vlm, large_vlm = device.pair.models["small"], edge.pair.models["large"]
        small = small_vlm.option_logits(to_density(ts, density), q.question, q.options)
        large = large_vlm.option_logits(to_density(tl, density), q.question, q.options)
        per_density = {a: large_vlm.option_logits(to_density(ts, a), q.question, q.options)
                       for a in DENSITIES if a <= ts.shape[1]} if shared else {}
        context = describe_tokens(small_vlm, ts, density, q.question) if shared else ContextInputs()
        seen = media_signals(m, KEYFRAME_SAMPLER) if signals else rec.signals
        out.append(Profiled(QueryRecord(q, rec.answer, rec.split, small, large, per_density, signals=seen), context,
                            int(ts.shape[0])))
    return out


def view_outcomes(interp: RealInterpreter, rec: QueryRecord, knobs: Any, tokens: int,
                  seed: int, all_views: bool = True) -> tuple[ViewOutcomes, Ledger]:
    """Seed 003's outcomes of one image query, for real: the large model on the global view (always
    locating its region of interest), with the attention crop, with random-crop's box, and on the
    full-resolution tiles, through the same effects the policies yield (in this process); and the
    ledger of that work (each stage's time under its key). What a recorded trace's view_* columns
    hold; the crop threshold is picked on the first two alone, so `all_views=False` skips the
    random and full views (NaN logits, 0 bytes)."""
    from testbed.crop import crop_side, random_box
    from testbed.policies.crop import view_steps

    q, media = rec.query, rec.query.media
    if not isinstance(media, ImageMeta):
        raise TestbedError(f"query {q.query_id}: seed 003's policies answer image queries, not videos")
    run = QueryRun(rec, 0)

    def edge(views: tuple[Payload, ...], locate: Locate | None = None) -> Inference:
        off = Offload(views, view_steps(views, q, tokens, locate))
        return run_sync(run_steps(off, lambda step: interp.perform(step, run, "edge")))

    g = interp.perform(Crop(media, "global", side=knobs.global_side), run)
    first = edge((g,), Locate(-1.0, knobs.crop_scale, media.width, media.height))  # always locate
    assert first.roi is not None
    c = interp.perform(Crop(media, "crop", first.roi), run)
    with_crop = edge((replace(g, held=True), c)).option_logits
    if not all_views:
        skipped = np.full_like(first.option_logits, np.nan)
        return ViewOutcomes(first.option_logits, with_crop, skipped, skipped, first.roi, g.nbytes, c.nbytes,
                            0), run.ledger
    side = crop_side(media.width, media.height, knobs.crop_scale)
    r = interp.perform(Crop(media, "crop", random_box(seed, q.query_id, media.width, media.height, side)), run)
    full = interp.perform(Crop(media, "full"), run)
    return ViewOutcomes(first.option_logits, with_crop, edge((replace(g, held=True), r)).option_logits,
                        edge((full,)).option_logits, first.roi, g.nbytes, c.nbytes, r.nbytes), run.ledger


def run_policy(sc: Scenario, spec: PolicySpec, ctx: PolicyContext, records: Sequence[QueryRecord],
               interp: RealInterpreter, mode: str, progress: Progress | None = None,
               clock: Callable[[], float] = time.perf_counter) -> tuple[list[dict], dict]:
    """Rows and totals of one policy over `records`, with the scenario's arrivals in real time."""
    schedule = arrival_schedule(records, sc.arrivals, sc.seed)
    runs: list[QueryRun] = []
    lock = threading.Lock()
    began = time.monotonic()  # where a shaped link's bandwidth traces are when this policy starts
    t0 = clock()

    def one(rec: QueryRecord, client: int) -> None:
        run = QueryRun(rec, client, clock() - t0)
        run.answer = run_sync(drive(spec.fn(rec.query, ctx), lambda e: interp.perform(e, run)))
        run.done_s = clock() - t0
        with lock:
            runs.append(run)
        if progress:
            progress(1)

    def closed(plan: ClientSchedule) -> None:
        for rec in plan.records:
            one(rec, plan.client)
            if plan.think_s:
                time.sleep(plan.think_s)

    def poisson(plan: ClientSchedule, pool: ThreadPoolExecutor) -> list:
        due, started = clock(), []
        for rec, gap in zip(plan.records, plan.gaps_s or ()):
            due += gap
            time.sleep(max(0.0, due - clock()))
            started.append(pool.submit(one, rec, plan.client))
        return started

    closed_loop = sc.arrivals.kind == "closed"
    with ThreadPoolExecutor(max_workers=len(schedule) if closed_loop else max(1, len(records))) as pool:
        if closed_loop:
            for f in [pool.submit(closed, plan) for plan in schedule]:
                f.result()
        else:
            with ThreadPoolExecutor(max_workers=len(schedule)) as dispatch:
                started = [dispatch.submit(poisson, plan, pool) for plan in schedule]
                for f in [f for d in started for f in d.result()]:
                    f.result()
    makespan = clock() - t0
    pending = [f for run in runs for f in run.futures.values()]
    cwait(pending)  # a query's row holds the work of every future it started
    rows = [run.row(spec.name, mode) for run in runs]
    totals = run_totals(spec.name, makespan, interp.edge.busy_s, sc.nodes.edge_gpus,
                        sum(r["bytes_up"] for r in rows), sum(r["bytes_down"] for r in rows))
    return rows, {**totals, "started_monotonic_s": began}


def run_real(sc: Scenario, workload: Workload, pair: VLMPair, mode: str = "inproc",
             link: EdgeLink | None = None, progress: Progress | None = None,
             note: Callable[[str], None] = note) -> RunResult:
    """Run every policy of `sc` for real on `workload`'s test split (all queries if it has none)."""
    notes = list(workload.notes) + list(pair.notes)
    if link is not None and sc.arrivals.clients > 1 and not sc.network.shared:
        notes.append(f"the {sc.arrivals.clients} clients share the one shaped link (network.shared = false is the "
                     "sim's per-client topology); `testbed fidelity` replays this run on a shared link")
    power = load_profile(sc.profile_path())  # before the real work: a bad path fails at once
    profile_split = workload.split("profile")
    test = workload.split("test") or workload.records
    density = sc.models.default_density
    edge = RealNode(pair, sc.nodes.edge_gpus, sc.nodes.chunk_frames)
    devices = [RealNode(pair, sc.nodes.local_gpus, sc.nodes.chunk_frames) for _ in range(sc.arrivals.clients)]
    skipped: set[str] = set()
    gap = pair.sharing_gap()
    for name in sc.policies.run:
        spec = resolve(name)
        if spec.uses_density and gap:
            notes.append(f"{name} skipped: it sends the small model's vision tokens to the large model, and {gap}")
            skipped.add(name)
        elif spec.needs_hindsight:
            notes.append(f"{name} skipped: it needs hindsight, which only trace-driven (sim) runs have")
            skipped.add(name)
        elif spec.agent and not profile_split:
            notes.append(f"{name} skipped: its density agent is fitted on the profiling split, which this workload "
                         "lacks")
            skipped.add(name)
        elif spec.images_only and any(not isinstance(r.query.media, ImageMeta) for r in test):
            notes.append(f"{name} skipped: it answers image queries, and this workload has videos")
            skipped.add(name)
        elif spec.router is not None and spec.router.needs_profile and not profile_split:
            notes.append(f"{name} skipped: its router is trained on the profiling split, which this workload lacks")
            skipped.add(name)
    ran = [p for p in sc.policies.run if p not in skipped]
    routers = [r for r in (resolve(p).router for p in ran) if r is not None]
    adaptive = any(resolve(p).agent for p in ran)
    profiled: list[Profiled] = []
    try:
        if profile_split:
            profiled = profile(profile_split, devices[0], edge, density, shared=adaptive,
                               signals=any(r.signals for r in routers))
            if any(r.views for r in routers):  # seed 003: the crop threshold is picked on the views' real outcomes
                knobs = sc.policies.knobs_for("entropy-crop")
                tokens = knobs.view_tokens or density
                interp = RealInterpreter(devices, edge, InProcEdge(), wire_dtype=sc.models.dtype)
                try:
                    profiled = [replace(p, record=replace(p.record, views=view_outcomes(
                        interp, p.record, knobs, tokens, sc.seed, all_views=False)[0])) for p in profiled]
                finally:
                    interp.close()
        profiled_records = [replace(p.record, context=p.context) for p in profiled]
        if profile_split or sc.calibration.file:
            calibration, source = scenario_calibration(sc, profiled_records)
        else:
            calibration, source = Calibration(1.0, 1.0), "none (no profiling queries)"
            notes.append("no profiling queries: calibration skipped (temperatures 1.0)")
        ex = Experiment(sc, calibration, profiled_records, lambda: [p.frames for p in profiled], {"mode": mode})
        for name in ran:
            spec, ctx = ex.prepare(name)
            for node in (edge, *devices):
                node.busy_s = 0.0
            interp = RealInterpreter(devices, edge, link or InProcEdge(), wire_dtype=sc.models.dtype)
            try:
                rows, totals = run_policy(sc, spec, ctx, test, interp, mode, progress)
            finally:
                interp.close()
            ex.finish(spec, ctx, rows, totals)
    finally:
        for node in (edge, *devices):
            node.close()
    energy_note = power.energy_note()
    notes.append(f"energy from profile {power.name}'s power model (" + (energy_note or "its figures") + "), applied "
                 "to the stage times measured here; not a measurement of this machine's power")
    for n in notes:
        note(n)
    benchmarks = list(dict.fromkeys(r.query.benchmark for r in workload.records))
    queries = ex.queries(benchmarks, power)
    report = calibration_report(calibration, profiled_records, "profile", f"{source}; in-sample: real runs keep "
                                "no test logits", sc.calibration.bins) \
        if profiled_records else None
    for warning in report.warnings() if report is not None else ():
        note(f"calibration: {warning}")
        notes.append(f"calibration: {warning}")
    return ex.result(queries, workload.provenance, f"measured ({mode}, models {pair.preset})", workload.parameters,
                     mode, notes, report, random_weights=pair.random_weights)


@contextlib.contextmanager
def live_link(sc: Scenario, preset: str, device: str, endpoint: str | None = None,
              note: Callable[[str], None] = note,
              curve: ClientCurve | None = None) -> Iterator[tuple[ZmqEdge, dict[str, Any]]]:
    """An EdgeLink to a running edge: `endpoint`'s (no shaping: the network is what it is), or an
    edge process this call starts on a link shaped as the scenario says, torn down on exit.
    Yields the link and what the run records about it (versions.json)."""
    from testbed.live.client import EdgeClient
    from testbed.live.errors import EdgeUnavailable
    from testbed.live.remote_edge import ZmqEdge, rate_split
    from testbed.live.shaping import LinkSpec, ShapedLink, load_trace

    net, lv = sc.network, sc.live
    split = rate_split(net.up_mbps, net.down_mbps)
    if endpoint:
        with EdgeClient(endpoint, timeout_s=lv.edge_timeout_s, curve=curve) as client:
            try:
                health = client.health(timeout_s=10.0)
            except EdgeUnavailable as exc:
                raise TestbedError(f"--edge {endpoint}: {exc}") from None
            yield ZmqEdge(client, lv.edge_timeout_s, split), {"shaping": "none (external edge)", "edge": endpoint,
                                                               "edge_health": dict(health.meta),
                                                               "curve": curve is not None}
        return
    spec = LinkSpec(net.up_mbps, net.down_mbps, net.rtt_ms, net.loss, net.efficiency, net.mtu,
                    up_trace=load_trace(sc.resolve_path(net.up_trace), net.trace_mean_mbps_up, net.mtu)
                    if net.up_trace else None,
                    down_trace=load_trace(sc.resolve_path(net.down_trace), net.trace_mean_mbps_down, net.mtu)
                    if net.down_trace else None, seed=sc.seed)
    with ShapedLink(spec, lv.shaping) as link:
        note(f"link shaping: {link.backend}" + (f" ({'; '.join(link.notes)})" if link.notes else ""))
        check = link.self_check() if lv.self_check else None
        if check is not None:
            for warning in check.warnings:
                note(f"link self-check: {warning}")
        with link.spawn_edge("testbed.live.handlers:probe", max_queue=lv.edge_max_queue, workers=sc.nodes.edge_gpus,
                             extra_args=["--models", preset, "--device", device], ready_timeout_s=600.0) as edge, \
                link.client(edge.endpoint, timeout_s=lv.edge_timeout_s) as client:
            client.health(timeout_s=30.0)
            yield ZmqEdge(client, lv.edge_timeout_s, split), {**link.manifest(check), "edge": edge.endpoint,
                                                               "edge_pid": edge.pid}
