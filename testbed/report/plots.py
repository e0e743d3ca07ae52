"""Every figure of a results folder: delay CDFs, breakdowns, trade-offs, reliability, regret, sweeps,
crops, threshold sweeps and fidelity, each policy in its fixed style (testbed/plotstyle.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from testbed.plotstyle import BREAKDOWN_COLOURS, LINESTYLES, Style, styles_for
from testbed.report.summary import ALL, BREAKDOWN, plain

def _benchmarks(q: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(q.benchmark))


# -- plots ----------------------------------------------------------------------------------------
# Every figure is laid out by matplotlib's constrained layout, which keeps the title, the legends
# (placed outside the panels, on the right) and the tick labels inside it; the title is wrapped to
# the figure's width. A policy is drawn in its own style (testbed.plotstyle), listed in a legend
# whose gid is POLICY_LEGEND, so tests can read back what each policy looks like.

POLICY_LEGEND = "policies"
"""The gid of a legend whose entries are policies, one each."""
LEGEND_WIDTH_IN = 2.2
"""Inches a figure is widened by for a legend on its right, so that the panels keep their width."""


def load_matplotlib() -> None:
    """Import what the first figure needs (a third of a second), e.g. in a thread while other work runs."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


def _figure(rows: int, cols: int, panel: tuple[float, float], legend: bool = True) -> tuple[Any, np.ndarray]:
    """A figure of rows x cols panels of `panel` inches each (plus room for a legend on the right)."""
    width = panel[0] * cols + (LEGEND_WIDTH_IN if legend else 0.0)
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported at the first figure: a run that
    from matplotlib.figure import Figure  # draws none never pays for matplotlib

    fig = Figure(figsize=(width, panel[1] * rows), layout="constrained")  # no pyplot: no global state, any thread
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _panels(benches: Sequence[str], height: float = 4.0, legend: bool = True) -> tuple[Any, list[Any]]:
    """One panel per benchmark, side by side."""
    fig, axes = _figure(1, len(benches), (5.0, height), legend)
    for ax, b in zip(axes[0], benches):
        ax.set_title(b)
    return fig, list(axes[0])


