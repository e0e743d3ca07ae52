"""How far to trust the sim: replay a live run in the sim and compare, per policy and per stage.

Two replays of the same queries, order, arrivals, network and policies (the run's resolved
scenario), with the model outcomes of a trace recorded on the same models (`testbed record`), so
the sim takes the same decisions as the live run:
  strict   every stage lasts what the live run measured for that query (its `stage_s`); what is
           left to the sim is the link, the queues and anything the stages do not cover;
  profile  stage times predicted from a measured hardware profile alone (`testbed profile`).
Errors are (sim - live) / live of the mean, p50 and p99, for the whole query ("total") and for
each part of the delay breakdown and each stage key.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from sim.engine import policy_context, simulate_policy
from testbed.errors import TestbedError
from testbed.policies.registry import resolve
from testbed.profiles import HardwareProfile, load_profile, mismatch_notes
from testbed.query import QueryRecord
from testbed.router.calibration import Calibration
from testbed.scenario import Scenario, load_scenario
from testbed.traces import Workload, read_trace

BREAKDOWN = ("t_local_s", "t_local_queue_s", "t_uplink_s", "t_edge_queue_s", "t_edge_s", "t_downlink_s")
METRICS = ("mean", "p50", "p99")
COLUMNS = ["policy", "stage", "replay", "metric", "live_s", "sim_s", "error"]


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


def replay(queries: pd.DataFrame, sc: Scenario, calibration: Calibration, trace: Workload,
           profile: HardwareProfile, mode: str, trace_name: str = "trace") -> pd.DataFrame:
    """The sim's rows for every policy of the live run, with `mode` "strict" or "profile"."""
    by_id = {r.query.query_id: r for r in trace.records}
    dim = trace.parameters.get("token_dim")
    if dim:  # the live models' token width, so that raw token bytes (decompress work) are the live ones
        sc = replace(sc, models=replace(sc.models, token_dim=int(dim)))
    rows: list[dict[str, Any]] = []
    for policy, live in queries.groupby("policy", sort=False):
        missing = sorted(set(live.query_id) - set(by_id))
        if missing:
            raise TestbedError(f"{trace_name}: no recorded outcomes for query {missing[0]!r} of the live run")
        stages = {q: dict(s) for q, s in zip(live.query_id, live.stage_s)}
        sizes = {q: dict(s) for q, s in zip(live.query_id, live.stage_bytes)} if "stage_bytes" in live else {}
        ids = set(live.query_id)
        # the live run's test queries in the trace's (= the workload's) order, so the sim's seeded
        # submission order is the live run's; payloads are the sizes the live run sent (data, not
        # a prediction), stage times the live run's (strict) or none (profile)
        recs: list[QueryRecord] = [replace(r, recorded_s=stages[r.query.query_id] if mode == "strict" else {},
                                           recorded_bytes=sizes.get(r.query.query_id) or r.recorded_bytes)
                                   for r in trace.records if r.query.query_id in ids]
        spec = resolve(str(policy))
        ctx = policy_context(sc, str(policy), calibration, trace.split("profile"))
        r, _ = simulate_policy(sc, profile, spec, ctx, recs)
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
    for mode in ("strict", "profile"):
        sims[mode] = replay(queries, sc, calibration, trace, profile, mode, str(trace_path))
        tables.append(compare(queries, sims[mode], mode))
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(run_dir / "fidelity.csv", index=False)
    top = largest_contributor(table)
    routed = decisions(queries, sims["strict"])
    totals = table[table.stage == "total"].pivot_table(index="policy", columns=["replay", "metric"], values="error",
                                                        sort=False)
    md = [f"# Fidelity: the sim against the live run in `{run_dir.name}`", "",
          f"Live: {len(queries)} queries ({versions.get('shaping', 'in one process')} link); trace `{trace_path}`; "
          f"profile `{profile_path}` ({profile.provenance}).", "",
          "Error = (sim - live) / live. Strict replay uses each query's measured stage times; profile replay "
          "predicts them from the measured profile.", "", "## Whole query", "",
          report.format_table(table[table.stage == "total"].drop(columns="stage")), "",
          "## Largest contributor to the error (mean, seconds)", "", report.format_table(top), "",
          "## Routing decisions the sim took differently (strict)", "", report.format_table(routed), "",
          *[f"**Note:** {n}" for n in notes], "", "## Every stage", "", report.format_table(table), ""]
    (run_dir / "fidelity.md").write_text("\n".join(md))
    report.plot_fidelity(queries, sims, run_dir / "fidelity.png", f"{sc.name}: sim vs live delay per query")
    return {"table": table, "totals": totals, "largest": top, "decisions": routed, "notes": notes}
