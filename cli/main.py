"""`testbed` command line, the composition root: it wires the core (testbed/) to the sim (sim/)
or to real runs (live/). Subcommands import what they need lazily, so `testbed keys` stays fast.
A user error prints one line and exits with code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from testbed.errors import TestbedError


def _cmd_sim(args: argparse.Namespace) -> int:
    import pandas as pd
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sim.engine import load_workload, run_scenario
    from testbed import report
    from testbed.profiles import load_profile
    from testbed.results import label, new_run_dir, write_run
    from testbed.scenario import resolved_toml

    console = Console(width=max(140, Console().width))
    sc = _scenario(args)
    points = sc.grid()
    out = new_run_dir(Path(args.out), sc.name, _stamp())
    total = 0
    for _, point in points:
        wl = load_workload(point)
        total += len(wl.split("test") or wl.records) * len(point.policies.run)
    rows = []
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(f"simulating {sc.name}", total=total)
        for i, (assignment, point) in enumerate(points):
            profile = load_profile(point.profile_path())
            run = run_scenario(point, lambda n: bar.advance(task, n), profile)
            summary = report.summarize(run.queries, point.policies.baselines)
            comparison = report.paper_comparison(summary) if point.paper_comparison else None
            folder = out if len(points) == 1 else out / f"point-{i:03d}"
            folder.mkdir(exist_ok=True)
            write_run(folder, point.name, point.description, resolved_toml(point), run, summary, comparison,
                      point.seed)
            rows.append(summary.assign(**{k: v for k, v in assignment.items()}))
            for note in report.saturation_notes(run.totals, run.queries):
                console.print(f"[yellow]warning:[/yellow] {note}" + (f" ({assignment})" if assignment else ""))
            if len(points) == 1:
                _print_summary(console, summary, point.policies.baselines, label(run))
                if comparison is not None:
                    console.print("\n[bold]Measured vs seed 000[/bold] (QuickGrasp = quickgrasp-fixed16)")
                    console.print(report.format_table(comparison))
    if len(points) > 1:
        keys = list(sc.sweep)
        table = pd.concat(rows, ignore_index=True)
        table = table[table.benchmark == report.ALL][[*keys, "policy", "accuracy", "mean_s", "p50_s", "p95_s",
                                                      "p99_s", "local_share", "mb_up_per_query"]]
        table.to_csv(out / "sweep.csv", index=False)
        (out / "sweep.md").write_text(f"# {sc.name} sweep\n\n**Data:** {label(run)}\n\n"
                                      + report.format_table(table) + "\n")
        report.plot_sweep(table, keys, out / "sweep.png", f"{sc.name} sweep - {label(run)}")
        console.print(f"[bold]{sc.name}[/bold] sweep over {', '.join(keys)} - {label(run)}")
        console.print(report.format_table(table))
    console.print(f"\nresults: {out}")
    return 0


def _cmd_live(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from testbed import report
    from testbed.errors import ConfigError
    from testbed.results import label, new_run_dir, write_run
    from testbed.scenario import resolved_toml, with_overrides

    console = Console(width=max(140, Console().width))
    sc = _scenario(argparse.Namespace(**{**vars(args), "queries": None}))
    if sc.sweep:
        raise ConfigError("sweep", "real runs take one point; run the sweep in the sim (testbed sim) or drop [sweep]")
    overrides = {k: v for k, v in (("models.preset", args.models), ("models.device", args.device)) if v}
    if overrides:
        sc = with_overrides(sc, overrides)
    if not args.inproc:
        raise ConfigError("", "live mode over a ZeroMQ link is not available yet; run in one process with --inproc")
    from live.run import load_media_workload, run_real
    from testbed.models.pair import make_pair

    workload = load_media_workload(sc, args.queries)
    pair = make_pair(sc.models.preset, sc.models.device)
    ran = [p for p in sc.policies.run if p != "oracle"]
    total = len(workload.split("test") or workload.records) * len(ran)
    notes: list[str] = []
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(f"running {sc.name} in one process", total=total)
        run = run_real(sc, workload, pair, "inproc", progress=lambda n: bar.advance(task, n), note=notes.append)
    for n in notes:
        console.print(f"[yellow]note:[/yellow] {n}")
    out = new_run_dir(Path(args.out), sc.name, _stamp())
    baselines = [b for b in sc.policies.baselines if b in set(run.queries.policy)]
    summary = report.summarize(run.queries, baselines)
    write_run(out, sc.name, sc.description, resolved_toml(replace(sc)), run, summary, None, sc.seed,
              {"models": pair.preset, "device": sc.models.device})
    _print_summary(console, summary, baselines, label(run))
    console.print(f"\nresults: {out}")
    return 0


def _stamp() -> str:
    import datetime

    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def _scenario(args: argparse.Namespace):
    """The scenario named on the command line, with --seed and --queries applied."""
    from testbed.scenario import load_scenario, with_overrides

    sc = load_scenario(args.scenario)
    overrides: dict[str, object] = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.queries is not None:
        overrides["workload.queries_per_benchmark"] = args.queries
    return with_overrides(sc, overrides) if overrides else sc


def _print_summary(console, summary, baselines: Sequence[str], data_label: str) -> None:
    from rich.table import Table

    for bench in dict.fromkeys(summary.benchmark):
        t = Table(title=f"{bench} - {data_label}", title_justify="left")
        cols = ["policy", "acc %", "mean s", "p50 s", "p95 s", "p99 s", "local", "MB up/q",
                *[f"x vs {b}" for b in baselines]]
        for c in cols:
            t.add_column(c, justify="left" if c == "policy" else "right", no_wrap=c == "policy")
        for r in summary[summary.benchmark == bench].to_dict("records"):
            t.add_row(r["policy"], f"{r['accuracy']:.1f}", f"{r['mean_s']:.3f}", f"{r['p50_s']:.3f}",
                      f"{r['p95_s']:.3f}", f"{r['p99_s']:.3f}", f"{r['local_share']:.2f}",
                      f"{r['mb_up_per_query']:.2f}", *[f"{r[f'speedup_vs_{b}']:.2f}" for b in baselines])
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
        print(f"ok  {p}  ({len(sc.grid())} point{'s' if len(sc.grid()) > 1 else ''})")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from testbed.traces import write_trace
    from testbed.workload.synthetic import synthetic_workload

    frame, provenance, params = synthetic_workload(tuple(args.benchmarks), args.queries, args.seed)
    write_trace(frame, Path(args.out), provenance, params)
    print(f"wrote {len(frame)} queries to {args.out} ({provenance})")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from testbed.bandwidth import cooked_to_mahimahi, mean_mbps, read_cooked, scale_to_mean, write_mahimahi

    t, r = read_cooked(Path(args.input))
    stamps = cooked_to_mahimahi(t, r, args.scale)
    if args.mean_mbps:
        stamps = scale_to_mean(stamps, args.mean_mbps)
    write_mahimahi(stamps, Path(args.output))
    print(f"wrote {args.output}: {len(stamps)} opportunities over {stamps[-1] / 1000:.1f} s, "
          f"mean {mean_mbps(stamps):.3f} Mbit/s")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    import tomli_w

    from sim.fit import fit
    from testbed.profiles import profile_to_dict
    from testbed.report import format_table
    from testbed.scenario import load_scenario

    sc = load_scenario(args.scenario)
    profile, table = fit(sc, args.per_benchmark, args.max_evals)
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
    for note in notes:
        print(f"testbed: warning: {note}", file=sys.stderr)
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
    from testbed.config import field_help
    from testbed.scenario import Scenario

    from testbed.policies.registry import FIXED, PER_DENSITY

    rows = field_help(Scenario)
    # each policy's knobs, in [policies.<name>] (density families share their knobs type)
    specs = {**FIXED, **{f"{prefix}-fixed<a>": make(16) for prefix, make in PER_DENSITY.items()}}
    for name, spec in specs.items():
        rows += field_help(spec.knobs, f"policies.{name}.")
    for key, tp, default, text in rows:
        print(f"{key:40} {tp:28} default {default:20} {text}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="testbed", description="Device-edge collaborative VLM inference testbed")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sim", help="simulate a scenario and write results/<scenario>/<timestamp>/")
    s.add_argument("scenario", nargs="?", default="default", help="name in scenarios/ or a .toml path")
    s.add_argument("--seed", type=int, help="override the scenario's seed")
    s.add_argument("--queries", type=int, help="override workload.queries_per_benchmark")
    s.add_argument("--out", default="results", help="results root folder")
    s.set_defaults(fn=_cmd_sim)
    v = sub.add_parser("validate", help="validate scenario files (all of scenarios/ by default)")
    v.add_argument("scenarios", nargs="*")
    v.set_defaults(fn=_cmd_validate)
    g = sub.add_parser("synth", help="write the calibrated synthetic workload as a Parquet trace")
    g.add_argument("out")
    g.add_argument("--queries", type=int, default=1000, help="queries per benchmark")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--benchmarks", nargs="+", default=["mvbench", "videomme", "mlvu"])
    g.set_defaults(fn=_cmd_synth)
    c = sub.add_parser("convert-trace", help="cooked (time_s, Mbit/s) bandwidth trace -> mahimahi")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--scale", type=float, default=1.0, help="multiply every rate")
    c.add_argument("--mean-mbps", type=float, default=0.0, help="rescale to this mean rate")
    c.set_defaults(fn=_cmd_convert)
    f = sub.add_parser("fit-profile", help="fit the paper-fitted hardware profile to seed 000's figures")
    f.add_argument("--scenario", default="default")
    f.add_argument("--out", default="traces/profiles/paper-fitted.toml")
    f.add_argument("--per-benchmark", type=int, default=150, help="test queries per benchmark in each fit step")
    f.add_argument("--max-evals", type=int, default=150)
    f.set_defaults(fn=_cmd_fit)
    t = sub.add_parser("tokenize", help="sample, decode, preprocess and encode one video; print stage times")
    t.add_argument("video")
    t.add_argument("--sampler", choices=["keyframe", "fps", "uniform"], default="keyframe")
    t.add_argument("--count", type=int, default=16, help="frames for --sampler uniform")
    t.add_argument("--encoder", default="tiny", help="tiny, real-size, or a local checkpoint folder")
    t.add_argument("--device", default="cpu")
    t.add_argument("--sequential", action="store_true", help="decode, then preprocess, then encode")
    t.add_argument("--chunk", type=int, default=16, help="frames per pipeline chunk")
    t.add_argument("--threads", type=int, default=0, help="decoder threads (0: decord's default)")
    t.set_defaults(fn=_cmd_tokenize)
    lv = sub.add_parser("live", help="run a scenario for real (real decoding, models and codec) and write "
                                     "results/<scenario>/<timestamp>/")
    lv.add_argument("scenario", nargs="?", default="default", help="name in scenarios/ or a .toml path")
    lv.add_argument("--inproc", action="store_true", help="run the edge's steps in this process, with no network")
    lv.add_argument("--seed", type=int, help="override the scenario's seed")
    lv.add_argument("--queries", type=int, help="queries per benchmark (a synthetic workload makes this many "
                                                "clips per class; default 8)")
    lv.add_argument("--out", default="results", help="results root folder")
    lv.add_argument("--models", help="override models.preset: tiny, real-size or a model-pair folder")
    lv.add_argument("--device", help="override models.device: cpu, cuda, ...")
    lv.set_defaults(fn=_cmd_live)
    k = sub.add_parser("keys", help="list every scenario key with its type, default and help")
    k.set_defaults(fn=_cmd_keys)
    __import__("cli.pocket", fromlist=["register"]).register(sub)  # train-pocket, pocket-eval, pocket-workload
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except TestbedError as exc:
        print(f"testbed: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