def _policy_legend(fig: Any, styles: dict[str, Style], points: bool = False,
                   labels: dict[str, str] | None = None) -> Any:
    """The figure's legend of policies, on its right: one entry per policy, drawn in its style (as
    a marker alone where the policies are drawn as points)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], label=(labels or {}).get(p, p), markersize=6,
                      **({**s.point(), "linestyle": "none"} if points else s.line()))
               for p, s in styles.items()]
    legend = fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    legend.set_gid(POLICY_LEGEND)
    return legend


def _minor_label(axis: Any, value: float, _pos: Any = None) -> str:
    """A minor tick's label on a log axis: every one where the axis spans at most 0.8 decades, the
    2s, 3s and 5s up to 1.3, the 2s and 5s up to 2, none on a wider axis (its decades are labelled)."""
    lo, hi = sorted(axis.get_view_interval())
    if not (lo > 0 and value > 0):
        return ""
    decades = math.log10(hi / lo)
    lead = round(value / 10 ** math.floor(math.log10(value) + 1e-9))
    shown = decades <= 0.8 or (decades <= 1.3 and lead in (2, 3, 5)) or (decades <= 2.0 and lead in (2, 5))
    return plain(value) if shown else ""


def _log_axis(ax: Any, which: Literal["x", "y"], label: str, values: Sequence[float] | np.ndarray = ()) -> None:
    """A log-scale axis labelled `label`, its ticks written as plain numbers (0.5, 2, 10, 300; between
    decades too where the axis spans few), when the positive `values` it shows span at least 3x
    (a narrower or non-positive range stays linear, where a log axis would show one tick or none)."""
    from matplotlib.ticker import FuncFormatter

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xlabel if which == "x" else ax.set_ylabel)(label)
    ax.grid(alpha=0.3)
    if len(v) and (v.min() <= 0 or v.max() < 3 * v.min()):
        return
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: plain(value)))
    axis.set_minor_formatter(FuncFormatter(partial(_minor_label, axis)))
    axis.set_tick_params(which="both", labelsize=8)


def _wrap_title(fig: Any, text: Any, title: str) -> None:
    """Set `text` (a suptitle) to `title`, wrapped at spaces so that each line fits the figure's
    width, less the legends on its right on both sides (the title is centred: it must clear them)."""
    import textwrap

    renderer = fig.canvas.get_renderer()
    legends = [lg.get_window_extent(renderer).width for lg in fig.legends]  # their width needs no layout
    room = (fig.bbox.width - 2 * max(legends, default=0.0)) * 0.97
    chars = max(len(title), 1)
    for _ in range(12):
        text.set_text("\n".join(textwrap.wrap(title, chars)) if chars < len(title) else title)
        wide = text.get_window_extent(renderer).width
        if wide <= room or chars <= 10:
            return
        chars = max(10, min(chars - 1, int(chars * room / wide * 0.97)))


def _save(fig: Any, path: Path, title: str) -> None:
    """Title the figure (wrapped to fit) and write it at 110 dpi."""
    _wrap_title(fig, fig.suptitle(title, fontsize=9), title)
    fig.savefig(path, dpi=110)


def _dense(n: int) -> dict[str, Any]:
    """Marker spacing for a line of n points: markers on a few of them, so a dense line stays a line."""
    return {"markevery": max(1, n // 8), "markersize": 5} if n > 12 else {"markersize": 5}


def plot_delay_cdf(q: pd.DataFrame, path: Path, title: str) -> None:
    """Response-delay CDF of every policy, per benchmark."""
    benches = _benchmarks(q)
    styles = styles_for(map(str, q.policy))
    fig, axes = _panels(benches)
    for ax, b in zip(axes, benches):
        part = q[q.benchmark == b]
        for policy, d in part.groupby("policy", sort=False):
            x = np.sort(d.delay_s.to_numpy())
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), **styles[str(policy)].line(), **_dense(len(x)))
        _log_axis(ax, "x", "response delay (s)", part.delay_s[part.delay_s > 0].to_numpy())
        ax.set_ylabel("CDF (fraction of queries)")
    _policy_legend(fig, styles)
    _save(fig, path, title)


def plot_breakdown(q: pd.DataFrame, path: Path, title: str) -> None:
    """Mean delay split into where the time went, per policy and benchmark; each part has the same
    colour in every run (testbed.plotstyle.BREAKDOWN_COLOURS)."""
    from matplotlib.patches import Patch

    benches = _benchmarks(q)
    fig, axes = _panels(benches, 4.5)
    cols = [c for c, _ in BREAKDOWN if c in q and q[c].abs().sum() > 0]
    for ax, b in zip(axes, benches):
        m = q[q.benchmark == b].groupby("policy", sort=False)[cols].mean()
        bottom = np.zeros(len(m))
        for c in cols:
            ax.bar(m.index, m[c], bottom=bottom, color=BREAKDOWN_COLOURS[c])
            bottom += m[c].to_numpy()
        ax.set_ylabel("mean delay (s)")
        ax.set_xlabel("policy")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    fig.legend(handles=[Patch(color=BREAKDOWN_COLOURS[c], label=dict(BREAKDOWN)[c]) for c in cols],
               loc="outside right upper", fontsize=7)
    _save(fig, path, title)


def plot_tradeoff(summary: pd.DataFrame, path: Path, title: str) -> None:
    """Accuracy against mean delay, one point per policy (its colour and marker, named in one legend
    rather than by labels that would overlap), per benchmark; where the rows carry energy, a second
    row of panels: accuracy against the device's energy per query."""
    s = summary[summary.benchmark != ALL] if (summary.benchmark != ALL).any() else summary
    benches = list(dict.fromkeys(s.benchmark))
    energy = "energy_j_per_query" in s and s.energy_j_per_query.notna().any()
    styles = styles_for(map(str, s.policy))
    fig, grid = _figure(2 if energy else 1, len(benches), (5.0, 4.0))
    for col, b in enumerate(benches):
        grid[0][col].set_title(b)
        panels = [("mean_s", "mean response delay (s)")] + ([("energy_j_per_query", "device energy per query (J)")]
                                                             if energy else [])
        for r, (x, label) in enumerate(panels):
            ax = grid[r][col]
            part = s[s.benchmark == b]
            for row in part.itertuples():
                ax.scatter(getattr(row, x), row.accuracy, s=36, **styles[str(row.policy)].point())
            _log_axis(ax, "x", label, part[x].to_numpy(dtype=float))
            ax.set_ylabel("accuracy (%)")
    _policy_legend(fig, styles, points=True)
    _save(fig, path, title)


