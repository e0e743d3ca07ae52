"""Summaries, the paper-comparison table and plots, from per-query result rows (sim or live).

Every table made from a synthetic workload carries its provenance, so it reads as synthetic.
"""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from testbed.plotstyle import BREAKDOWN_COLOURS, LINESTYLES, Style, styles_for  # noqa: E402

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


class Unmeasurable(ValueError):
    """A figure the rows hold the policies for but cannot measure (the reason is the message):
    the comparison leaves its row out and says why in a note."""


def _transmission_share(q: pd.DataFrame, bench: str) -> float:
    """Percentage of NoSharing's added delay over QuickGrasp that is network time (SV-D: of "the
    total delay increase", the part "original query transmission" accounts for). A share: measurable
    only where NoSharing is slower and its added network time lies between 0 and that increase."""
    ns, qg = _rows(q, NS, bench), _rows(q, QG, bench)
    added_net = (ns.t_uplink_s + ns.t_downlink_s).mean() - (qg.t_uplink_s + qg.t_downlink_s).mean()
    added = ns.delay_s.mean() - qg.delay_s.mean()
    if not added > 0:
        raise Unmeasurable(f"NoSharing was not slower than QuickGrasp ({ns.delay_s.mean():.3g} s against "
                           f"{qg.delay_s.mean():.3g} s mean): no added delay to split")
    if not 0 <= added_net <= added:
        raise Unmeasurable(f"NoSharing's added network time ({added_net:+.3g} s) is not a part of its added delay "
                           f"({added:.3g} s): other differences outweigh transmission")
    return float(added_net / added * 100)


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
    role, benchmark, figure, source, paper (a value or a range), sim (the measured value, in real runs
    too), error (signed, a fraction; 0 inside a range). Figures whose policies, benchmark or columns
    the rows lack are left out (a seed-002 figure's benchmark "all" means every row); so are those the
    rows cannot measure (Unmeasurable), each with a line in `attrs["notes"]` saying why. `synthetic`:
    the outcomes come from the synthetic generator (a sim run on a synthetic workload); otherwise (a
    recorded workload, or a real run, whose models give the answers) a figure fitted only as the
    generator's input is held out: nothing was tuned to it there."""
    have = set(q.policy) if len(q) else set()
    benches = (set(q.benchmark) | {ALL}) if len(q) else set()
    rows = []
    notes: list[str] = []
    for seed, figures in FIGURES_BY_SEED.items():
        for f in figures:
            if not set(f.policies) <= have or f.benchmark not in benches or not set(f.columns) <= set(q.columns):
                continue
            try:
                with np.errstate(all="ignore"):
                    sim = f.measure(q)
            except ZeroDivisionError:  # e.g. a network speedup in a run without a network (--inproc)
                continue
            except Unmeasurable as why:
                notes.append(f"seed {seed} {f.benchmark} \"{f.label}\" left out: {why}")
                continue
            if not np.isfinite(sim):
                continue
            role = "held-out" if f.generator_input and not synthetic else f.role
            rows.append({"seed": seed, "role": role, "benchmark": f.benchmark, "figure": f.label,
                         "source": f.source, "paper": f.paper_text(), "sim": float(sim), "error": f.error(sim)})
    out = pd.DataFrame(rows, columns=["seed", "role", "benchmark", "figure", "source", "paper", "sim", "error"])
    out.attrs["notes"] = notes
    return out


def comparison_notes(table: pd.DataFrame) -> list[str]:
    """The notes paper_comparison left on a table: the figures it could not measure, and why."""
    return list(table.attrs.get("notes", []))


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def comparison_cells(table: pd.DataFrame, source: bool = True, measured: str = "sim") -> pd.DataFrame:
    """The comparison as display strings: fitted rows first, errors as signed percentages ("in
    range" inside a range the paper gives); with replications, sim is "mean [95% CI]". `measured`
    heads the measured column: "sim" for a simulated run, "measured" for a real one."""
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
    t = t.drop(columns=([] if keep_seed else ["seed"]) + ([] if source else ["source"]))
    return t.rename(columns={"sim": measured})


def format_comparison(table: pd.DataFrame, source: bool = True, measured: str = "sim") -> str:
    """The comparison as Markdown (see comparison_cells)."""
    if table.empty:
        return "(no figure of the seeds' papers is measurable on this run)"
    return format_table(comparison_cells(table, source, measured))


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


def _figure(rows: int, cols: int, panel: tuple[float, float], legend: bool = True) -> tuple[Any, np.ndarray]:
    """A figure of rows x cols panels of `panel` inches each (plus room for a legend on the right)."""
    width = panel[0] * cols + (LEGEND_WIDTH_IN if legend else 0.0)
    return plt.subplots(rows, cols, figsize=(width, panel[1] * rows), squeeze=False, layout="constrained")


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
    legends = [lg.get_window_extent(renderer).width for lg in fig.legends] if fig.legends else []
    if legends:
        fig.draw_without_rendering()  # where the layout puts the legends decides how wide they are
        legends = [lg.get_window_extent(renderer).width for lg in fig.legends]
    room = (fig.bbox.width - 2 * max(legends, default=0.0)) * 0.97
    chars = max(len(title), 1)
    for _ in range(12):
        text.set_text("\n".join(textwrap.wrap(title, chars)) if chars < len(title) else title)
        wide = text.get_window_extent(renderer).width
        if wide <= room or chars <= 10:
            return
        chars = max(10, min(chars - 1, int(chars * room / wide * 0.97)))


def _save(fig: Any, path: Path, title: str) -> None:
    """Title the figure (wrapped to fit), write it at 110 dpi and close it."""
    _wrap_title(fig, fig.suptitle(title, fontsize=9), title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
