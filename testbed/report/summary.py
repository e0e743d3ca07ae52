"""Summary statistics of per-query result rows (sim or live): accuracy, delay percentiles, shares,
bytes, energy and speedups per benchmark and policy, saturation notes, and Markdown tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

BREAKDOWN = (("t_local_s", "local compute"), ("t_local_queue_s", "local queue"), ("t_uplink_s", "uplink"),
             ("t_edge_queue_s", "edge queue"), ("t_edge_s", "edge compute"), ("t_downlink_s", "downlink"))
ALL = "all"


def summarize(q: pd.DataFrame, baselines: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (benchmark, policy), plus benchmark 'all': accuracy, delay statistics, local
    share, bytes per query, edge compute per query, the summed regret against the oracle density
    (density policies; NaN for the others), and speedup of mean delay vs each baseline."""
    frames = [q.assign(benchmark=ALL)] + ([q] if q.benchmark.nunique() > 1 else [])
    both = pd.concat(frames, ignore_index=True)
    g = both.groupby(["benchmark", "policy"], sort=False)
    s = pd.DataFrame({
        "queries": g.size(),
        "accuracy": g.correct.mean() * 100,
        "mean_s": g.delay_s.mean(),
        "p50_s": g.delay_s.quantile(0.50),
        "p95_s": g.delay_s.quantile(0.95),
        "p99_s": g.delay_s.quantile(0.99),
        "local_share": g.served_by.apply(lambda x: float((x == "local").mean())),
        "mb_up_per_query": g.bytes_up.mean() / 1e6,
        "mb_down_per_query": g.bytes_down.mean() / 1e6,
        "edge_compute_s_per_query": g.t_edge_s.mean(),
    }).reset_index()
    if "regret" in both:  # density policies: summed regret against the oracle density (NaN for others)
        s["regret"] = g.regret.sum(min_count=1).to_numpy()
    if "energy_j" in both:  # the device's energy per query (testbed.energy), and the edge's for it
        s["energy_j_per_query"] = g.energy_j.mean().to_numpy()
        s["edge_energy_j_per_query"] = g.edge_energy_j.mean().to_numpy()
    for b in baselines:
        base = s[s.policy == b].set_index("benchmark").mean_s
        s[f"speedup_vs_{b}"] = s.benchmark.map(base) / s.mean_s
    return s


def saturation_notes(queries: pd.DataFrame | None, growth: float = 1.5, material: float = 0.1) -> list[str]:
    """Warnings for overloaded policies: those whose queues grow with the run, so that their delays
    are not steady-state figures. Judged from waiting (for a device, the edge or a link; `t_wait_s`),
    not from busy time: a link busy all the time with nothing queued behind it is not overloaded.
    Overloaded: the mean wait of the last third of submissions exceeds `growth` times the first
    third's, by more than `material` of the policy's mean delay."""
    notes: list[str] = []
    if queries is None or "t_wait_s" not in queries:
        return notes
    for policy, d in queries.groupby("policy", sort=False):
        d = d.sort_values("submit_s")
        third = len(d) // 3
        if third < 10:
            continue
        first, last = d.t_wait_s.iloc[:third].mean(), d.t_wait_s.iloc[-third:].mean()
        if last > growth * first and last - first > material * d.delay_s.mean():
            notes.append(f"{policy}: waiting grows through the run ({first:.3g} s in the first third of submissions, "
                         f"{last:.3g} s in the last): overloaded, its figures depend on run length")
    return notes


def plain(x: float, digits: int = 3) -> str:
    """A number as people write it: `digits` significant digits, no exponent (1230, 0.0000381)."""
    if x == 0 or not np.isfinite(x):
        return format(x, "g")
    text = np.format_float_positional(float(x), precision=digits, unique=False, fractional=False, trim="-")
    return text.rstrip(".")


def format_table(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    """A Markdown table (pandas.to_markdown needs tabulate; this needs nothing). Numbers are written
    plainly with three significant digits (never 1.23e+03); `floatfmt` other than ".3g" is used as is."""
    cols = list(df.columns)

    def cell(v: object) -> str:
        if isinstance(v, (float, np.floating)):
            if np.isnan(v):
                return ""
            return plain(float(v)) if floatfmt == ".3g" else format(float(v), floatfmt)
        return str(v)

    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