def plot_crop_tradeoff(table: pd.DataFrame, path: Path, title: str) -> None:
    """Seed 003 Fig. 4 and 5: accuracy against bytes sent up per query and against the edge's prefill
    tokens per query, one curve per policy over its threshold (rows of a sweep; one run: one point
    each), each point labelled with the share of queries retransmitted."""
    fig, grid = _figure(1, 2, (5.0, 4.5))
    axes = grid[0]
    styles = styles_for(map(str, table.policy))
    for policy, d in table.groupby("policy", sort=False):
        for ax, x in zip(axes, ("mb_up_per_query", "prefill_tokens_per_query")):
            d2 = d.sort_values(x)
            ax.plot(d2[x], d2.accuracy, markersize=5, **styles[str(policy)].line())
            for row in d2.itertuples():
                share = float(row.retransmit_share)
                if 0 < share < 1:
                    ax.annotate(f"{share:.0%}", (getattr(row, x), row.accuracy), fontsize=6,
                                textcoords="offset points", xytext=(3, 3))
    for ax, x, label in zip(axes, ("mb_up_per_query", "prefill_tokens_per_query"),
                            ("bytes sent up per query (MB)", "edge prefill tokens per query (tokens)")):
        _log_axis(ax, "x", label, table[x].to_numpy(dtype=float))
        ax.set_ylabel("accuracy (%)")
        ax.margins(0.08)
    _policy_legend(fig, styles)
    _save(fig, path, title + " (labels: share retransmitted)")


def plot_reliability(cal: Any, path: Path, title: str) -> None:
    """Reliability diagrams (seed 000 Fig. 7): per model, accuracy against confidence in each bin
    before and after temperature scaling, with the diagonal and each one's ECE (a CalibrationReport)."""
    models = list(cal.diagrams)
    fig, axes = _figure(1, max(1, len(models)), (5.0, 4.3), legend=False)
    eces = {r.model: r for r in cal.rows if r.benchmark == ALL}
    for ax, model in zip(axes[0], models):
        bins = len(cal.diagrams[model]["before"][0])
        edges = np.linspace(0, 1, bins + 1)
        width = 1.0 / bins
        for when, colour, shift in (("before", "C3", 0.0), ("after", "C0", width / 2)):
            count, _conf, acc = (np.asarray(v, dtype=float) for v in cal.diagrams[model][when])
            ok = count > 0
            r = eces.get(model)
            t = 1.0 if when == "before" else (r.temperature if r else float("nan"))
            e = (r.ece_before if when == "before" else r.ece_after) if r else float("nan")
            ax.bar(edges[:-1][ok] + shift, acc[ok], width=width / 2, align="edge", alpha=0.75, color=colour,
                   label=f"{when} (T = {t:.2f}): ECE {e:.3f}")
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (probability)")
        ax.set_ylabel("accuracy (fraction correct)")
        ax.set_title(f"{model} model ({bins} bins)")
        ax.legend(fontsize=7, loc="upper left")
    _save(fig, path, title)


