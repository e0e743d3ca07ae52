"""Camera streams (seed 001) on the command line: `testbed sim` of a stream scenario (called from
cli/main.py's sim command when workload.kind is a stream kind), `testbed synth-streams` (write the
calibrated synthetic stream trace), `testbed fit-streams` (refit its parameters to Table 2) and
`testbed table1-reach` (how close edgeVLM's rule can come to Table 1 under any latency scanned)."""

from __future__ import annotations

import argparse
import contextlib
import re
from pathlib import Path
from typing import Any

from testbed.cli.ui import print_frame, progress_bar
from testbed.argtypes import COUNT, OUTPUT_FILE, SEED, Integer


def sim_streams(args: argparse.Namespace, sc: Any, console: Any, out: Path) -> int:
    """Simulate a stream scenario (every sweep point) and write its results folder."""
    import pandas as pd

    from testbed.sim.engine import load_streams, run_stream_scenario
    from testbed.profiles import load_profile
    from testbed.results import label
    from testbed.scenario import resolved_toml
    from testbed.streams import report

    points = sc.grid()
    total = sum(load_streams(p).frames * len(p.policies.run) for _, p in points)
    summaries: list[tuple[dict[str, Any], pd.DataFrame]] = []
    with progress_bar(console) as bar:
        task = bar.add_task(f"simulating {sc.name}", total=total, unit="frames")
        for i, (assignment, point) in enumerate(points):
            run = run_stream_scenario(point, lambda n: bar.advance(task, n), load_profile(point.profile_path()))
            summary = report.summarize_frames(run.queries)
            folder = out if len(points) == 1 else out / f"point-{i:03d}"
            folder.mkdir(exist_ok=True)
            report.write_stream_run(folder, point.name, point.description, resolved_toml(point), run, summary,
                                    point.seed)
            summaries.append((assignment, summary))
    data = label(run)
    if len(points) == 1:
        summary = summaries[0][1]
        cols = ["benchmark", "policy", "micro_f1", "macro_f1", "em", "accuracy", "lcr", "lhl_s", "lcr_band",
                "deadline_misses"]
        print_frame(console, summary[cols].dropna(axis=1, how="all"), f"{sc.name} - {data}", ".2f")
        print_frame(console, report.table2(summary), "By call-ratio band, as seed 001's Table 2 lays them out", ".2f")
        comparison = report.paper_comparison(summary)
        held = comparison[comparison.role == "held-out"] if len(comparison) else comparison
        if len(held):
            for fig, h in held.groupby("figure", sort=True):
                console.print(f"\nheld-out {fig} figures: mean |error| {h.error.abs().mean():.2f} points, "
                              f"max {h.error.abs().max():.2f} ({len(h)} figures; paper_comparison.csv)")
        for line in report.orderings(summary):
            console.print(("[green]" if line.startswith("PASS") else "[red]") + line)
    else:
        keys = list(sc.sweep)
        table = pd.concat([s.assign(**a) for a, s in summaries], ignore_index=True)
        table = table[[*keys, *[c for c in table.columns if c not in keys]]]
        table.to_csv(out / "sweep.csv", index=False)
        md = [f"# {sc.name} sweep", "", f"**Data:** {data}", "", report.format_table(table), ""]
        for key in keys:
            m = re.fullmatch(r"policies\.(.+)\.k_call", key)
            if m and len(keys) == 1:
                t1 = report.table1([(int(a[key]), s) for a, s in summaries], m.group(1))
                t1.to_csv(out / "table1.csv", index=False)
                (out / "table1.md").write_text(f"# LCR and LHL over K_call ({m.group(1)}) - {data}\n\n"
                                               "Next to seed 001's Table 1 (nuScenes, K_delay = 4).\n\n"
                                               + report.format_table(t1) + "\n")
                md += [f"## LCR and LHL over K_call ({m.group(1)}), next to seed 001's Table 1", "",
                       report.format_table(t1), ""]
                console.print(f"[bold]LCR and LHL over K_call[/bold] ({m.group(1)}) - {data}")
                console.print(report.format_table(t1))
        (out / "sweep.md").write_text("\n".join(md))
    console.print(f"\nresults: {args.folders.final(out)}")
    return 0


