"""Summaries, the paper-comparison table and plots, from per-query result rows (sim or live).

Every table made from a synthetic workload carries its provenance, so it reads as synthetic.
"""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Literal, Sequence

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


PAPER_POLICIES = {
    "QuickGrasp": "quickgrasp",
    "DeviceNative": "device-native",
    "EdgeHosted": "edge-hosted",
    "Collaborative": "collaborative",
    "NoSharing": "nosharing",
    "Uncalibrated": "uncalibrated",
}
"""The paper's solutions and the policies that stand for them: QuickGrasp is the adaptive-density
policy (neural-linear Thompson sampling), as in the paper."""
QG, DN, EH, COLLAB, NS, UNCAL = (PAPER_POLICIES[k] for k in ("QuickGrasp", "DeviceNative", "EdgeHosted",
                                                            "Collaborative", "NoSharing", "Uncalibrated"))
OVERHEAD_STAGES = ("local.describe.", "local.compress.")
"""Seed 000 Fig. 13's system overhead: configuration selection (the bandit's context, described on the
device) and compressing the tokens to offload (merge and zstd)."""
LONG_S = 1800.0
"""Fig. 2's "long" videos: 30-60 min (Video-MME's long class)."""


Role = Literal["fitted", "held-out"]


@dataclass(frozen=True)
class PaperFigure:
    """One figure of seed 000 and how to measure it on per-query result rows.

    `paper` is (value, value) for a point figure, (lo, hi) for a range the paper gives; `role` says
    whether the shipped profile was fitted to it ("fitted") or it is a prediction ("held-out").
    `measure` takes the rows of every policy, with `duration_s` (media duration) and, for
    DeviceNative rows, `decode_s` (its decode time) when `columns` names them."""

    benchmark: str
    label: str
    source: str
    paper: tuple[float, float]
    role: Role
    measure: Callable[[pd.DataFrame], float]
    policies: tuple[str, ...]
    columns: tuple[str, ...] = ()
    generator_input: bool = False
    """Fitted only as an input of the synthetic generator: on a recorded or real workload it is held out."""

    @property
    def is_range(self) -> bool:
        return self.paper[0] != self.paper[1]

    def paper_text(self) -> str:
        lo, hi = self.paper
        if not self.is_range:
            return format(lo, "g")
        if math.isinf(hi):
            return f">= {lo:g}"
        return f"< {hi:g}" if lo == 0 else f"{lo:g}-{hi:g}"

    def error(self, sim: float) -> float:
        """Signed relative error: (sim - paper) / paper for a point; 0 inside a range, else relative to
        the nearer end."""
        lo, hi = self.paper
        if sim < lo:
            return (sim - lo) / abs(lo)
        if sim > hi:
            return (sim - hi) / hi
        return 0.0


def _rows(q: pd.DataFrame, policy: str, bench: str) -> pd.DataFrame:
    return q[(q.policy == policy) & (q.benchmark == bench)].set_index("query_id")


def _mean(q: pd.DataFrame, policy: str, bench: str, col: str = "delay_s",
          mask: Callable[[pd.DataFrame], Any] | None = None) -> float:
    sel = _rows(q, policy, bench)
    if mask is not None:
        sel = sel[mask(sel)]
    return float(sel[col].mean())


def _ratio(num: str, den: str, bench: str, col: str = "delay_s") -> Callable[[pd.DataFrame], float]:
    return lambda q: _mean(q, num, bench, col) / _mean(q, den, bench, col)


def _network(q: pd.DataFrame, policy: str, bench: str) -> float:
    sel = _rows(q, policy, bench)
    return float((sel.t_uplink_s + sel.t_downlink_s).mean())


def _network_speedup(bench: str) -> Callable[[pd.DataFrame], float]:
    return lambda q: _network(q, EH, bench) / _network(q, COLLAB, bench)


def _slower_share(q: pd.DataFrame, a: str, b: str, bench: str) -> float:
    """Percentage of queries on which policy `a` answers later than policy `b`."""
    x, y = _rows(q, a, bench), _rows(q, b, bench)
    y = y.loc[x.index]
    return float((x.delay_s > y.delay_s).mean() * 100)


