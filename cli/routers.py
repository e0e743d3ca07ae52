"""Router commands: `testbed calibrate` (temperatures, ECE and a reliability diagram from a trace,
and the calibration file a scenario may name), `testbed synth-image` (seed 002's calibrated
synthetic image-QA trace), `testbed fit-inarvl` (refit its small-model accuracy to seed 002's
97%) and `testbed sweep-threshold` (a routing policy's accuracy against mean delay over its
threshold, the picked point marked). A user error is one line and exit code 2 (cli.main)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from testbed.argtypes import INPUT_FILE, OUTPUT_DIR, OUTPUT_FILE, SEED, Integer, Number


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import pandas as pd

    from testbed import report
    from testbed.router.calibration import (
        calibration_report,
        fit_calibration,
        save_calibration,
    )
    from testbed.traces import read_trace

    path = Path(args.trace)
    wl = read_trace(path)
    fit_on, measure_on = wl.split("profile"), wl.split("test")
    notes = []
    if not fit_on:
        fit_on = wl.records
        notes.append("the trace has no profiling split: temperatures fitted on every query")
    if not measure_on:
        measure_on = wl.records
        notes.append("the trace has no test split: ECE measured on the queries the temperatures were fitted on")
    split = "test" if wl.split("test") else "all"
    cal = fit_calibration(fit_on)
    rep = calibration_report(cal, measure_on, split, f"fitted on {len(fit_on)} queries of {path.name}", args.bins)
    stem = path.name[: -len(".parquet")] if path.name.endswith(".parquet") else path.name
    out = Path(args.out) if args.out else path.with_name(f"{stem}.calibration.json")
    save_calibration(out, rep, {"trace": str(path), "provenance": wl.provenance, "fitted_on": len(fit_on),
                                "measured_on": len(measure_on), "split": split})
    plot = out.with_suffix(".png") if out.suffix == ".json" else out.with_name(out.name + ".png")
    kind = "SYNTHETIC" if wl.synthetic else "recorded"
    report.plot_reliability(rep, plot, f"{path.name} - {kind} ({wl.provenance})")
    table = pd.DataFrame(rep.table()).drop(columns=["bins", "split"])
    print(f"{path.name} ({kind}: {wl.provenance}): temperatures fitted on {len(fit_on)} queries; ECE "
          f"({args.bins} equal-width bins) before and after scaling on the {split} split ({len(measure_on)} queries)")
    from testbed.notes import note

    for text in notes:
        note(text)
    print(report.format_table(table, ".4g"))
    print(f"wrote {out} (name it in a scenario: [calibration] file = \"{out}\") and {plot}")
    return 0


def _cmd_synth_image(args: argparse.Namespace) -> int:
    from testbed.traces import write_trace
    from testbed.workload.synthetic_image import synthetic_image_workload

    frame, provenance, params = synthetic_image_workload(args.queries, args.seed)
    write_trace(frame, Path(args.out), provenance, params)
    print(f"wrote {len(frame)} image queries to {args.out} ({provenance})")
    return 0


def _cmd_fit_inarvl(args: argparse.Namespace) -> int:
    from testbed.workload.synthetic_image import (
        VQA_LIKE,
        fit_small_accuracy,
        routed_accuracy_ratio,
    )

    acc, ratio = fit_small_accuracy(args.target_accuracy, args.share, args.queries, tuple(args.seeds))
    print(f"small-model accuracy {acc:.3f}: input-aware at {100 * args.share:.0f}% local keeps {100 * ratio:.2f}% of "
          f"edge-only accuracy (mean over workload seeds {', '.join(map(str, args.seeds))}, {args.queries} queries "
          f"each); the shipped spec has {VQA_LIKE.acc_small:.3f}")
    for seed in args.check_seeds:
        share, r = routed_accuracy_ratio(args.queries, seed, acc, args.share)
        print(f"  seed {seed} (held out of the fit): local share {100 * share:.1f}%, accuracy {100 * r:.2f}%")
    return 0


def _cmd_sweep_threshold(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from testbed.cli.common import scenario_from_args, stamp
    from testbed.sim.engine import (
        load_workload,
        policy_context,
        scenario_calibration,
        simulate_policy,
    )
    from testbed import report
    from testbed.energy import add_energy
    from testbed.errors import ConfigError
    from testbed.policies.base import route_scores
    from testbed.policies.registry import resolve
    from testbed.profiles import load_profile
    from testbed.router.threshold import tau_for_share
    from testbed.scenario import with_overrides

    sc = scenario_from_args(argparse.Namespace(scenario=args.scenario, seed=args.seed, queries=args.queries))
    name = args.policy
    spec = resolve(name, "--policy")
    if spec.router is None:
        raise ConfigError("--policy", f"{name} has no routing threshold; routing policies: input-aware, quickgrasp*, "
                                      "nosharing, uncalibrated-fixed<a>")
    if name not in sc.policies.run:
        sc = with_overrides(sc, {"policies.run": [*sc.policies.run, name]})
    wl = load_workload(sc)
    profile = load_profile(sc.profile_path())
    prof = wl.split("profile")
    test = wl.split("test") or wl.records
    calibration, _ = scenario_calibration(sc, prof)
    base = policy_context(sc, name, calibration, prof)
    scores = route_scores(spec, base.state, prof)
    taus = sorted({min(1.0, tau_for_share(scores, s)) for s in np.linspace(0.0, 1.0, args.points)})

    def run(point: Any, tau: float, picked: bool) -> dict[str, Any]:
        ctx = policy_context(point, name, calibration, prof)
        rows, _ = simulate_policy(point, profile, spec, ctx, test)
        q = add_energy(pd.DataFrame(rows), profile)
        return {"policy": name, "tau_route": tau, "picked": picked,
                "local_share": float((q.served_by == "local").mean()),
                "accuracy": float(q.correct.mean() * 100), "mean_s": float(q.delay_s.mean()),
                "energy_j_per_query": float(q.energy_j.mean())}

    knob = f"policies.{name}"
    off = {f"{knob}.target_local_share": 0.0, f"{knob}.target_accuracy": 0.0}
    table = pd.DataFrame([run(with_overrides(sc, {**off, f"{knob}.tau_route": t}), t, False) for t in taus])
    picked_tau = base.tau_route
    picked = pd.DataFrame([run(sc, picked_tau, True)])
    out = args.folders.new(Path(args.out), f"{sc.name}-sweep-threshold", stamp("sim"))
    both = pd.concat([table, picked], ignore_index=True)
    both.to_csv(out / "threshold_sweep.csv", index=False)
    knobs = sc.policies.knobs_for(name)
    how = (f"picked for target local share {knobs.target_local_share:g}" if knobs.target_local_share > 0 else
           f"picked for target accuracy {knobs.target_accuracy:g}" if knobs.target_accuracy > 0 else "tau_route")
    title = f"{sc.name}: {name} over tau_route ({how}) - {label_of(wl.provenance, profile)}"
    report.plot_threshold_sweep(table, picked, out / "threshold_sweep.png", title)
    print(report.format_table(both, ".4g"))
    print(f"{name}: tau_route {picked_tau:.4g} ({how}) gives local share {picked.local_share.iloc[0]:.3f}, accuracy "
          f"{picked.accuracy.iloc[0]:.2f}% on the test split")
    print(f"results: {args.folders.final(out)}")
    return 0


def label_of(provenance: str, profile: Any) -> str:
    kind = "SYNTHETIC workload" if provenance.startswith("synthetic:") else "recorded workload"
    return f"{kind} ({provenance}); profile {profile.name}"


def register(sub: Any) -> None:
    """Add the router commands to the `testbed` parser's subparsers (imports nothing heavy)."""
    c = sub.add_parser("calibrate", help="fit temperatures on a trace's profiling split, print each model's ECE "
                                         "before and after scaling per benchmark, write a calibration file and a "
                                         "reliability diagram")
    c.add_argument("trace", type=INPUT_FILE, help="a workload trace (Parquet)")
    c.add_argument("--out", type=OUTPUT_FILE,
                   help="the calibration file (default: TRACE's name with .calibration.json; the diagram "
                        "beside it as .png)")
    c.add_argument("--bins", type=Integer(2, 100), default=15,
                   help="equal-width confidence bins of the ECE (default 15)")
    c.set_defaults(fn=_cmd_calibrate)
    s = sub.add_parser("synth-image", help="write seed 002's calibrated synthetic image-QA workload as a trace")
    s.add_argument("out", type=OUTPUT_FILE)
    s.add_argument("--queries", type=Integer(10), default=5000)
    s.add_argument("--seed", type=SEED, default=0)
    s.set_defaults(fn=_cmd_synth_image)
    f = sub.add_parser("fit-inarvl", help="refit the synthetic image workload's small-model accuracy so that "
                                          "input-aware keeps seed 002's 97%% of edge-only accuracy at 36%% local")
    f.add_argument("--queries", type=Integer(10), default=5000, help="queries per workload seed")
    f.add_argument("--seeds", type=SEED, nargs="+", default=[1000, 1001, 1002, 1003, 1004])
    f.add_argument("--check-seeds", type=SEED, nargs="*", default=[0, 1, 2], help="seeds to report the fit on")
    f.add_argument("--share", type=Number(ge=0.0, le=1.0), default=0.36)
    f.add_argument("--target-accuracy", type=Number(gt=0.0, le=1.0), default=0.97,
                   help="accuracy relative to edge-only")
    f.set_defaults(fn=_cmd_fit_inarvl)
    w = sub.add_parser("sweep-threshold", help="simulate a routing policy over its threshold; plot accuracy "
                                               "against mean delay with the picked threshold marked")
    w.add_argument("scenario", help="name in scenarios/ or a .toml path")
    w.add_argument("--policy", required=True, help="a routing policy (input-aware, quickgrasp-fixed16, ...)")
    w.add_argument("--points", type=Integer(2, 1000), default=11,
                   help="thresholds: those keeping 0%%, 10%%, ... 100%% of the profiling queries local")
    w.add_argument("--seed", type=SEED, help="override the scenario's seed")
    w.add_argument("--queries", type=Integer(10), help="override workload.queries_per_benchmark")
    w.add_argument("--out", type=OUTPUT_DIR, default="results", help="results root folder")
    w.set_defaults(fn=_cmd_sweep_threshold)