def live_streams(args: argparse.Namespace, sc: Any, console: Any) -> int:
    """Play generated videos in real time to the stream policies (real models, in one process),
    write the results folder with every frame's lateness, and record a stream trace the sim replays."""

    from testbed.cli.common import edge_link, stamp
    from testbed.notes import note
    from testbed.live.streams import CONTENTS, host_provenance, record_trace, run_streams_real
    from testbed.models.pair import make_pair
    from testbed.results import label
    from testbed.scenario import resolved_toml
    from testbed.streams import report
    from testbed.streams.trace import table_to_streams, to_table, write_stream_trace

    pair = make_pair(sc.model_pair(), sc.models.device)
    mode = "inproc" if args.inproc else "live"
    out = args.folders.new(Path(args.out), sc.name, stamp(mode))
    frames = int(round(sc.stream.seconds * sc.stream.fps)) * sc.stream.live_streams * len(sc.policies.run)
    notes: list[str] = []
    extra: dict[str, Any] = {"models": pair.preset, "device": sc.models.device}
    with contextlib.ExitStack() as stack:
        link, where = edge_link(stack, console, sc, args, extra)
        with progress_bar(console) as bar:
            task = bar.add_task(f"playing {sc.name} in real time {where}", total=frames, unit="frames")
            run, played = run_streams_real(sc, pair, out, mode, lambda n: bar.advance(task, n), notes.append,
                                           link=link)
    for text in notes:
        note(text)
    summary = report.summarize_frames(run.queries)
    report.write_stream_run(out, sc.name, sc.description, resolved_toml(sc, live=True), run, summary, sc.seed,
                            extra)
    late = report.lateness(run.queries)
    late.to_csv(out / "lateness.csv", index=False)
    console.print(f"[bold]{sc.name}[/bold] - {label(run)}")
    console.print(report.format_table(summary[["policy", "accuracy", "lcr", "lhl_s", "large_share",
                                               "deadline_misses"]], ".3f"))
    console.print("\n[bold]Local path against each frame's deadline[/bold] (lateness < 0: early)")
    console.print(report.format_table(late, ".3f"))
    console.print("recording a stream trace (every frame through both models, offline) ...")
    trace = record_trace(pair, played, sc.models.default_density,
                         threads=sc.stream.cpu_threads if sc.models.device == "cpu" else 0)
    provenance = host_provenance(pair, mode)
    content = CONTENTS[sc.stream.content]
    params = {"fps": sc.stream.fps, "seconds": sc.stream.seconds, "generator": content.generator,
              "note": f"{content.note}; cloud_s measured "
                      f"{'in one process (no network)' if mode == 'inproc' else 'at the edge process'}"}
    final = args.folders.final(out)
    # the frames' paths as they will be once the folder is renamed into place
    trace["path"] = [str(final / Path(p).relative_to(out)) if Path(p).is_relative_to(out) else p for p in trace.path]
    table_to_streams(to_table(trace, provenance, params))  # validates before writing
    write_stream_trace(trace, out / "stream_trace.parquet", provenance, params)
    console.print(f"stream trace: {final / 'stream_trace.parquet'} (replay it: workload.kind = 'stream-trace')")
    console.print(f"\nresults: {final}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from testbed.streams.synthetic import synthetic_streams
    from testbed.streams.trace import write_stream_trace

    frame, provenance, params = synthetic_streams(tuple(args.datasets), args.seed, args.streams)
    write_stream_trace(frame, Path(args.out), provenance, params)
    print(f"wrote {len(frame)} frames of {frame.stream_id.nunique()} streams to {args.out} ({provenance})")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    import pandas as pd

    from testbed.report import format_table
    from testbed.streams.fit import MULTI, SINGLE, fit_spec
    from testbed.streams.synthetic import SPECS

    for name in args.datasets:
        spec, table = fit_spec(SPECS[name], args.seed, args.max_evals)
        names = MULTI if spec.task == "multi-label" else SINGLE
        print(f"{name}: " + ", ".join(f"{n}={getattr(spec, n):.4g}" for n in names))
        print(format_table(pd.DataFrame(table)))
    return 0


def _cmd_table1_reach(args: argparse.Namespace) -> int:
    from testbed.report import format_table
    from testbed.streams.synthetic import FRESHNESS
    from testbed.streams.table1 import LENGTHS, reach, search

    scan = reach(args.streams, args.seed)
    cols = ["freshness", "lengths", "max_lcr_err_%", "max_lhl_err_%", "max_err_%"]
    print(f"Table 1 (seed 001) against edgeVLM's rule (K_delay 4, 1 FPS, {args.streams} streams) under "
          f"{len(scan) // (len(FRESHNESS) * len(LENGTHS))} latency processes; the closest per reading and stream "
          "length:\n")
    print(format_table(scan.groupby(["freshness", "lengths"], as_index=False)[cols[2:]].min()))
    for what in ("max_lcr_err_%", "max_lhl_err_%", "max_err_%"):
        best = scan.sort_values(what).iloc[0]
        print(f"\nsmallest {what}: {best.freshness} reading, {best.lengths}, {best.family}: {best.latency}\n"
              f"  LCR errors (%) K_call 1-9: {best['lcr_errs_%']}\n  LHL errors (%) K_call 1-9: {best['lhl_errs_%']}")
    if args.search:
        print("\nsearched (reply reading, differential evolution over whole-frame latency distributions):")
        for mixture in (False, True):
            for length in LENGTHS:
                r = search(mixture, length, args.streams, args.seed)
                print(f"\n{r['family']}, {length}: smallest worst error {r['max_err_%']:.1f}% "
                      f"({r['evaluations']} processes tried), at {r['latency']}\n"
                      f"  LCR errors (%) K_call 1-9: {r['lcr_errs_%']}\n  LHL errors (%) K_call 1-9: {r['lhl_errs_%']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        scan.to_csv(args.out, index=False)
        print(f"\nevery process, reading and stream length: {args.out}")
    return 0


def register(sub: Any) -> None:
    from testbed.streams.specs import DATASETS

    g = sub.add_parser("synth-streams", help="write the calibrated synthetic stream trace (seed 001) as Parquet")
    g.add_argument("out", type=OUTPUT_FILE)
    g.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    g.add_argument("--seed", type=SEED, default=0)
    g.add_argument("--streams", type=Integer(0), default=0, help="streams per dataset (0: the dataset's own count)")
    g.set_defaults(fn=_cmd_synth)
    f = sub.add_parser("fit-streams", help="fit the synthetic streams' model parameters to seed 001's calibration "
                                           "rows (Table 2: SVLM-only, LVLM-only, edgeVLM at 20-30%%)")
    f.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    f.add_argument("--seed", type=SEED, default=1, help="seed of the draws fitted on (results are reported on 0)")
    f.add_argument("--max-evals", type=COUNT, default=300)
    f.set_defaults(fn=_cmd_fit)
    t = sub.add_parser("table1-reach", help="scan cloud latency processes for how close edgeVLM's keyframe rule can "
                                            "come to seed 001's Table 1 (LCR, LHL over K_call), per reading")
    t.add_argument("--streams", type=Integer(1), default=156, help="nuScenes-like streams per process (156)")
    t.add_argument("--seed", type=SEED, default=0, help="seed of the latency draws and stream lengths")
    t.add_argument("--out", type=OUTPUT_FILE, help="write every scanned (process, reading, stream length)'s "
                                                   "errors to this CSV")
    t.add_argument("--search", action="store_true", help="also search every i.i.d. latency distribution and every "
                                                         "mixture of two per stream (reply reading; ~7 min)")
    t.set_defaults(fn=_cmd_table1_reach)