def _transmission_share(q: pd.DataFrame, bench: str) -> float:
    """Percentage of NoSharing's added delay over QuickGrasp that is network time (SV-D)."""
    ns, qg = _rows(q, NS, bench), _rows(q, QG, bench)
    added_net = (ns.t_uplink_s + ns.t_downlink_s).mean() - (qg.t_uplink_s + qg.t_downlink_s).mean()
    return float(added_net / (ns.delay_s.mean() - qg.delay_s.mean()) * 100)


def _accuracy_drop(q: pd.DataFrame, base: str, other: str, bench: str) -> float:
    """Percentage points of accuracy `other` loses against `base` (Fig. 12's Uncalibrated)."""
    return (_mean(q, base, bench, "correct") - _mean(q, other, bench, "correct")) * 100


def overhead_share(q: pd.DataFrame, bench: str) -> float:
    """Percentage of QuickGrasp's mean delay that is its system overhead (OVERHEAD_STAGES; Fig. 13)."""
    qg = _rows(q, QG, bench)
    over = [sum(v for k, v in dict(s).items() if k.startswith(OVERHEAD_STAGES)) for s in qg.stage_s]
    return float(np.mean(over) / qg.delay_s.mean() * 100)


def _subset_speedup(q: pd.DataFrame, base: str, bench: str, served_by: str) -> float:
    """Speedup of QuickGrasp over `base` on the queries QuickGrasp served at `served_by` (Fig. 9)."""
    qg = _rows(q, QG, bench)
    ids = qg.index[qg.served_by == served_by]
    return float(_rows(q, base, bench).loc[ids].delay_s.mean() / qg.loc[ids].delay_s.mean())


def _accelerated_share(q: pd.DataFrame) -> float:
    """Pilot (SIII-A): delay of the accelerated tokenizer + 2B model over the default one's. QuickGrasp
    runs both on every query before routing, so its local tokenize and small-infer stages are it."""
    qg = _rows(q, QG, "videomme")
    local = [sum(v for k, v in stages.items() if k.startswith(("local.tokenize.", "local.infer.small.")))
             for stages in qg.stage_s]
    return float(np.mean(local) / _mean(q, DN, "videomme"))


def _long_over_mvbench(policy: str, col: str) -> Callable[[pd.DataFrame], float]:
    return lambda q: (_mean(q, policy, "videomme", col, mask=lambda s: s.duration_s >= LONG_S)
                      / _mean(q, policy, "mvbench", col))


