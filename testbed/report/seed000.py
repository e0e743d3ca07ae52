"""Seed 000 (QuickGrasp): the policies standing for its solutions and the figures of its evaluation
this testbed measures (Fig. 2, 8-13, Table 1), each fitted or held out."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from testbed.report.figures import PaperFigure, Role, Unmeasurable

SEED_ID = "000"

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
        out.append(PaperFigure(b, "QuickGrasp overhead share of delay (fraction)", "SV-D, Fig. 13", (share, share), H,
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


FIGURES = _figures()
