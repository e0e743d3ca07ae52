"""Seed 003 (entropy-triggered crops): its claims as orderings, the crop policies' accuracy and bytes
per threshold (crop_summary), and its section of a results folder (crop.csv, registered)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from testbed.artifacts import section
from testbed.report.figures import PaperFigure, Role
from testbed.report.seed002 import _all_mean
from testbed.report.summary import ALL, format_table

if TYPE_CHECKING:
    from testbed.results import RunResult

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


FIGURES = _figures_003()


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


@section("crop", order=20)
def crop_section(out: Path, run: RunResult, title: str, plots: bool) -> list[str]:
    """crop.csv (crop_summary with each policy's plan, the crop_plans artifact) and, with `plots`,
    accuracy_vs_bytes.png; the summary.md section on them. Nothing for a run without crop policies."""
    crop = crop_summary(run.queries)
    if not len(crop):
        return []
    plans = pd.DataFrame(list(run.rows_of("crop_plans")), columns=[
        "policy", "target", "h_min_threshold", "profile_queries", "profile_retransmit_share", "profile_accuracy"])
    crop.merge(plans, on="policy", how="left").to_csv(out / "crop.csv", index=False)
    if plots:
        from testbed.report.plots import plot_crop_tradeoff

        plot_crop_tradeoff(crop, out / "accuracy_vs_bytes.png", title)
    return ["## Crop retransmission (seed 003)", "", "Accuracy against bytes sent up and the edge's prefill tokens "
            "(`crop.csv`, `accuracy_vs_bytes.png`); retransmit_share: queries that sent a second view.", "",
            format_table(crop), ""]
