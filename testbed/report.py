"""Summaries, the paper-comparison table and plots, from per-query result rows (sim or live).

Every table made from a synthetic workload carries its provenance, so it reads as synthetic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

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
    for b in baselines:
        base = s[s.policy == b].set_index("benchmark").mean_s
        s[f"speedup_vs_{b}"] = s.benchmark.map(base) / s.mean_s
    return s


def saturation_notes(totals: pd.DataFrame, queries: pd.DataFrame | None = None, limit: float = 0.95,
                     growth: float = 1.5) -> list[str]:
    """Warnings for overloaded policies, whose queues grow with the run so that their delays are
    not steady-state figures: a resource busy more than `limit` of the run, or delays in the last
    third of submissions more than `growth` times those in the first third."""
    notes = []
    for row in totals.to_dict("records"):
        for col, what in (("edge_gpu_util", "edge GPUs"), ("uplink_util_max", "an uplink"),
                          ("downlink_util_max", "a downlink")):
            if row.get(col, 0.0) > limit:
                notes.append(f"{row['policy']}: {what} busy {100 * row[col]:.0f}% of the run: overloaded")
    if queries is not None:
        for policy, d in queries.groupby("policy", sort=False):
            d = d.sort_values("submit_s")
            third = len(d) // 3
            if third >= 10:
                first, last = d.delay_s.iloc[:third].mean(), d.delay_s.iloc[-third:].mean()
                if last > growth * first:
                    notes.append(f"{policy}: delays grow through the run ({first:.3g} s in the first third of "
                                 f"submissions, {last:.3g} s in the last): overloaded, figures depend on run length")
    return notes


def format_table(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    """A Markdown table (pandas.to_markdown needs tabulate; this needs nothing)."""
    cols = list(df.columns)

    def cell(v: object) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else format(float(v), floatfmt)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


PAPER_FIGURES = (
    # (benchmark, label, paper value, numerator policy, denominator policy or None for a mean in ms)
    ("mvbench", "QuickGrasp mean delay (ms)", 819.0, "quickgrasp-fixed16", None),
    ("mvbench", "DeviceNative mean delay (ms)", 900.0, "device-native", None),
    ("videomme", "speedup vs DeviceNative", 2.9, "device-native", "quickgrasp-fixed16"),
    ("videomme", "speedup vs Collaborative", 3.5, "collaborative", "quickgrasp-fixed16"),
    ("videomme", "speedup vs EdgeHosted", 9.1, "edge-hosted", "quickgrasp-fixed16"),
    ("mlvu", "speedup vs EdgeHosted", 12.8, "edge-hosted", "quickgrasp-fixed16"),
    ("mlvu", "speedup vs Collaborative", 4.4, "collaborative", "quickgrasp-fixed16"),
    ("mlvu", "QuickGrasp accuracy", 59.9, "quickgrasp-fixed16", "accuracy"),
    ("mlvu", "EdgeHosted accuracy", 60.3, "edge-hosted", "accuracy"),
)


def paper_comparison(summary: pd.DataFrame) -> pd.DataFrame:
    """Measured figures next to seed 000's (SV-B). QuickGrasp here is its fixed-16 form; the
    paper's adaptive density comes with the bandit."""
    s = summary.set_index(["benchmark", "policy"])
    rows = []
    for bench, label, paper, num, den in PAPER_FIGURES:
        try:
            if den is None:
                sim = s.loc[(bench, num), "mean_s"] * 1000
            elif den == "accuracy":
                sim = s.loc[(bench, num), "accuracy"]
            else:
                sim = s.loc[(bench, num), "mean_s"] / s.loc[(bench, den), "mean_s"]
        except KeyError:
            continue
        rows.append({"benchmark": bench, "figure": label, "seed 000": paper, "sim": round(float(sim), 2),
                     "sim / paper": round(float(sim) / paper, 2)})
    return pd.DataFrame(rows)


def _benchmarks(q: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(q.benchmark))


def _panels(benches: Sequence[str], height: float = 4.0) -> tuple[Any, list[Any]]:
    """One panel per benchmark, side by side."""
    fig, axes = plt.subplots(1, len(benches), figsize=(5 * len(benches), height), squeeze=False)
    for ax, b in zip(axes[0], benches):
        ax.set_title(b)
    return fig, list(axes[0])


def _log_x(ax: Any, label: str) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)
    ax.grid(alpha=0.3)


def _save(fig: Any, path: Path, title: str) -> None:
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_delay_cdf(q: pd.DataFrame, path: Path, title: str) -> None:
    """Response-delay CDF of every policy, per benchmark."""
    benches = _benchmarks(q)
    fig, axes = _panels(benches)
    for ax, b in zip(axes, benches):
        for policy, d in q[q.benchmark == b].groupby("policy", sort=False):
            x = np.sort(d.delay_s.to_numpy())
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=policy)
        _log_x(ax, "response delay (s)")
        ax.set_ylabel("CDF")
    axes[0].legend(fontsize=7)
    _save(fig, path, title)


