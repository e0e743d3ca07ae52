"""What a run produces, the same for every interpreter: its result (RunResult, with the artifacts
the papers' modules register) and the results folder results/<scenario>/<stamp>-<mode>/ it is
written to. The per-query accounting is testbed/ledger.py."""

from __future__ import annotations

import functools
import json
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import pandas as pd

from testbed.bandit.ope import DecisionLog
from testbed.bandit.profiling import Profiling
from testbed.router.calibration import Calibration, CalibrationReport
from testbed.artifacts import Artifact, write_sections


@dataclass(frozen=True)
class RunResult:
    """Per-query rows of every policy, run totals, and what the run was made from; for
    adaptive-density policies, each one's decision log and the profiling fit they started from."""

    queries: pd.DataFrame
    totals: pd.DataFrame
    provenance: str
    profile: str
    calibration: Calibration
    parameters: dict[str, Any]
    mode: str = "sim"
    notes: tuple[str, ...] = ()
    logs: dict[str, DecisionLog] = field(default_factory=dict)
    profiling: Profiling | None = None
    calibration_report: CalibrationReport | None = None
    artifacts: tuple[Artifact, ...] = ()  # what the policies' families add (testbed.artifacts), by kind
    random_weights: bool = False  # a real run on random-init models: its answers are noise

    def rows_of(self, kind: str) -> tuple[dict[str, Any], ...]:
        """The rows of the artifact of this kind (none if no policy added one)."""
        return next((a.rows for a in self.artifacts if a.kind == kind), ())


def order_rows(rows: list[dict[str, Any]], policies: Sequence[str], benchmarks: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by policy (scenario order), benchmark (workload order), then submit time."""
    queries = pd.DataFrame(rows)
    if queries.empty:
        return queries
    rank_policy = {p: i for i, p in enumerate(policies)}
    rank_bench = {b: i for i, b in enumerate(benchmarks)}
    queries = (queries.assign(_p=queries.policy.map(rank_policy), _b=queries.benchmark.map(rank_bench))
               .sort_values(["_p", "_b", "submit_s"], kind="stable").drop(columns=["_p", "_b"]))
    return queries.reset_index(drop=True)


PACKAGES = ("vlm-edge-testbed", "simpy", "numpy", "scipy", "pandas", "pyarrow", "matplotlib", "torch",
            "transformers", "av", "decord", "pyzmq", "pyroute2")


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Python's and each package's version ("not installed" where it is not)."""
    return dict(_versions(tuple(packages)))


@functools.cache
def _versions(packages: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`versions`, read once per process (a sweep's points each write them; they do not change while it runs)."""
    out = [("python", platform.python_version())]
    for p in packages:
        try:
            out.append((p, metadata.version(p)))
        except metadata.PackageNotFoundError:
            out.append((p, "not installed"))
    return tuple(out)


def remove_stale_partials(folder: Path) -> list[Path]:
    """Remove the `.<stamp>.<pid>.partial` folders of runs whose process is gone (killed before it could
    discard them); those of live processes stay. Returns what it removed."""
    import shutil

    removed = []
    for path in folder.glob(".*.partial") if folder.is_dir() else ():
        pid = path.name.removesuffix(".partial").rsplit(".", 1)[-1]
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


class RunFolders:
    """The results folders one command makes: each is written under a hidden temporary name
    (`.<stamp>.<pid>.partial`) and renamed to results/<scenario>/<stamp>-<mode>/ only when the command completes
    (`commit`), or removed with every folder it created if the command fails (`discard`): a failed
    run leaves nothing behind."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path, list[Path]]] = []

    def new(self, root: Path, scenario: str, stamp: str) -> Path:
        """A fresh folder to write into (the caller gives the timestamp); `final(path)` is its name
        once committed."""
        from testbed.errors import TestbedError

        final = root / scenario / stamp
        n = 1
        while final.exists() or any(f == final for _, f, _ in self._pending):
            final = root / scenario / f"{stamp}-{n}"
            n += 1
        made = [p for p in (root, root / scenario) if not p.exists()]
        remove_stale_partials(root / scenario)
        tmp = final.parent / f".{final.name}.{os.getpid()}.partial"
        try:
            tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TestbedError(f"{root}: cannot write results there ({exc.strerror})") from None
        self._pending.append((tmp, final, made))
        return tmp

    def final(self, path: Path) -> Path:
        """Where `path` (from new) ends up when committed."""
        return next((f for t, f, _ in self._pending if t == path), path)

    def commit(self) -> None:
        for tmp, _, _ in list(self._pending):
            if tmp.exists():
                self.commit_one(tmp)
        self._pending.clear()

    def commit_one(self, path: Path) -> Path:
        """Commit the folder `path` now (its run is complete; what follows may fail without losing
        it) and return its final name."""
        for i, (tmp, final, _) in enumerate(self._pending):
            if tmp == path:
                tmp.rename(final)
                del self._pending[i]
                return final
        return path

    def discard(self) -> None:
        import shutil

        for tmp, _, made in self._pending:
            shutil.rmtree(tmp, ignore_errors=True)
            for folder in reversed(made):
                try:
                    folder.rmdir()  # only if still empty
                except OSError:
                    pass
        self._pending.clear()


RANDOM_WEIGHTS = "answers are noise: random weights"


def workload_label(provenance: str, mode: str = "sim") -> str:
    """What the queries were, as every title says it: SYNTHETIC or recorded, and the provenance."""
    kind = "SYNTHETIC workload" if provenance.startswith("synthetic:") else "recorded workload"
    if mode != "sim":
        kind = f"{mode} run on {'SYNTHETIC queries' if 'synthetic' in provenance else 'real queries'}"
    return f"{kind} ({provenance})"


def label(run: RunResult) -> str:
    noise = f"{RANDOM_WEIGHTS}; " if run.random_weights else ""
    return f"{noise}{workload_label(run.provenance, run.mode)}; profile {run.profile}"


def write_queries(path: Path, q: pd.DataFrame, provenance: str, extra: dict[str, Any]) -> None:
    """Per-query rows as Parquet; `stage_s` maps stage keys to seconds, `stage_bytes` to bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = q.copy()
    maps = {name: (frame.pop(name), tp) for name, tp in (("stage_s", pa.float64()), ("stage_bytes", pa.int64()))
            if name in frame}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name, (values, tp) in maps.items():
        col = pa.array([sorted(dict(s).items()) for s in values], type=pa.map_(pa.string(), tp))
        table = table.append_column(name, col)
    meta = {b"testbed.provenance": provenance.encode(), b"testbed.run": json.dumps(extra, default=str).encode()}
    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}), path)


