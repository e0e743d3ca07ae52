"""What a run produces, the same for every interpreter: the per-query ledger and row, stage-time
keys, run results, and the results folder results/<scenario>/<stamp>-<mode>/.

Recorded stage times are keyed by `stage_key` (e.g. ``local.tokenize.keyframe.pipelined``): a live
run records them under the keys the sim replays.
"""

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

import numpy as np
import pandas as pd

from testbed.bandit.agents import MAX_FRAMES, CostModel, instant_regret
from testbed.bandit.ope import DecisionLog
from testbed.bandit.profiling import Profiling
from testbed.policies.effects import Answer, ModelName, Tokenize, Tokens
from testbed.query import DENSITIES, QueryRecord
from testbed.router.calibration import Calibration, CalibrationReport
from testbed.router.threshold import ThresholdPick


@functools.lru_cache(maxsize=4096)
def stage_key(where: str, what: str, *detail: object) -> str:
    """Key of a recorded stage time, e.g. ``local.tokenize.keyframe.pipelined`` (memoized: the sim
    asks for the same few keys for every query)."""
    return ".".join([where, what, *(str(d) for d in detail)])


REQUEST_KEY = "edge.request"
"""Seconds the edge server took to take a request in before its steps (writing an upload, probing it)."""


def fallback_key(offload: int) -> str:
    """Key of the seconds a query waited for its `offload`-th Offload (from 1) that the edge did not
    answer before it fell back: a replay of the run falls back after the same wait."""
    return stage_key("fallback", "wait", offload)


def tokenize_key(site: str, eff: Tokenize) -> str:
    """An image is one frame: nothing to pipeline, one key whatever the effect asks."""
    if eff.media.kind == "image":
        view = getattr(eff.media, "view", "")
        return stage_key(site, "tokenize", "image", view_key(view)) if view else image_tokenize_key(site)
    return stage_key(site, "tokenize", sampler_kind(eff), "pipelined" if eff.pipelined else "sequential")


def infer_key(site: str, model: ModelName, tokens: Tokens, density: int) -> str:
    """The large model's key says whether it ran on the small model's encoder's tokens (shared); every
    key names the sampler the frames came from (their number differs), e.g. ``local.infer.small.fps.a16``."""
    encoder = ("shared" if tokens.encoder == "small" else "native",) if model == "large" else ()
    views = ("+".join(view_key(v) for v in tokens.views),) if tokens.views else ()  # seed 003's image views
    return stage_key(site, "infer", model, *encoder, *_sampler(tokens.sampler), *views, f"a{density}")


def view_key(view: str) -> str:
    """A seed-003 view as stage keys name it: a random crop costs what any crop of its size does."""
    return "crop" if view.startswith("crop") else view


def describe_key(sampler: str) -> str:
    """The device's computing of the density bandit's context inputs (the Describe effect)."""
    return stage_key("local", "describe", *_sampler(sampler))


def inspect_key(media_kind: str, sampler: str) -> str:
    """The device's look at the input before any model (seed 002's signals, the Inspect effect),
    e.g. ``local.inspect.image`` or ``local.inspect.keyframe``."""
    return stage_key("local", "inspect", "image" if media_kind == "image" else sampler)


def image_tokenize_key(site: str) -> str:
    """Key of tokenizing one image (a stream frame): what `tokenize_key` gives any Tokenize of an image."""
    return stage_key(site, "tokenize", "image")


def frame_infer_key(site: str, model: ModelName, context: bool, focus: bool) -> str:
    """Key of a stream frame's inference (seed 001): the model on one frame, with a large-model
    answer as its history (context) and visual focus on it, e.g. ``local.infer.small.frame.context``."""
    return stage_key(site, "infer", model, "frame", *(["context"] if context else []), *(["focus"] if focus else []))


def crop_key(view: str) -> str:
    """Key of making one image view on the device (seed 003), e.g. ``local.crop.global``."""
    return stage_key("local", "crop", view)


def locate_key() -> str:
    """Key of the edge's relative-attention pass (seed 003: the generic prompt's attention)."""
    return stage_key("edge", "locate")


def compress_key(sampler: str, density: int) -> str:
    return stage_key("local", "compress", *_sampler(sampler), f"a{density}")


def decompress_key(sampler: str, density: int) -> str:
    return stage_key("edge", "decompress", *_sampler(sampler), f"a{density}")


def _sampler(kind: str) -> tuple[str, ...]:
    return (kind,) if kind else ()


def sampler_kind(eff: Tokenize) -> str:
    """What a Tokenize effect's tokens record as their sampler."""
    return eff.sampler.kind if eff.media.kind == "video" else "image"


