"""`testbed runs [SCENARIO]`: the results folders under a root, each with what made it (mode, models,
workload) and its headline figure, newest last, so a reader finds a run without opening folders."""

from __future__ import annotations

import argparse
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from testbed.errors import TestbedError, did_you_mean


@dataclass(frozen=True)
class RunEntry:
    """One results folder, as `testbed runs` lists it."""

    folder: str
    mode: str
    models: str
    workload: str
    policies: str
    headline: str


MODES = ("sim", "live", "inproc")


def _percent(x: float) -> str:
    return f"{x:.1f}%"


def _hindsight(policy: str) -> bool:
    from testbed.errors import ConfigError
    from testbed.policies.registry import resolve

    try:
        return resolve(policy).needs_hindsight
    except ConfigError:
        return False


def headline(folder: Path) -> str:
    """The run's figure a reader looks for first: for query runs the most accurate and the fastest policy
    over all benchmarks (hindsight oracles left out); for streams the best Micro-F1; for sweeps and
    replications their size."""
    if (folder / "sweep.csv").is_file():
        table = pd.read_csv(folder / "sweep.csv")
        points = len(table.drop_duplicates([c for c in table.columns if c not in (
            "policy", "accuracy", "mean_s", "p50_s", "p95_s", "p99_s", "local_share", "mb_up_per_query")]))
        return f"sweep of {points} points (sweep.csv)"
    if (folder / "replications.csv").is_file():
        n = pd.read_csv(folder / "replications.csv")["n"].max()
        return f"{n} replications (replications.csv)"
    if not (folder / "summary.csv").is_file():
        return "(no summary)"
    s = pd.read_csv(folder / "summary.csv")
    if "micro_f1" in s:
        best = s.loc[s.micro_f1.idxmax()]
        return f"best Micro-F1 {best.micro_f1:.1f} ({best.policy}, {best.benchmark})"
    rows = s[s.benchmark == "all"] if (s.benchmark == "all").any() else s
    rows = rows[~rows.policy.map(_hindsight)]  # an oracle is a bound, not a result
    if rows.empty or "accuracy" not in rows:
        return "(no summary)"
    acc, fast = rows.loc[rows.accuracy.idxmax()], rows.loc[rows.mean_s.idxmin()]
    return (f"most accurate {acc.policy} {_percent(acc.accuracy)} ({acc.mean_s:.3g} s); "
            f"fastest {fast.policy} {fast.mean_s:.3g} s ({_percent(fast.accuracy)})")


def describe(folder: Path, root: Path) -> RunEntry:
    """What made the run in `folder` (its versions.json and resolved scenario.toml) and its headline."""
    versions: dict[str, Any] = {}
    scenario: dict[str, Any] = {}
    made = folder if (folder / "versions.json").is_file() else next(  # a sweep's or replications' first run
        (p for p in sorted(folder.iterdir()) if (p / "versions.json").is_file()), folder)
    if (made / "versions.json").is_file():
        versions = json.loads((made / "versions.json").read_text())
    if (made / "scenario.toml").is_file():
        try:
            scenario = tomllib.loads((made / "scenario.toml").read_text())
        except tomllib.TOMLDecodeError:
            scenario = {}
    models = scenario.get("models", {})
    suffix = folder.name.rsplit("-", 1)[-1]
    mode = str(versions.get("mode") or (suffix if suffix in MODES else "?"))
    if mode == "sim":
        what = f"profile {str(versions.get('profile', '?')).split(' (')[0]}"
    else:
        what = str(versions.get("models") or models.get("preset", "?"))
    workload = scenario.get("workload", {}).get("kind", "?")
    provenance = str(versions.get("workload", ""))
    if provenance:
        workload += " (SYNTHETIC)" if provenance.startswith("synthetic") else " (recorded)"
    policies = scenario.get("policies", {}).get("run", [])
    shown = ", ".join(policies[:3]) + (f" +{len(policies) - 3}" if len(policies) > 3 else "")
    return RunEntry(str(folder.relative_to(root)), mode, what, workload, shown, headline(folder))


def list_runs(root: Path, scenario: str | None = None) -> list[RunEntry]:
    """Every complete results folder under `root` (or `root/scenario`), oldest first by folder name."""
    if not root.is_dir():
        return []
    scenarios = [root / scenario] if scenario else sorted(p for p in root.iterdir() if p.is_dir())
    out = []
    for s in scenarios:
        for run in sorted(p for p in s.iterdir() if p.is_dir() and not p.name.startswith(".")) if s.is_dir() else ():
            if any((run / name).is_file() for name in ("versions.json", "summary.csv", "sweep.csv",
                                                       "replications.csv")):
                out.append(describe(run, root))
    return out


def cmd_runs(args: argparse.Namespace) -> int:
    from rich.table import Table

    from testbed.cli.ui import console as ui_console

    root = Path(args.out)
    if args.scenario and not (root / args.scenario).is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise TestbedError(f"no runs of {args.scenario!r} under {root}{did_you_mean(args.scenario, known)}"
                           + (f"; scenarios with runs: {', '.join(known)}" if known else ""))
    runs = list_runs(root, args.scenario)
    console = ui_console()
    if not runs:
        where = root / args.scenario if args.scenario else root
        console.print(f"no runs under {where} (testbed sim SCENARIO writes one)")
        return 0
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("run", "mode", "models", "workload", "policies", "headline"):
        table.add_column(col, overflow="fold")
    for r in runs:
        table.add_row(r.folder, r.mode, r.models, r.workload, r.policies, r.headline)
    console.print(table)
    return 0


def register(sub: Any) -> None:
    r = sub.add_parser("runs", help="list results folders: mode, models, workload, policies and headline figure")
    r.add_argument("scenario", nargs="?", help="only this scenario's runs (a folder under --out)")
    r.add_argument("--out", default="results", help="results root folder")
    r.set_defaults(fn=cmd_runs)