COMPARISON_NOTE = ("Rows marked fitted were targets of the profile fit (run on the workload seed its notes name) or "
                   "inputs of the synthetic generator; held-out rows were never fitted: they are predictions. error "
                   "is (sim - paper) / paper, 0 inside a range the paper gives.")
COMPARISON_NOTE_002 = ("Seed 002 (INAR-VL) is `{ia}` against `{eh}` (edge-only: INAR-VL's cloud); its edge tier is "
                       "this testbed's device. The local share is fitted by the policy's target_local_share, the "
                       "accuracy by the synthetic workload's small-model accuracy (`testbed fit-inarvl`); latency "
                       "and energy are held-out predictions of the profile, its power model and the network.")


def comparison_md(comparison: pd.DataFrame, measured: str = "sim") -> list[str]:
    """The paper comparison section of summary.md: one part per seed the rows compare against, each
    with the figures left out as unmeasurable on this run (`measured`: the measured column's header)."""
    from testbed import report

    out = []
    notes = report.comparison_notes(comparison)
    seeds = list(dict.fromkeys(comparison.seed)) if len(comparison) else [report.SEED_ID]
    seeds += [s for s in dict.fromkeys(n.split()[1] for n in notes) if s not in seeds]
    for seed in seeds:
        part = comparison[comparison.seed == seed] if len(comparison) else comparison
        note = COMPARISON_NOTE_002.format(ia=report.IA, eh=report.EH) if seed == "002" else COMPARISON_NOTE
        if seed == report.SEED_ID:  # seed 000
            note += f" QuickGrasp is `{report.QG}`."
        out += [f"## Measured vs seed {seed}", "", note, "", report.format_comparison(part, measured=measured), ""]
        out += [f"- **Note:** {n}" for n in notes if n.startswith(f"seed {seed} ")]
        out += [""] if any(n.startswith(f"seed {seed} ") for n in notes) else []
    return out