def plot_threshold_sweep(table: pd.DataFrame, picked: pd.DataFrame, path: Path, title: str) -> None:
    """Accuracy against mean delay over a threshold sweep (one line per policy, points labelled with
    their local share), the picked threshold's point marked with a star and its tau."""
    from matplotlib.lines import Line2D

    fig, axes = _figure(1, 1, (6.0, 5.2))
    ax = axes[0][0]
    styles = styles_for(map(str, table.policy))
    for policy, d in table.groupby("policy", sort=False):
        d = d.sort_values("tau_route")
        style = styles[str(policy)]
        ax.plot(d.mean_s, d.accuracy, markersize=3, **style.line())
        for row in d.itertuples():
            ax.annotate(f"{100 * row.local_share:.0f}%", (row.mean_s, row.accuracy), fontsize=6)
        p = picked[picked.policy == policy]
        if len(p):
            ax.scatter(p.mean_s, p.accuracy, s=120, marker="*", color=style.color, edgecolor="k", zorder=5)
            ax.annotate(f"tau {float(p.tau_route.iloc[0]):.3g}", (float(p.mean_s.iloc[0]), float(p.accuracy.iloc[0])),
                        fontsize=7, textcoords="offset points", xytext=(6, -10))
    ax.set_xlabel("mean response delay (s)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.margins(0.08)
    ax.legend(handles=[Line2D([], [], marker="*", color="grey", markeredgecolor="k", markersize=10, linestyle="none",
                              label="picked threshold")], fontsize=7, loc="lower right")
    _policy_legend(fig, styles)
    _save(fig, path, title + " (labels: local share)")


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
    styles = styles_for(p for _, p in curves)
    fig, axes = _panels(benches)
    for ax, b in zip(axes, benches):
        for (bench, policy), y in curves.items():
            if bench == b:
                ax.plot(np.arange(1, len(y) + 1), y, **styles[policy].line(), **_dense(len(y)))
        ax.set_xlabel("escalated queries (count, in submission order)")
        ax.set_ylabel("cumulative regret vs oracle density (reward)")
        ax.grid(alpha=0.3)
    _policy_legend(fig, styles)
    _save(fig, path, title)


KEY_UNITS = (("_mbps", "Mbit/s"), ("_ms", "ms"), ("_s", "s"), ("tau_route", "confidence threshold, 0-1"),
             ("tau_proxy", "confidence threshold, 0-1"), ("h_min_threshold", "nats"), ("k_call", "frames"),
             ("clients", "count"), ("queries_per_benchmark", "queries"), ("rate_per_client", "queries/s"),
             ("_gpus", "count"), ("target_local_share", "fraction"), ("target_accuracy", "fraction"))
"""The unit of a swept key, by how its name ends (the scenario keys name their units)."""


def key_label(key: str) -> str:
    """An axis label for a swept scenario key: the key and its unit."""
    unit = next((u for end, u in KEY_UNITS if key.endswith(end)), "as in the scenario")
    return f"{key} ({unit})"


def plot_sweep(table: pd.DataFrame, keys: Sequence[str], path: Path, title: str) -> None:
    """Mean delay and accuracy over the first swept key, a colour and marker per policy; the other
    swept keys' values, up to four combinations, a line style each (lines of policies that ignore a
    key lie on top of each other); more combinations are drawn as thin lines of the policy's style."""
    from matplotlib.lines import Line2D

    x, others = keys[0], list(keys[1:])
    styles = styles_for(map(str, table.policy))
    combos = list(dict.fromkeys(map(tuple, table[others].to_numpy()))) if others else [()]
    few = len(combos) <= len(LINESTYLES)
    dashes: dict[tuple, Any] = {c: LINESTYLES[i % len(LINESTYLES)] for i, c in enumerate(combos)}
    fig, grid = _figure(1, 2, (5.5, 4.5))
    ax_d, ax_a = grid[0]
    for (policy, *combo), d in table.groupby(["policy", *others], sort=False):
        d = d.sort_values(x)
        s = styles[str(policy)]
        line = dict(color=s.color, marker=s.marker, markersize=4, linestyle=dashes[tuple(combo)] if few else "-",
                    **({} if few else {"linewidth": 0.7, "alpha": 0.5}))
        ax_d.plot(d[x], d.mean_s, **line)
        ax_a.plot(d[x], d.accuracy, **line)
    for ax, label, _col in ((ax_d, "mean delay (s)", "mean_s"), (ax_a, "accuracy (%)", "accuracy")):
        _log_axis(ax, "x", key_label(x), table[x].to_numpy(dtype=float))
        ax.set_ylabel(label)
    _log_axis(ax_d, "y", "mean delay (s)", table.mean_s.to_numpy(dtype=float))
    _policy_legend(fig, {p: Style(s.color, s.marker, "-") for p, s in styles.items()})
    if others and few:
        names = {c: ", ".join(f"{k}={v}" for k, v in zip(others, c)) for c in dashes}
        ax_d.legend(handles=[Line2D([], [], color="k", linestyle=st, label=names[c]) for c, st in dashes.items()],
                    fontsize=6, loc="best")
    elif others:
        ax_d.set_title(f"one line per value of {', '.join(others)} ({len(combos)})", fontsize=8)
    _save(fig, path, title)


# -- replications ---------------------------------------------------------------------------------


def plot_fidelity(live: pd.DataFrame, sims: dict[str, pd.DataFrame], path: Path, title: str) -> None:
    """Sim against live delay per query, one panel per replay, a colour and marker per policy, y = x dashed."""
    fig, axes = _figure(1, len(sims), (5.0, 4.8))
    styles = styles_for(map(str, live.policy))
    for ax, (mode, sim) in zip(axes[0], sims.items()):
        m = live.merge(sim, on=["policy", "query_id"], suffixes=("_live", "_sim"))
        for policy, d in m.groupby("policy", sort=False):
            ax.scatter(d.delay_s_live, d.delay_s_sim, s=12, **styles[str(policy)].point())
        lo = max(1e-3, float(min(m.delay_s_live.min(), m.delay_s_sim.min())))
        hi = float(max(m.delay_s_live.max(), m.delay_s_sim.max()))
        ax.plot([lo, hi], [lo, hi], "k--", linewidth=0.8)
        both = np.concatenate([m.delay_s_live.to_numpy(dtype=float), m.delay_s_sim.to_numpy(dtype=float), [lo, hi]])
        _log_axis(ax, "x", "live delay (s)", both)
        _log_axis(ax, "y", "sim delay (s)", both)
        ax.set_title(f"{mode} replay")
    _policy_legend(fig, styles, points=True)
    _save(fig, path, title)