def plot_breakdown(q: pd.DataFrame, path: Path, title: str) -> None:
    """Mean delay split into where the time went, per policy and benchmark."""
    benches = _benchmarks(q)
    fig, axes = _panels(benches, 4.5)
    cols = [c for c, _ in BREAKDOWN if c in q and q[c].abs().sum() > 0]
    for ax, b in zip(axes, benches):
        m = q[q.benchmark == b].groupby("policy", sort=False)[cols].mean()
        bottom = np.zeros(len(m))
        for c in cols:
            ax.bar(m.index, m[c], bottom=bottom, label=dict(BREAKDOWN)[c])
            bottom += m[c].to_numpy()
        ax.set_ylabel("mean delay (s)")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    axes[0].legend(fontsize=7)
    _save(fig, path, title)


def plot_tradeoff(summary: pd.DataFrame, path: Path, title: str) -> None:
    """Accuracy against mean delay, one point per policy, per benchmark."""
    s = summary[summary.benchmark != ALL] if (summary.benchmark != ALL).any() else summary
    benches = list(dict.fromkeys(s.benchmark))
    fig, axes = _panels(benches)
    for ax, b in zip(axes, benches):
        for row in s[s.benchmark == b].itertuples():
            ax.scatter(row.mean_s, row.accuracy)
            ax.annotate(row.policy, (row.mean_s, row.accuracy), fontsize=7)
        _log_x(ax, "mean response delay (s)")
        ax.set_ylabel("accuracy (%)")
    _save(fig, path, title)


def regret_curves(q: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """Cumulative regret against the oracle density over each policy's density decisions in
    submission order, per (benchmark, policy), with benchmark 'all' over every query."""
    d = q[q.regret.notna()].sort_values("submit_s", kind="stable")
    out = {}
    for bench, part in [(ALL, d)] + ([(b, d[d.benchmark == b]) for b in _benchmarks(d)] if d.benchmark.nunique() > 1
                                     else []):
        for policy, rows in part.groupby("policy", sort=False):
            out[(bench, str(policy))] = np.cumsum(rows.regret.to_numpy())
    return out


def plot_regret(q: pd.DataFrame, path: Path, title: str) -> None:
    """Cumulative regret against the oracle density (seed 000 Eq. 3: 1{correct} - lambda n a in
    hindsight), per benchmark and over all, for every policy that sends tokens at a density."""
    curves = regret_curves(q)
    benches = list(dict.fromkeys(b for b, _ in curves))
    fig, axes = _panels(benches)
    for ax, b in zip(axes, benches):
        for (bench, policy), y in curves.items():
            if bench == b:
                ax.plot(np.arange(1, len(y) + 1), y, label=policy)
        ax.set_xlabel("escalated queries (submission order)")
        ax.set_ylabel("cumulative regret vs oracle density")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    _save(fig, path, title)


def plot_sweep(table: pd.DataFrame, keys: Sequence[str], path: Path, title: str) -> None:
    """Mean delay and accuracy over the first swept key: colour per policy, line style per value
    of the other swept keys (lines of policies that ignore a key lie on top of each other)."""
    x, others = keys[0], list(keys[1:])
    policies = list(dict.fromkeys(table.policy))
    colours = {p: f"C{i % 10}" for i, p in enumerate(policies)}
    combos = list(dict.fromkeys(map(tuple, table[others].to_numpy()))) if others else [()]
    styles: dict[tuple, Any] = {c: ("-", "--", ":", "-.")[i % 4] for i, c in enumerate(combos)}
    fig, (ax_d, ax_a) = plt.subplots(1, 2, figsize=(12, 4.5))
    for (policy, *combo), d in table.groupby(["policy", *others], sort=False):
        d = d.sort_values(x)
        style = dict(color=colours[policy], linestyle=styles[tuple(combo)], marker="o", markersize=3)
        ax_d.plot(d[x], d.mean_s, **style)
        ax_a.plot(d[x], d.accuracy, **style)
    handles = [plt.Line2D([], [], color=c, label=p) for p, c in colours.items()]
    handles += [plt.Line2D([], [], color="k", linestyle=st, label=", ".join(f"{k}={v}" for k, v in zip(others, c)))
                for c, st in styles.items() if others]
    ax_d.legend(handles=handles, fontsize=6)
    for ax, label in ((ax_d, "mean delay (s)"), (ax_a, "accuracy (%)")):
        _log_x(ax, x)
        ax.set_ylabel(label)
    ax_d.set_yscale("log")
    _save(fig, path, title)