def _figures() -> tuple[PaperFigure, ...]:
    F: Role = "fitted"
    H: Role = "held-out"
    net_range, server_range = (2.9, 15.6), (10.0, 17.7)
    out = [
        PaperFigure("mvbench", "QuickGrasp mean delay (ms)", "SV-B, Fig. 8", (819.0, 819.0), F,
                    lambda q: _mean(q, QG, "mvbench") * 1000, (QG,)),
        PaperFigure("mvbench", "DeviceNative mean delay (ms)", "SV-B, Fig. 8", (900.0, 900.0), F,
                    lambda q: _mean(q, DN, "mvbench") * 1000, (DN,)),
        PaperFigure("videomme", "QuickGrasp speedup vs DeviceNative", "SV-B", (2.9, 2.9), F,
                    _ratio(DN, QG, "videomme"), (DN, QG)),
        PaperFigure("videomme", "QuickGrasp speedup vs Collaborative", "SV-B", (3.5, 3.5), F,
                    _ratio(COLLAB, QG, "videomme"), (COLLAB, QG)),
        PaperFigure("videomme", "QuickGrasp speedup vs EdgeHosted", "SV-B", (9.1, 9.1), F,
                    _ratio(EH, QG, "videomme"), (EH, QG)),
        PaperFigure("mlvu", "QuickGrasp speedup vs EdgeHosted", "SV-B", (12.8, 12.8), F,
                    _ratio(EH, QG, "mlvu"), (EH, QG)),
        PaperFigure("mlvu", "QuickGrasp speedup vs Collaborative", "SV-B", (4.4, 4.4), F,
                    _ratio(COLLAB, QG, "mlvu"), (COLLAB, QG)),
        PaperFigure("videomme", "accelerated / default tokenizer delay, 2B model", "SIII-A pilot: -67%",
                    (0.33, 0.33), F, _accelerated_share, (DN, QG)),
        PaperFigure("videomme", "DeviceNative decode share of delay", "Fig. 2: 42-73%", (0.42, 0.73), F,
                    lambda q: _mean(q, DN, "videomme", "decode_s") / _mean(q, DN, "videomme"), (DN,),
                    ("decode_s",)),
        PaperFigure("videomme", "2B delay, long videos / MVBench", "Fig. 2: ~14x", (14.0, 14.0), F,
                    _long_over_mvbench(DN, "delay_s"), (DN,), ("duration_s",)),
        PaperFigure("videomme", "7B edge compute, long videos / MVBench", "Fig. 2: ~15x", (15.0, 15.0), F,
                    _long_over_mvbench(EH, "t_edge_s"), (EH,), ("duration_s",)),
        PaperFigure("mvbench", "clips < 5 s: EdgeHosted / DeviceNative delay", "SV-B: EdgeHosted fastest",
                    (0.0, 1.0), F, lambda q: (_mean(q, EH, "mvbench", mask=lambda s: s.duration_s < 5)
                                              / _mean(q, DN, "mvbench", mask=lambda s: s.duration_s < 5)),
                    (EH, DN), ("duration_s",)),
        PaperFigure("mlvu", "QuickGrasp accuracy (%)", "SV-B (the densities it picks: held out)", (59.9, 59.9), H,
                    lambda q: _mean(q, QG, "mlvu", "correct") * 100, (QG,)),
        PaperFigure("mlvu", "EdgeHosted accuracy (%)", "SV-B (generator input)", (60.3, 60.3), F,
                    lambda q: _mean(q, EH, "mlvu", "correct") * 100, (EH,), generator_input=True),
        PaperFigure("mvbench", "queries where Collaborative is slower than EdgeHosted (%)", "SV-B", (73.0, 73.0), H,
                    lambda q: _slower_share(q, COLLAB, EH, "mvbench"), (COLLAB, EH)),
    ]
    benches = ("mvbench", "videomme", "mlvu")
    for b in benches:
        out.append(PaperFigure(b, "Collaborative network speedup vs EdgeHosted", "Fig. 10: 2.9-15.6x", net_range,
                               H, _network_speedup(b), (EH, COLLAB)))
    for b in benches:  # Video-MME's is fitted: without it nothing bounds the 7B's cost against tokenization
        out.append(PaperFigure(b, "Collaborative edge-compute speedup vs EdgeHosted", "Fig. 10: 10-17.7x",
                               server_range, F if b == "videomme" else H, _ratio(EH, COLLAB, b, "t_edge_s"),
                               (EH, COLLAB)))
    for b, share in zip(benches, (49.0, 89.0, 92.0)):
        out.append(PaperFigure(b, "NoSharing's added delay that is transmission (%)", "SV-D, Fig. 12",
                               (share, share), H, partial(_transmission_share, bench=b), (NS, QG)))
    for b in benches:  # Fig. 12's Uncalibrated: the text gives no numbers, only directions (read as below)
        out.append(PaperFigure(b, "Uncalibrated / QuickGrasp mean delay", "SV-D, Fig. 12: similar (read as 0.9-1.1)",
                               (0.9, 1.1), H, _ratio(UNCAL, QG, b), (QG, UNCAL)))
        out.append(PaperFigure(b, "QuickGrasp - Uncalibrated accuracy (points)",
                               "SV-D, Fig. 12: a noticeable drop (read as >= 1)", (1.0, math.inf), H,
                               partial(_accuracy_drop, base=QG, other=UNCAL, bench=b), (QG, UNCAL)))
    for b, share in zip(benches, (0.46, 0.50, 0.67)):
        out.append(PaperFigure(b, "QuickGrasp overhead share of delay (%)", "SV-D, Fig. 13", (share, share), H,
                               partial(overhead_share, bench=b), (QG,)))
    for b in benches:
        for base, name in ((EH, "EdgeHosted"), (COLLAB, "Collaborative")):
            out.append(PaperFigure(b, f"offloaded queries: QuickGrasp speedup vs {name}", "Fig. 9: 1.3-12.6x",
                                   (1.3, 12.6), H, partial(_subset_speedup, base=base, bench=b, served_by="edge"),
                                   (QG, base)))
    for b in benches:
        for base, name in ((DN, "DeviceNative"), (EH, "EdgeHosted"), (COLLAB, "Collaborative")):
            out.append(PaperFigure(b, f"local queries: QuickGrasp speedup vs {name}", "Fig. 9: 1.2-13.1x",
                                   (1.2, 13.1), H, partial(_subset_speedup, base=base, bench=b, served_by="local"),
                                   (QG, base)))
    return tuple(out)


