"""The routing section of a results folder (registered with testbed.artifacts): the thresholds the
confidence and input-aware routers picked for a target (seed 000's targets, seed 002's router),
with what they reached on the test split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from testbed.artifacts import section
from testbed.report.summary import format_table

if TYPE_CHECKING:
    from testbed.results import RunResult


@section("routing", order=10)
def routing_section(out: Path, run: RunResult, title: str, plots: bool) -> list[str]:
    """routing.csv (the routing artifact's rows); the summary.md section on it."""
    rows = run.rows_of("routing")
    if not rows:
        return []
    table = pd.DataFrame(list(rows))
    table.to_csv(out / "routing.csv", index=False)
    return ["## Thresholds picked for a target", "", "Picked on the profiling split (the score a share of its "
            "queries reaches, or the most-local threshold meeting an accuracy); reached on the test split.", "",
            format_table(table), ""]