@dataclass
class Ledger:
    """Where one query's time and bytes went, its own work and that of every future it started."""

    local_s: float = 0.0
    local_queue_s: float = 0.0
    uplink_s: float = 0.0
    edge_queue_s: float = 0.0
    edge_s: float = 0.0
    downlink_s: float = 0.0
    link_queue_s: float = 0.0  # of uplink_s and downlink_s, the time spent behind other transfers
    bytes_up: int = 0
    bytes_down: int = 0
    frames: int = 0
    decoded: int = 0
    stages: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # bytes a stage produced (a compressed payload)
    round_trips: int = 0  # Offloads: seed 003's retransmission is a second one
    edge_prefill_tokens: int = 0  # vision and text tokens the edge's LM prefilled (seed 003's compute cost)

    def add(self, where: str, waited: float, worked: float) -> None:
        if where == "local":
            self.local_queue_s += waited
            self.local_s += worked
        else:
            self.edge_queue_s += waited
            self.edge_s += worked

    def stage(self, key: str, seconds: float) -> None:
        """Book a stage's time under its key (a query that runs a stage twice books the sum)."""
        self.stages[key] = self.stages.get(key, 0.0) + seconds

    def size(self, key: str, nbytes: int) -> None:
        """Book the bytes a stage produced under its key (a replay sends what the live run sent)."""
        self.sizes[key] = int(nbytes)

    def absorb(self, part: "Ledger") -> None:
        """Add a ledger that booked one piece of this query's work on the side (an Offload raced
        against a timeout): times, bytes, tokens and stages add up; frames are the part's if it saw any."""
        for name in ("local_s", "local_queue_s", "uplink_s", "edge_queue_s", "edge_s", "downlink_s", "link_queue_s",
                     "bytes_up", "bytes_down", "round_trips", "edge_prefill_tokens"):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        for key, seconds in part.stages.items():
            self.stage(key, seconds)
        self.sizes.update(part.sizes)
        if part.frames:
            self.frames, self.decoded = part.frames, part.decoded


@dataclass
class QueryRun:
    """One query in flight: its record, its client, its ledger, the futures it started, and when
    it was submitted and answered (in the interpreter's clock)."""

    rec: QueryRecord
    client: int
    submit_s: float = 0.0
    ledger: Ledger = field(default_factory=Ledger)
    futures: dict[int, Any] = field(default_factory=dict)
    done_s: float = float("nan")
    answer: Answer | None = None

    def row(self, policy: str, mode: str, regret: float = float("nan")) -> dict[str, Any]:
        """The query's result row; call once every future it started has finished. `regret` is the
        density's regret against the oracle density (`density_regret`), NaN where there is none."""
        a, rec, ledger = self.answer, self.rec, self.ledger
        assert a is not None, "row() of a query that has not been answered"
        return {
            "policy": policy, "mode": mode, "query_id": rec.query.query_id, "benchmark": rec.query.benchmark,
            "client": self.client, "submit_s": self.submit_s, "done_s": self.done_s,
            "delay_s": self.done_s - self.submit_s, "choice": a.choice, "answer": rec.answer,
            "correct": a.choice == rec.answer, "served_by": a.served_by, "density": a.density, "regret": regret,
            "confidence": a.confidence, "route_score": a.score, "fallback": a.fallback, "bytes_up": ledger.bytes_up,
            "bytes_down": ledger.bytes_down, "frames": ledger.frames, "decoded_frames": ledger.decoded,
            "t_local_s": ledger.local_s, "t_local_queue_s": ledger.local_queue_s, "t_uplink_s": ledger.uplink_s,
            "t_edge_queue_s": ledger.edge_queue_s, "t_edge_s": ledger.edge_s, "t_downlink_s": ledger.downlink_s,
            "t_wait_s": ledger.local_queue_s + ledger.edge_queue_s + ledger.link_queue_s,
            "round_trips": ledger.round_trips, "edge_prefill_tokens": ledger.edge_prefill_tokens,
            "stage_s": ledger.stages, "stage_bytes": ledger.sizes,
        }


def density_regret(rec: QueryRecord, answer: Answer, frames: int, cost: CostModel) -> float:
    """Exact regret of the density an escalated query was sent at, against the oracle density
    (seed 000 Eq. 3/11: the best 1{correct} - lambda n a in hindsight minus the one chosen), from the
    trace's large-model logits at every density. NaN for a local answer, a density outside the
    cost model's, or a record without every density's outcome (a real run)."""
    if answer.served_by != "edge" or answer.density not in cost.densities or \
            any(a not in rec.large_logits for a in cost.densities):
        return float("nan")
    hindsight = {a: float(int(np.asarray(rec.large_logits[a]).argmax()) == rec.answer) for a in cost.densities}
    return instant_regret(hindsight, frames, answer.density, cost)