SEED_ID = "000"
IA = "input-aware"
"""INAR-VL (seed 002) is the input-aware policy; its cloud (edge-only) is EdgeHosted."""


def _all_mean(q: pd.DataFrame, policy: str, col: str) -> float:
    return float(q[q.policy == policy][col].mean())


def _all_ratio(col: str) -> Callable[[pd.DataFrame], float]:
    return lambda q: _all_mean(q, IA, col) / _all_mean(q, EH, col)


def _all_energy_ratio(q: pd.DataFrame) -> float:
    """Device and edge energy together (per query), input-aware over edge-only."""
    def total(p: str) -> float:
        return _all_mean(q, p, "energy_j") + _all_mean(q, p, "edge_energy_j")

    return total(IA) / total(EH)


def _figures_002() -> tuple[PaperFigure, ...]:
    """Seed 002's four figures (abstract), over every query of the run (benchmark "all")."""
    F: Role = "fitted"
    H: Role = "held-out"
    return (
        PaperFigure(ALL, "INAR-VL share served on the device (%)", "abstract: 36% at the edge tier (the policy's "
                    "target_local_share)", (36.0, 36.0), F,
                    lambda q: float((q[q.policy == IA].served_by == "local").mean() * 100), (IA,)),
        PaperFigure(ALL, "INAR-VL accuracy / edge-only (%)", "abstract: 97% of cloud accuracy (generator input: "
                    "fitted small-model accuracy)", (97.0, 97.0), F, lambda q: _all_ratio("correct")(q) * 100,
                    (IA, EH), generator_input=True),
        PaperFigure(ALL, "INAR-VL mean delay / edge-only", "abstract: latency -24%", (0.76, 0.76), H,
                    _all_ratio("delay_s"), (IA, EH)),
        PaperFigure(ALL, "INAR-VL device energy / edge-only", "abstract: energy -26% (device energy per query)",
                    (0.74, 0.74), H, _all_ratio("energy_j"), (IA, EH), ("energy_j",)),
        PaperFigure(ALL, "INAR-VL device + edge energy / edge-only", "abstract: energy -26% (read as the system's)",
                    (0.74, 0.74), H, _all_energy_ratio, (IA, EH), ("energy_j", "edge_energy_j")),
    )


EC, GO, FR, RC = "entropy-crop", "global-only", "full-res", "random-crop"
CROP_POLICIES = (GO, FR, RC, EC)
"""Seed 003's policy and its baselines, in the order its plots list them."""


def _crop_acc(q: pd.DataFrame, policy: str) -> float:
    return float(q[q.policy == policy].correct.mean() * 100)


def _figures_003() -> tuple[PaperFigure, ...]:
    """Seed 003's Fig. 4 and 5 claims, over every query of the run. The paper's text gives no values,
    only orderings, so each is a range and every one is held out: the generator's assumed accuracies
    (testbed/workload/synthetic_crop.py) do not put any of them in."""
    H: Role = "held-out"
    return (
        PaperFigure(ALL, "entropy-crop bytes up / full-res", "Fig. 4: full-res accuracy reached with fewer bytes",
                    (0.0, 1.0), H, lambda q: _all_mean(q, EC, "bytes_up") / _all_mean(q, FR, "bytes_up"), (EC, FR)),
        PaperFigure(ALL, "entropy-crop accuracy - full-res's (points)", "Fig. 4: the proposed curve reaches "
                    "LLaVA-1.5-HD's accuracy (read: at most 1 point below)", (-1.0, math.inf), H,
                    lambda q: _crop_acc(q, EC) - _crop_acc(q, FR), (EC, FR)),
        PaperFigure(ALL, "entropy-crop edge prefill tokens / full-res", "Fig. 5: ... with less computation",
                    (0.0, 1.0), H, lambda q: _all_mean(q, EC, "edge_prefill_tokens")
                    / _all_mean(q, FR, "edge_prefill_tokens"), (EC, FR), ("edge_prefill_tokens",)),
        PaperFigure(ALL, "random-crop accuracy / entropy-crop's", "Fig. 4: random retransmission of the same "
                    "share lies below", (0.0, 1.0), H, lambda q: _crop_acc(q, RC) / _crop_acc(q, EC), (EC, RC)),
    )


