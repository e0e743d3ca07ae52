"""How far to trust the sim: replay a live run in the sim and compare, per policy and per stage.

Two replays of the same queries, order, arrivals, network and policies (the run's resolved
scenario), with the model outcomes of a trace recorded on the same models (`testbed record`), so
the sim takes the same decisions as the live run:
  strict   every stage lasts what the live run measured for that query (its `stage_s`); what is
           left to the sim is the link, the queues and anything the stages do not cover;
  profile  stage times predicted from a measured hardware profile alone (`testbed profile`);
  heldout  stage times predicted by curves fitted on the other half of the run's own queries (the
           halves alternate in run order, so both saw the same load): the profile replay under
           exactly the run's conditions, meaningful on a busy machine too.
Errors are (sim - live) / live of the mean, p50 and p99, for the whole query ("total"), for each part
of the delay breakdown and each stage key, and for strict, "predicted": the part of the delay that
strict replay does not copy (the link, the queues, anything between the stages).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from testbed.sim.engine import policy_context, simulate_policy
from testbed.errors import TestbedError
from testbed.policies.registry import resolve
from testbed.profiles import HardwareProfile, load_profile, mismatch_notes
from testbed.query import QueryRecord
from testbed.results import workload_label
from testbed.router.calibration import Calibration
from testbed.scenario import Scenario, load_scenario
from testbed.traces import Workload, read_trace

BREAKDOWN = ("t_local_s", "t_local_queue_s", "t_uplink_s", "t_edge_queue_s", "t_edge_s", "t_downlink_s")
METRICS = ("mean", "p50", "p99")
COLUMNS = ["policy", "stage", "replay", "metric", "live_s", "sim_s", "error"]
REPLAYS = ("strict", "profile", "heldout")
BOUNDS = {"profile": (0.10, 0.20), "heldout": (0.10, 0.20), "strict": (0.10, None)}
"""Per replay, the |error| a policy's mean (and p99) must stay within: the profile-only and held-out
predictions of the whole delay, and strict replay's predicted part (the link and the queues)."""
PREDICTED_SHARE = 0.10
"""Strict replay's verdict counts policies whose uncopied part (link, queues) is at least this share of the delay."""
_DENSITY = re.compile(r"\.a(\d+)$")


def stage_size(key: str, frames: float, decoded: float) -> float:
    """What a stage's time grows with: decoded frames for tokenizing, else frames x the key's density."""
    if ".tokenize." in key:
        return float(decoded)
    m = _DENSITY.search(key)
    return float(frames) * (int(m.group(1)) if m else 1)


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y over x, slope >= 0; the median alone with one distinct x."""
    if len(np.unique(x)) < 2:
        return float(np.median(y)), 0.0
    slope, intercept = np.polyfit(x, y, 1)
    if slope < 0:
        return float(np.median(y)), 0.0
    return float(intercept), float(slope)


def heldout_stages(live: pd.DataFrame) -> list[dict[str, float]]:
    """Per live row (in the frame's order), each of its stage times predicted by a line per stage key
    fitted on the other half of the same policy's rows (even and odd positions in its run order, so
    both halves ran under the same load), or of every policy's where the policy's half has fewer than
    two; clipped at 0. A wait for an edge that did not answer (`fallback.*`) is an event, not a cost that
    grows with size: copied as is."""
    stages = [dict(s) for s in live.stage_s]
    frames, decoded = live.frames.to_numpy(float), live.decoded_frames.to_numpy(float)
    policy = live.policy.to_numpy()
    half = live.groupby("policy", sort=False).cumcount().to_numpy() % 2
    out: list[dict[str, float]] = [{} for _ in stages]
    for key in sorted(set().union(*stages)):
        has = np.array([key in s for s in stages])
        x = np.array([stage_size(key, f, d) for f, d in zip(frames, decoded)])
        y = np.array([s.get(key, 0.0) for s in stages])
        if key.startswith("fallback."):
            for i in np.flatnonzero(has):
                out[i][key] = float(y[i])
            continue
        for i in np.flatnonzero(has):
            other = has & (half != half[i])
            train = other & (policy == policy[i])
            if train.sum() < 2:
                train = other if other.any() else has & (np.arange(len(has)) != i)
            if not train.any():
                continue  # the only row with this stage: nothing to predict it from (the replay uses the profile)
            intercept, slope = fit_line(x[train], y[train])
            out[i][key] = max(0.0, intercept + slope * x[i])
    return out


def _stat(x: np.ndarray, metric: str) -> float:
    if len(x) == 0:
        return float("nan")
    return float(np.mean(x) if metric == "mean" else np.percentile(x, 50 if metric == "p50" else 99))


def load_live_run(run_dir: Path) -> tuple[pd.DataFrame, Scenario, Calibration, dict[str, Any]]:
    """A live run's rows, resolved scenario, calibration and versions.json."""
    qpath = run_dir / "queries.parquet"
    if not qpath.is_file():
        raise TestbedError(f"{run_dir}: not a results folder (no queries.parquet)")
    queries = pd.read_parquet(qpath)
    if len(queries) == 0 or not set(queries["mode"]) <= {"live", "inproc"}:
        raise TestbedError(f"{run_dir}: not a live run (mode {sorted(set(queries['mode']))}); fidelity compares a "
                           "live run with the sim")
    meta = pq.read_schema(qpath).metadata or {}
    extra = json.loads(meta.get(b"testbed.run", b"{}"))
    cal = extra.get("calibration") or {}
    calibration = Calibration(float(cal.get("small_t", 1.0)), float(cal.get("large_t", 1.0)))
    sc = load_scenario(str(run_dir / "scenario.toml"))
    versions = json.loads((run_dir / "versions.json").read_text()) if (run_dir / "versions.json").is_file() else {}
    return queries, sc, calibration, versions


