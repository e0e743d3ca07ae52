"""The results folder of a run: results/<scenario>/<timestamp>/ with per-query Parquet, summary
CSV and Markdown, plots, the resolved scenario and package versions."""

from __future__ import annotations

import datetime as _dt
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tomli_w

from sim.engine import RunResult
from testbed import report
from testbed.config import to_dict
from testbed.scenario import Scenario

PACKAGES = ("vlm-edge-testbed", "simpy", "numpy", "scipy", "pandas", "pyarrow", "matplotlib", "torch")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def new_run_dir(root: Path, scenario: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / scenario / stamp
    n = 1
    while path.exists():
        path = root / scenario / f"{stamp}-{n}"
        n += 1
    path.mkdir(parents=True)
    return path


def label(run: RunResult) -> str:
    kind = "SYNTHETIC workload" if run.provenance.startswith("synthetic:") else "recorded workload"
    return f"{kind} ({run.provenance}); profile {run.profile}"


def write_queries(path: Path, q: pd.DataFrame, provenance: str, extra: dict[str, Any]) -> None:
    table = pa.Table.from_pandas(q, preserve_index=False)
    meta = {b"testbed.provenance": provenance.encode(), b"testbed.run": json.dumps(extra, default=str).encode()}
    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}), path)


def scenario_toml(sc: Scenario) -> str:
    """The scenario as run, every default filled in and every path absolute, so it reruns as is."""
    data = to_dict(sc)
    data.pop("base_dir", None)
    data["nodes"]["profile"] = str(sc.profile_path())
    for table, key in (("network", "up_trace"), ("network", "down_trace"), ("workload", "path")):
        if data[table][key]:
            data[table][key] = str(sc.resolve_path(data[table][key]))
    return tomli_w.dumps(data)


def write_run(out: Path, sc: Scenario, run: RunResult, summary: pd.DataFrame,
              comparison: pd.DataFrame | None) -> None:
    """Everything a reader needs to trust and redo one run."""
    title = f"{sc.name} - {label(run)}"
    write_queries(out / "queries.parquet", run.queries, run.provenance,
                  {"scenario": sc.name, "seed": sc.seed, "calibration": run.calibration})
    summary.to_csv(out / "summary.csv", index=False)
    md = [f"# {sc.name}", "", f"{sc.description}", "", f"**Data:** {label(run)}", "",
          f"Calibration: small T = {run.calibration.small_t:.3f}, large T = {run.calibration.large_t:.3f} "
          "(fitted on the profiling split)", "", report.format_table(summary), ""]
    md += [f"**Warning:** {n}" for n in report.saturation_notes(run.totals, run.queries)]
    if comparison is not None and len(comparison):
        md += ["## Measured vs seed 000", "", "QuickGrasp is `quickgrasp-fixed16` (the paper's adaptive density "
               "comes with the bandit).", "", report.format_table(comparison), ""]
    (out / "summary.md").write_text("\n".join(md))
    (out / "scenario.toml").write_text(scenario_toml(sc))
    (out / "versions.json").write_text(json.dumps({**versions(), "workload": run.provenance,
                                                   "profile": run.profile}, indent=2))
    run.totals.to_csv(out / "totals.csv", index=False)
    report.plot_delay_cdf(run.queries, out / "delay_cdf.png", title)
    report.plot_breakdown(run.queries, out / "delay_breakdown.png", title)
    report.plot_tradeoff(summary, out / "accuracy_vs_delay.png", title)
