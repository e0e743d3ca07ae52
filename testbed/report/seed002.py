"""Seed 002 (INAR-VL): its routing share, accuracy, latency and energy figures."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from testbed.report.figures import PaperFigure, Role
from testbed.report.seed000 import EH
from testbed.report.summary import ALL

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


FIGURES = _figures_002()