def trace_offsets(run_dir: Path, versions: dict[str, Any]) -> dict[str, float]:
    """Per policy, the trace time at which the live run started it (its link's traces start when the link is
    set up, before the edge, calibration and the earlier policies): {} for a run without traces."""
    origin = versions.get("trace_origin_monotonic_s")
    totals = run_dir / "totals.csv"
    if origin is None or not totals.is_file():
        return {}
    t = pd.read_csv(totals)
    if "started_monotonic_s" not in t:
        return {}
    return {str(p): max(0.0, float(s) - float(origin)) for p, s in zip(t.policy, t.started_monotonic_s)}


def replay(queries: pd.DataFrame, sc: Scenario, calibration: Calibration, trace: Workload,
           profile: HardwareProfile, mode: str, trace_name: str = "trace",
           offsets: dict[str, float] | None = None) -> pd.DataFrame:
    """The sim's rows for every policy of the live run, with `mode` "strict", "profile" or "heldout"; each
    policy starts at its `offsets` trace time (the live run's), 0 where none is given."""
    heldout = dict(zip(zip(queries.policy, queries.query_id), heldout_stages(queries))) if mode == "heldout" else {}
    remote = bool((queries["mode"] == "live").any())  # an edge behind a link times out; an in-process one never
    if remote and not sc.network.shared:  # live puts every client on its one shaped link: replay that topology
        sc = replace(sc, network=replace(sc.network, shared=True))
    by_id = {r.query.query_id: r for r in trace.records}
    dim = trace.parameters.get("token_dim")
    if dim:  # the live models' token width, so that raw token bytes (decompress work) are the live ones
        sc = replace(sc, models=replace(sc.models, token_dim=int(dim)))
    rows: list[dict[str, Any]] = []
    for policy, live in queries.groupby("policy", sort=False):
        missing = sorted(set(live.query_id) - set(by_id))
        if missing:
            raise TestbedError(f"{trace_name}: no recorded outcomes for query {missing[0]!r} of the live run")
        stages = {q: heldout[policy, q] if mode == "heldout" else dict(s) for q, s in zip(live.query_id, live.stage_s)}
        sizes = {q: dict(s) for q, s in zip(live.query_id, live.stage_bytes)} if "stage_bytes" in live else {}
        ids = set(live.query_id)
        # the live run's test queries in the trace's (= the workload's) order, so the sim's seeded
        # submission order is the live run's; payloads are the sizes the live run sent (data, not
        # a prediction), stage times the live run's (strict) or none (profile)
        recs: list[QueryRecord] = [replace(r, recorded_s=stages[r.query.query_id] if mode != "profile" else {},
                                           recorded_bytes=sizes.get(r.query.query_id) or r.recorded_bytes)
                                   for r in trace.records if r.query.query_id in ids]
        spec = resolve(str(policy))
        ctx = policy_context(sc, str(policy), calibration, trace.split("profile"))
        r, _ = simulate_policy(sc, profile, spec, ctx, recs, trace_offset_s=(offsets or {}).get(str(policy), 0.0),
                               edge_timeout_s=sc.live.edge_timeout_s if remote else None)
        rows += r
    return pd.DataFrame(rows)