PAPER_FIGURES = _figures()
"""Seed 000's figures this testbed reproduces: the fitted ones (the profile fit's targets, or the
synthetic generator's inputs) and the held-out ones (predictions nothing was tuned to)."""
PAPER_FIGURES_002 = _figures_002()
"""Seed 002's (INAR-VL) figures: the share and the accuracy fitted, latency and energy held out."""
PAPER_FIGURES_003 = _figures_003()
"""Seed 003's (entropy-triggered crops) claims, all held out."""
FIGURES_BY_SEED = {SEED_ID: PAPER_FIGURES, "002": PAPER_FIGURES_002, "003": PAPER_FIGURES_003}


def paper_comparison(q: pd.DataFrame, synthetic: bool = True) -> pd.DataFrame:
    """Each figure of seeds 000 and 002 that these rows can measure next to the paper's value: seed,
    role, benchmark, figure, source, paper (a value or a range), sim, error (signed, a fraction; 0
    inside a range). Figures whose policies, benchmark or columns the rows lack are left out (a
    seed-002 figure's benchmark "all" means every row). On a workload that is not `synthetic`, a
    figure fitted only as the generator's input is held out: nothing was tuned to it there."""
    have = set(q.policy) if len(q) else set()
    benches = (set(q.benchmark) | {ALL}) if len(q) else set()
    rows = []
    for seed, figures in FIGURES_BY_SEED.items():
        for f in figures:
            if not set(f.policies) <= have or f.benchmark not in benches or not set(f.columns) <= set(q.columns):
                continue
            try:
                with np.errstate(all="ignore"):
                    sim = f.measure(q)
            except ZeroDivisionError:  # e.g. a network speedup in a run without a network (--inproc)
                continue
            if not np.isfinite(sim):
                continue
            role = "held-out" if f.generator_input and not synthetic else f.role
            rows.append({"seed": seed, "role": role, "benchmark": f.benchmark, "figure": f.label,
                         "source": f.source, "paper": f.paper_text(), "sim": float(sim), "error": f.error(sim)})
    return pd.DataFrame(rows, columns=["seed", "role", "benchmark", "figure", "source", "paper", "sim", "error"])


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def comparison_cells(table: pd.DataFrame, source: bool = True) -> pd.DataFrame:
    """The comparison as display strings: fitted rows first, errors as signed percentages ("in
    range" inside a range the paper gives); with replications, sim is "mean [95% CI]"."""
    t = table.copy()
    t["role"] = pd.Categorical(t.role, ["fitted", "held-out"])
    t = t.sort_values("role", kind="stable")
    t["role"] = t.role.astype(str)
    if "sim_ci_low" in t:
        t["sim"] = [f"{_num(v)} [{_num(lo)}, {_num(hi)}]" for v, lo, hi in zip(t.sim, t.sim_ci_low, t.sim_ci_high)]
        t = t.drop(columns=["sim_ci_low", "sim_ci_high", "n"])
    else:
        t["sim"] = [_num(v) for v in t.sim]
    t["error"] = ["in range" if e == 0 and ("-" in p or p.startswith("<")) else f"{100 * e:+.0f}%"
                  for e, p in zip(t.error, t.paper)]
    keep_seed = len(set(table.seed)) > 1 if len(table) else False
    return t.drop(columns=([] if keep_seed else ["seed"]) + ([] if source else ["source"]))


