"""Replications: each summary metric's mean and Student-t confidence interval over seeds, and the paper
comparison over seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from testbed.report.comparison import FIGURES_BY_SEED

SUMMARY_METRICS = ("accuracy", "mean_s", "p50_s", "p95_s", "p99_s", "local_share", "mb_up_per_query",
                   "mb_down_per_query", "edge_compute_s_per_query", "energy_j_per_query", "regret")


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the Student-t confidence interval of the mean of independent replications."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    half = float(t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def replication_summary(summaries: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One row per (benchmark, policy, metric) over replications' summaries (one per seed): n, mean,
    95% CI (Student t). Ratios (`speedup_vs_<baseline>`: the baseline's mean delay over the policy's,
    taken in each replication, then averaged) are kind "ratio", with `differs` true when their CI
    excludes 1, i.e. the difference is larger than the seed-to-seed noise; metrics are kind "metric"."""
    both = pd.concat([s.assign(_rep=i) for i, s in enumerate(summaries)], ignore_index=True)
    ratios = [c for c in both.columns if c.startswith("speedup_vs_")]
    rows = []
    for (bench, policy), g in both.groupby(["benchmark", "policy"], sort=False):
        for metric in (*SUMMARY_METRICS, *ratios):
            if metric not in g:
                continue
            values = g[metric].dropna().to_numpy()
            if len(values) == 0:
                continue
            mean, lo, hi = t_interval(values)
            ratio = metric in ratios
            rows.append({"benchmark": bench, "policy": policy, "metric": metric, "kind": "ratio" if ratio else "metric",
                         "n": len(values), "mean": mean, "ci_low": lo, "ci_high": hi,
                         "differs": bool(ratio and (lo > 1 or hi < 1))})
    return pd.DataFrame(rows)


def replication_table(table: pd.DataFrame, bench: str, baselines: Sequence[str],
                      transpose: bool = False) -> pd.DataFrame:
    """One benchmark's replication summary as "mean ± half-width" cells, a row per policy (or, with
    `transpose`, a row per metric and a column per policy); a ratio whose CI excludes 1 ends in '*'."""
    t = table[table.benchmark == bench]
    cols = {"accuracy": ("acc %", ".1f", 1.0), "mean_s": ("mean s", ".3f", 1.0), "p50_s": ("p50 s", ".3f", 1.0),
            "p95_s": ("p95 s", ".3f", 1.0), "p99_s": ("p99 s", ".3f", 1.0), "local_share": ("local", ".2f", 1.0),
            "mb_up_per_query": ("MB up/q", ".2f", 1.0), "mb_down_per_query": ("kB down/q", ".2f", 1000.0),
            "edge_compute_s_per_query": ("edge s/q", ".3f", 1.0), "energy_j_per_query": ("J/q", ".3g", 1.0),
            "regret": ("regret", ".1f", 1.0), **{f"speedup_vs_{b}": (f"x vs {b}", ".2f", 1.0) for b in baselines}}
    out = []
    for policy, g in t.groupby("policy", sort=False):
        by = g.set_index("metric")
        row = {"policy": policy}
        for metric, (name, fmt, scale) in cols.items():
            if metric not in by.index:
                continue
            r = by.loc[metric]
            half = (r["ci_high"] - r["ci_low"]) / 2
            if abs(half) <= 1e-9 * max(abs(r["mean"]), 1.0):  # equal across seeds up to float rounding
                half = 0.0
            cell = f"{format(scale * r['mean'], fmt)} ± {format(scale * half, fmt)}"
            if r["kind"] == "ratio" and r["differs"]:
                cell += "*"
            row[name] = cell
        out.append(row)
    wide = pd.DataFrame(out)
    if not transpose:
        return wide
    return wide.set_index("policy").T.rename_axis("metric").reset_index()


def comparison_replicated(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Paper comparisons of several replications as one: sim is the mean over replications, with its
    95% CI (sim_ci_low, sim_ci_high) and n; error is the mean's."""
    both = pd.concat([t.assign(_rep=i) for i, t in enumerate(tables)], ignore_index=True)
    by_label = {(seed, f.benchmark, f.label): f for seed, figures in FIGURES_BY_SEED.items() for f in figures}
    rows = []
    for (seed, role, bench, figure), g in both.groupby(["seed", "role", "benchmark", "figure"], sort=False):
        mean, lo, hi = t_interval(g.sim.to_numpy())
        f = by_label[(seed, bench, figure)]
        rows.append({"seed": seed, "role": role, "benchmark": bench, "figure": figure, "source": f.source,
                     "paper": f.paper_text(), "sim": mean, "error": f.error(mean), "sim_ci_low": lo,
                     "sim_ci_high": hi, "n": len(g)})
    return pd.DataFrame(rows)