def compare(live: pd.DataFrame, sim: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Signed errors per policy, stage and metric."""
    out = []
    for policy, lq in live.groupby("policy", sort=False):
        sq = sim[sim.policy == policy].set_index("query_id").loc[lq.query_id]
        parts: dict[str, tuple[np.ndarray, np.ndarray]] = {"total": (lq.delay_s.to_numpy(), sq.delay_s.to_numpy())}
        for col in BREAKDOWN:
            parts[col.removeprefix("t_").removesuffix("_s")] = (lq[col].to_numpy(), sq[col].to_numpy())
        keys = sorted(set().union(*(dict(s) for s in lq.stage_s)))
        if mode == "strict":  # what strict replay predicts: the delay its copied stage times leave
            copied = np.array([sum(dict(s).values()) for s in lq.stage_s])
            parts["predicted"] = (lq.delay_s.to_numpy() - copied, sq.delay_s.to_numpy() - copied)
        for key in keys:
            parts[key] = (np.array([dict(s).get(key, 0.0) for s in lq.stage_s]),
                          np.array([dict(s).get(key, 0.0) for s in sq.stage_s]))
        for stage, (a, b) in parts.items():
            for metric in METRICS:
                la, sb = _stat(a, metric), _stat(b, metric)
                out.append({"policy": policy, "stage": stage, "replay": mode, "metric": metric, "live_s": la,
                            "sim_s": sb, "error": (sb - la) / la if la > 0 else float("nan")})
    return pd.DataFrame(out, columns=COLUMNS)


def decisions(live: pd.DataFrame, sim: pd.DataFrame) -> pd.DataFrame:
    """Per policy, queries where the sim routed differently (served by, density) from the live run."""
    m = live.merge(sim, on=["policy", "query_id"], suffixes=("_live", "_sim"))
    differ = (m.served_by_live != m.served_by_sim) | (m.density_live != m.density_sim)
    return m.assign(differ=differ).groupby("policy", sort=False).differ.agg(["sum", "count"]).reset_index()


def copied_share(live: pd.DataFrame) -> pd.DataFrame:
    """Per policy, the mean share of each query's live delay that strict replay copies (its stage times)."""
    copied = np.array([sum(dict(s).values()) for s in live.stage_s])
    share = np.clip(copied / np.maximum(live.delay_s.to_numpy(), 1e-12), 0.0, 1.0)
    return pd.DataFrame({"policy": live.policy, "copied_share": share}).groupby("policy", sort=False).mean() \
        .reset_index()


def verdicts(table: pd.DataFrame) -> list[str]:
    """One line per replay: how many policies its bounds (BOUNDS) hold for, and which miss."""
    out = []
    for mode, (mean_bound, p99_bound) in BOUNDS.items():
        stage = "predicted" if mode == "strict" else "total"
        t = table[(table.replay == mode) & (table.stage == stage)].pivot_table(
            index="policy", columns="metric", values="error", sort=False)
        if t.empty:
            continue
        part = "the whole delay"
        if mode == "strict":  # only where the uncopied part is a real share of the delay (the link's policies)
            means = table[(table.replay == mode) & (table.metric == "mean")].pivot_table(
                index="policy", columns="stage", values="live_s", sort=False)
            t = t[t.index.isin(means.index[means["predicted"] >= PREDICTED_SHARE * means["total"]])]
            part = f"the predicted part (link and queues; policies where it is >= {PREDICTED_SHARE:.0%} of the delay)"
            if t.empty:
                out.append(f"{mode}: no policy's delay is >= {PREDICTED_SHARE:.0%} link and queues")
                continue
        ok = t["mean"].abs() <= mean_bound
        if p99_bound is not None:
            ok &= t["p99"].abs() <= p99_bound
        what = f"mean within {mean_bound:.0%}" + (f" and p99 within {p99_bound:.0%}" if p99_bound else "")
        missed = ", ".join(f"{p} ({t.loc[p, 'mean']:+.0%})" for p in t.index[~ok])
        out.append(f"{mode}: {int(ok.sum())} of {len(t)} policies have {part} {what}"
                   + (f"; missed: {missed}" if missed else ""))
    return out


def largest_contributor(table: pd.DataFrame) -> pd.DataFrame:
    """For each policy and replay, the part of the delay breakdown whose mean is furthest off, in seconds."""
    t = table[(table.metric == "mean") & table.stage.isin([c.removeprefix("t_").removesuffix("_s") for c in BREAKDOWN])]
    t = t.assign(gap_s=(t.sim_s - t.live_s))
    idx = t.gap_s.abs().groupby([t.policy, t.replay]).idxmax()
    return t.loc[idx, ["policy", "replay", "stage", "live_s", "sim_s", "gap_s"]].reset_index(drop=True)


def fidelity(run_dir: Path, trace_path: Path | None = None, profile_path: Path | None = None) -> dict[str, Any]:
    """Replay a live run both ways and write fidelity.csv, fidelity.md and fidelity.png into it."""
    from testbed import report

    queries, sc, calibration, versions = load_live_run(run_dir)
    trace_path = trace_path or run_dir / "trace.parquet"
    if not trace_path.is_file():
        raise TestbedError(f"{trace_path}: no recorded trace; make one with `testbed record SCENARIO --out "
                           f"{trace_path}` (the same models and workload as the run), or pass --trace")
    profile_path = profile_path or run_dir / "profile.toml"
    if not profile_path.is_file():
        raise TestbedError(f"{profile_path}: no measured profile; make one with `testbed profile --out "
                           f"{profile_path}`, or pass --profile")
    profile = load_profile(profile_path)
    notes = mismatch_notes(profile, versions.get("profile_measured", {})) if versions.get("profile_measured") else []
    trace = read_trace(trace_path)
    tables, sims = [], {}
    offsets = trace_offsets(run_dir, versions)
    for mode in REPLAYS:
        sims[mode] = replay(queries, sc, calibration, trace, profile, mode, str(trace_path), offsets)
        tables.append(compare(queries, sims[mode], mode))
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(run_dir / "fidelity.csv", index=False)
    top = largest_contributor(table)
    verdict = verdicts(table)
    routed = decisions(queries, sims["strict"])
    totals = table[table.stage == "total"].pivot_table(index="policy", columns=["replay", "metric"], values="error",
                                                        sort=False)
    md = [f"# Fidelity: the sim against the live run in `{run_dir.name}`", "",
          f"Live: {len(queries)} queries ({versions.get('shaping', 'in one process')} link); trace `{trace_path}`; "
          f"profile `{profile_path}` ({profile.provenance}).", "",
          *(["Each policy starts at the trace time the live run started it: "
             + ", ".join(f"{p} {t:.1f} s" for p, t in offsets.items()) + ".", ""] if offsets else []),
          "Error = (sim - live) / live. Strict replay uses each query's measured stage times; profile replay "
          "predicts them from the measured profile; heldout replay from curves fitted on the other half of this "
          "run's queries.", "", "## Verdicts", "", *[f"- {v}" for v in verdict], "",
          "## Whole query", "", report.format_table(table[table.stage == "total"].drop(columns="stage")), "",
          "## What strict replay predicts", "", "The share of each query's live delay that strict replay copies "
          "(its stage times), and its error on the rest (`stage = predicted`).", "",
          report.format_table(copied_share(queries).merge(
              table[(table.replay == "strict") & (table.stage == "predicted")].pivot_table(
                  index="policy", columns="metric", values="error", sort=False).add_prefix("predicted_error_")
              .reset_index(), on="policy", how="left")), "",
          "## Largest contributor to the error (mean, seconds)", "", report.format_table(top), "",
          "## Routing decisions the sim took differently (strict)", "", report.format_table(routed), "",
          *[f"**Note:** {n}" for n in notes], "", "## Every stage", "", report.format_table(table), ""]
    (run_dir / "fidelity.md").write_text("\n".join(md))
    data = workload_label(str(versions.get("workload", "")), str(versions.get("mode", "live")))
    report.plot_fidelity(queries, sims, run_dir / "fidelity.png", f"{sc.name}: sim vs live delay per query - {data}")
    return {"table": table, "totals": totals, "largest": top, "decisions": routed, "notes": notes, "verdicts": verdict}