def write_run(out: Path, name: str, description: str, scenario_toml: str, run: RunResult, summary: pd.DataFrame,
              comparison: pd.DataFrame | None, seed: int, extra_versions: dict[str, Any] | None = None,
              plots: bool = True) -> None:
    """Everything a reader needs to trust and redo one run, whichever interpreter made it (`plots`:
    its figures too; a sweep's points leave them out unless asked)."""
    from testbed import report

    title = f"{name} - {label(run)}"
    write_queries(out / "queries.parquet", run.queries, run.provenance,
                  {"scenario": name, "seed": seed, "mode": run.mode,
                   "calibration": {"small_t": run.calibration.small_t, "large_t": run.calibration.large_t}})
    summary.to_csv(out / "summary.csv", index=False)
    cal = run.calibration_report
    source = cal.source if cal is not None else "fitted on the profiling split"
    md = [f"# {name}", "", f"{description}", "", f"**Data:** {label(run)}", "",
          f"Calibration: small T = {run.calibration.small_t:.3f}, large T = {run.calibration.large_t:.3f} "
          f"({source})", "", report.format_table(summary), ""]
    md += calibration_md(out, run, title, plots)
    md += write_sections(out, run, title, plots)  # what the papers' modules add (testbed.artifacts)
    md += [f"- **Note:** {n}" for n in run.notes]  # a list, so rendered Markdown keeps one line each
    md += [f"- **Warning:** {n}" for n in report.saturation_notes(run.queries)]
    if comparison is not None:
        md += comparison_md(comparison, "sim" if run.mode == "sim" else "measured")
        comparison.to_csv(out / "paper_comparison.csv", index=False)
    (out / "summary.md").write_text("\n".join(md))
    (out / "scenario.toml").write_text(scenario_toml)
    (out / "versions.json").write_text(json.dumps({**versions(), "mode": run.mode, "workload": run.provenance,
                                                   "profile": run.profile, **(extra_versions or {})}, indent=2))
    run.totals.to_csv(out / "totals.csv", index=False)
    write_bandit_files(out, run)
    if len(run.queries) and plots:
        report.plot_delay_cdf(run.queries, out / "delay_cdf.png", title)
        report.plot_breakdown(run.queries, out / "delay_breakdown.png", title)
        report.plot_tradeoff(summary, out / "accuracy_vs_delay.png", title)
        if "regret" in run.queries and run.queries.regret.notna().any():
            report.plot_regret(run.queries, out / "cumulative_regret.png", title)


def calibration_md(out: Path, run: RunResult, title: str, plots: bool = True) -> list[str]:
    """Write calibration.csv and (`plots`) reliability.png; the summary.md section on them."""
    from testbed import report

    cal = run.calibration_report
    if cal is None or not cal.rows:
        return []
    table = pd.DataFrame(cal.table())
    table.to_csv(out / "calibration.csv", index=False)
    if plots:
        report.plot_reliability(cal, out / "reliability.png", title)
    split = cal.rows[0].split
    return ["## Calibration", "", f"Temperatures {cal.source}; ECE ({cal.rows[0].bins} equal-width bins) before "
            f"and after temperature scaling on the {split} split, per benchmark (`calibration.csv`, "
            "`reliability.png`).", "", report.format_table(table.drop(columns=["bins"])), ""]


def decision_log_path(out: Path, policy: str) -> Path:
    return out / f"decisions-{policy}.npz"


def write_bandit_files(out: Path, run: RunResult) -> None:
    """Each adaptive policy's decision log (`decisions-<policy>.npz` and its .json card) and the
    profiling fit they started from (`profiling.npz`, `backbone.npz`), which `testbed ope` reads."""
    from testbed.bandit import save_log, save_profiling

    for policy, log in run.logs.items():
        save_log(log, decision_log_path(out, policy))
    if run.profiling is not None and run.logs:
        save_profiling(run.profiling, out / "profiling.npz")


def write_replications(out: Path, name: str, description: str, seeds: Sequence[int], data: str,
                       summaries: Sequence[pd.DataFrame], table: pd.DataFrame, baselines: Sequence[str],
                       comparison: pd.DataFrame | None) -> None:
    """The top of a replicated run's folder (each seed's own results are in seed-<n>/): every
    per-seed summary in summary.csv (column seed), the replication summary in replications.csv,
    summary.md with "mean ± 95% CI half-width" tables, and paper_comparison.csv if compared;
    `data`: what the runs were made from (`label` of one)."""
    from testbed import report

    pd.concat([s.assign(seed=seed) for seed, s in zip(seeds, summaries)], ignore_index=True).to_csv(
        out / "summary.csv", index=False)
    table.to_csv(out / "replications.csv", index=False)
    md = [f"# {name}", "", description, "", f"**Data:** {data}", "",
          f"**Replications:** {len(seeds)} seeds ({', '.join(map(str, seeds))}); each cell is the mean over seeds "
          "± the half-width of its 95% confidence interval (Student t). A ratio (x vs a baseline, taken per seed) "
          "marked * has a CI that excludes 1: that difference is larger than seed-to-seed noise.", ""]
    for bench in dict.fromkeys(table.benchmark):
        md += [f"## {bench}", "", report.format_table(report.replication_table(table, bench, baselines)), ""]
    if comparison is not None:
        md += comparison_md(comparison)
        comparison.to_csv(out / "paper_comparison.csv", index=False)
    (out / "summary.md").write_text("\n".join(md))