def format_comparison(table: pd.DataFrame, source: bool = True) -> str:
    """The comparison as Markdown (see comparison_cells)."""
    if table.empty:
        return "(no figure of the seeds' papers is measurable on this run)"
    return format_table(comparison_cells(table, source))


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


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def policy_style(policy: str) -> dict[str, Any]:
    """One colour and marker per policy name, the same in every plot and every run: from the
    policy's place in the registry's list of names (any other name: from its CRC-32)."""
    import zlib

    from testbed.policies.registry import policy_names

    names = policy_names()
    i = names.index(policy) if policy in names else len(names) + zlib.crc32(policy.encode())
    cmap = plt.get_cmap("tab20")
    return {"color": cmap(i % 20), "marker": MARKERS[(i // 20 + i) % len(MARKERS)]}


def _save(fig: Any, path: Path, title: str, rect: tuple[float, float, float, float] | None = None) -> None:
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_delay_cdf(q: pd.DataFrame, path: Path, title: str) -> None:
    """Response-delay CDF of every policy, per benchmark."""
    benches = _benchmarks(q)
    fig, axes = _panels(benches)
    for ax, b in zip(axes, benches):
        for policy, d in q[q.benchmark == b].groupby("policy", sort=False):
            x = np.sort(d.delay_s.to_numpy())
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=policy, color=policy_style(str(policy))["color"])
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
    """Accuracy against mean delay, one point per policy (its colour and marker, named in one legend
    rather than by labels that would overlap), per benchmark; where the rows carry energy, a second
    row of panels: accuracy against the device's energy per query."""
    s = summary[summary.benchmark != ALL] if (summary.benchmark != ALL).any() else summary
    benches = list(dict.fromkeys(s.benchmark))
    energy = "energy_j_per_query" in s and s.energy_j_per_query.notna().any()
    rows = 2 if energy else 1
    fig, grid = plt.subplots(rows, len(benches), figsize=(max(7.0, 5.0 * len(benches)) + 2.0, 4.0 * rows),
                             squeeze=False)
    for col, b in enumerate(benches):
        grid[0][col].set_title(b)
        panels = [("mean_s", "mean response delay (s)")] + ([("energy_j_per_query", "device energy per query (J)")]
                                                             if energy else [])
        for r, (x, label) in enumerate(panels):
            ax = grid[r][col]
            part = s[s.benchmark == b]
            for row in part.itertuples():
                ax.scatter(getattr(row, x), row.accuracy, s=36, label=row.policy, **policy_style(str(row.policy)))
            values = part[x].to_numpy(dtype=float)
            values = values[np.isfinite(values) & (values > 0)]
            if len(values) and values.max() / values.min() >= 10:  # a wide range: log scale
                _log_x(ax, label)
            else:
                ax.set_xlabel(label)
                ax.grid(alpha=0.3)
            ax.set_ylabel("accuracy (%)")
    handles, labels = grid[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7)
    _save(fig, path, title, rect=(0, 0, 0.8, 1))


def crop_summary(q: pd.DataFrame) -> pd.DataFrame:
    """Seed 003's view of a run, one row per policy: accuracy (%), bytes up per query (MB), the edge
    LM's prefill tokens per query, the share of queries that sent a second view (a second round
    trip) and mean delay. Rows of other policies are left out."""
    mine = q[q.policy.isin(CROP_POLICIES)] if len(q) else q
    if not len(mine):
        return pd.DataFrame(columns=["policy", "queries", "accuracy", "mb_up_per_query", "prefill_tokens_per_query",
                                     "retransmit_share", "mean_s"])
    g = mine.groupby("policy", sort=False)
    return pd.DataFrame({
        "queries": g.size(), "accuracy": g.correct.mean() * 100, "mb_up_per_query": g.bytes_up.mean() / 1e6,
        "prefill_tokens_per_query": g.edge_prefill_tokens.mean(),
        "retransmit_share": g.round_trips.apply(lambda r: float((r > 1).mean())), "mean_s": g.delay_s.mean(),
    }).reset_index()


def plot_crop_tradeoff(table: pd.DataFrame, path: Path, title: str) -> None:
    """Seed 003 Fig. 4 and 5: accuracy against bytes sent up per query and against the edge's prefill
    tokens per query, one curve per policy over its threshold (rows of a sweep; one run: one point
    each), each point labelled with the share of queries retransmitted."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for policy, d in table.groupby("policy", sort=False):
        style = policy_style(str(policy))
        for ax, x in zip(axes, ("mb_up_per_query", "prefill_tokens_per_query")):
            d2 = d.sort_values(x)
            ax.plot(d2[x], d2.accuracy, linestyle="-", markersize=5, label=str(policy), **style)
            for row in d2.itertuples():
                share = float(row.retransmit_share)
                if 0 < share < 1:
                    ax.annotate(f"{share:.0%}", (getattr(row, x), row.accuracy), fontsize=6,
                                textcoords="offset points", xytext=(3, 3))
    for ax, label in zip(axes, ("MB sent up per query", "edge prefill tokens per query")):
        _log_x(ax, label)
        ax.set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=7)
    _save(fig, path, title + " (labels: share retransmitted)")


def plot_reliability(cal: Any, path: Path, title: str) -> None:
    """Reliability diagrams (seed 000 Fig. 7): per model, accuracy against confidence in each bin
    before and after temperature scaling, with the diagonal and each one's ECE (a CalibrationReport)."""
    models = list(cal.diagrams)
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(5 * max(1, len(models)), 4.3), squeeze=False)
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
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{model} model ({bins} bins)")
        ax.legend(fontsize=7, loc="upper left")
    _save(fig, path, title)


def plot_threshold_sweep(table: pd.DataFrame, picked: pd.DataFrame, path: Path, title: str) -> None:
    """Accuracy against mean delay over a threshold sweep (one line per policy, points labelled with
    their local share), the picked threshold's point marked."""
    import textwrap

    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    title = "\n".join(textwrap.wrap(title, 110))
    for i, (policy, d) in enumerate(table.groupby("policy", sort=False)):
        d = d.sort_values("tau_route")
        ax.plot(d.mean_s, d.accuracy, marker="o", markersize=3, color=f"C{i % 10}", label=policy)
        for row in d.itertuples():
            ax.annotate(f"{100 * row.local_share:.0f}%", (row.mean_s, row.accuracy), fontsize=6)
        p = picked[picked.policy == policy]
        if len(p):
            ax.scatter(p.mean_s, p.accuracy, s=120, marker="*", color=f"C{i % 10}", edgecolor="k", zorder=5,
                       label=f"{policy}: picked (tau {float(p.tau_route.iloc[0]):.3g})")
    ax.set_xlabel("mean response delay (s)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
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
    colours = {p: policy_style(p)["color"] for p in dict.fromkeys(p for _, p in curves)}
    fig, axes = _panels(benches)
    for ax, b in zip(axes, benches):
        for (bench, policy), y in curves.items():
            if bench == b:
                ax.plot(np.arange(1, len(y) + 1), y, label=policy, color=colours[policy])
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
    colours = {p: policy_style(str(p))["color"] for p in policies}
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


# -- replications ---------------------------------------------------------------------------------
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


def plot_fidelity(live: pd.DataFrame, sims: dict[str, pd.DataFrame], path: Path, title: str) -> None:
    """Sim against live delay per query, one panel per replay, a colour per policy, y = x dashed."""
    fig, axes = plt.subplots(1, len(sims), figsize=(5.5 * len(sims), 4.8), squeeze=False)
    for ax, (mode, sim) in zip(axes[0], sims.items()):
        m = live.merge(sim, on=["policy", "query_id"], suffixes=("_live", "_sim"))
        for policy, d in m.groupby("policy", sort=False):
            ax.scatter(d.delay_s_live, d.delay_s_sim, s=12, label=policy, **policy_style(str(policy)))
        lo = max(1e-3, float(min(m.delay_s_live.min(), m.delay_s_sim.min())))
        hi = float(max(m.delay_s_live.max(), m.delay_s_sim.max()))
        ax.plot([lo, hi], [lo, hi], "k--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("live delay (s)")
        ax.set_ylabel("sim delay (s)")
        ax.set_title(f"{mode} replay")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    _save(fig, path, title)