def regret_cost(knobs: object) -> CostModel:
    """The cost model regret is measured with: the policy's own lambda where its knobs have one
    (adaptive policies), else seed 000's (the largest token volume costs 1)."""
    return CostModel(DENSITIES, MAX_FRAMES, float(getattr(knobs, "cost_weight", 1.0)))


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
    kind: str = "query"  # "stream": `queries` holds one row per frame (testbed.streams.run)
    calibration_report: CalibrationReport | None = None
    routing: tuple[dict[str, Any], ...] = ()  # per policy whose threshold was picked for a target
    crop_plans: tuple[dict[str, Any], ...] = ()  # seed 003: per crop policy, its threshold and profiling share
    random_weights: bool = False  # a real run on random-init models: its answers are noise


def crop_plan_rows(plans: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """Per seed-003 policy with a plan (testbed.policies.crop.CropPlan): how its min-entropy threshold
    was chosen, the threshold, and the share retransmitted and accuracy it gave on the profiling split."""
    return tuple({"policy": p, "target": c.target, "h_min_threshold": c.h_min_above, "profile_queries": c.n,
                  "profile_retransmit_share": c.share, "profile_accuracy": c.accuracy} for p, c in plans.items())


def routing_rows(picks: dict[str, ThresholdPick], queries: pd.DataFrame) -> tuple[dict[str, Any], ...]:
    """Per policy whose threshold was picked for a target: the target, the threshold, the local share
    and accuracy it gave on the profiling split it was picked on, and what it reached on the test
    split (the run's rows)."""
    out = []
    for policy, pick in picks.items():
        mine = queries[queries.policy == policy] if len(queries) else queries
        out.append({"policy": policy, "target": pick.target, "goal": pick.goal, "tau_route": pick.tau,
                    "profile_queries": pick.n, "profile_local_share": pick.profile_share,
                    "profile_accuracy": pick.profile_accuracy, "test_queries": int(len(mine)),
                    "test_local_share": float((mine.served_by == "local").mean()) if len(mine) else float("nan"),
                    "test_accuracy": float(mine.correct.mean()) if len(mine) else float("nan")})
    return tuple(out)


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
    out = {"python": platform.python_version()}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


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
                   "is (sim - paper) / paper, 0 inside a range the paper gives. QuickGrasp is `{qg}`.")
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
        note = COMPARISON_NOTE_002.format(ia=report.IA, eh=report.EH) if seed == "002" else \
            COMPARISON_NOTE.format(qg=report.QG)
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
    md += routing_md(out, run)
    crop = report.crop_summary(run.queries)
    if len(crop):
        md += ["## Crop retransmission (seed 003)", "", "Accuracy against bytes sent up and the edge's prefill "
               "tokens (`crop.csv`, `accuracy_vs_bytes.png`); retransmit_share: queries that sent a second view.",
               "", report.format_table(crop), ""]
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
    if len(run.queries) and len(crop):  # seed 003's policies: accuracy against bytes and the edge's compute
        plans = pd.DataFrame(list(run.crop_plans), columns=["policy", "target", "h_min_threshold", "profile_queries",
                                                            "profile_retransmit_share", "profile_accuracy"])
        crop.merge(plans, on="policy", how="left").to_csv(out / "crop.csv", index=False)
    if len(run.queries) and plots:
        report.plot_delay_cdf(run.queries, out / "delay_cdf.png", title)
        report.plot_breakdown(run.queries, out / "delay_breakdown.png", title)
        report.plot_tradeoff(summary, out / "accuracy_vs_delay.png", title)
        if "regret" in run.queries and run.queries.regret.notna().any():
            report.plot_regret(run.queries, out / "cumulative_regret.png", title)
        if len(crop):
            report.plot_crop_tradeoff(crop, out / "accuracy_vs_bytes.png", title)


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


def routing_md(out: Path, run: RunResult) -> list[str]:
    """Write routing.csv (thresholds picked for a target); the summary.md section on it."""
    from testbed import report

    if not run.routing:
        return []
    table = pd.DataFrame(list(run.routing))
    table.to_csv(out / "routing.csv", index=False)
    return ["## Thresholds picked for a target", "", "Picked on the profiling split (the score a share of its "
            "queries reaches, or the most-local threshold meeting an accuracy); reached on the test split.", "",
            report.format_table(table), ""]


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
