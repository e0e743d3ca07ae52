"""The paper comparison on hand-made rows (issue 25 item 1): NoSharing's transmission share is a
share or is left out with a note; a generator input is held out where no generator made the
answers; a real run's measured column is named for what it holds."""

from __future__ import annotations

import pandas as pd
import pytest

from testbed import report
from testbed.results import comparison_md

SHARE = "NoSharing's added delay that is transmission (%)"


def rows(ns: tuple[float, float], qg: tuple[float, float], bench: str = "mvbench", n: int = 4) -> pd.DataFrame:
    """n queries of NoSharing, QuickGrasp and EdgeHosted on `bench`: (delay, network time) per query
    for NoSharing and QuickGrasp (split 2:1 between uplink and downlink); EdgeHosted answers half right."""
    out = []
    for policy, (delay, net) in ((report.NS, ns), (report.QG, qg), (report.EH, (2.0, 1.0))):
        for i in range(n):
            out.append({"policy": policy, "benchmark": bench, "query_id": f"q{i}", "delay_s": delay,
                        "t_uplink_s": net * 2 / 3, "t_downlink_s": net / 3, "t_edge_s": 0.1, "correct": i % 2 == 0,
                        "served_by": "edge", "stage_s": {}})
    return pd.DataFrame(out)


def share_row(table: pd.DataFrame) -> pd.DataFrame:
    return table[table.figure == SHARE]


def test_the_share_is_the_added_network_time_over_the_added_delay():
    """NoSharing 3.0 s with 1.5 s on the network, QuickGrasp 1.0 s with 0.5 s: of 2.0 s added, 1.0 s
    is transmission: 50%."""
    table = report.paper_comparison(rows((3.0, 1.5), (1.0, 0.5)))
    (value,) = share_row(table).sim
    assert value == pytest.approx(50.0)
    assert report.comparison_notes(table) == []


@pytest.mark.parametrize("ns,qg,why", [
    ((0.5, 0.4), (1.0, 0.1), "not slower"),             # NoSharing faster: no added delay (today: a share of -60%)
    ((3.0, 0.0), (1.0, 0.5), "not a part of"),           # less network time than QuickGrasp: -25% today
    ((1.5, 1.0), (1.0, 0.1), "not a part of"),           # more network time than the whole increase: 180% today
])
def test_a_share_outside_0_to_100_is_left_out_with_a_note(ns, qg, why):
    table = report.paper_comparison(rows(ns, qg))
    assert share_row(table).empty
    (note,) = report.comparison_notes(table)
    assert SHARE in note and "mvbench" in note and why in note
    md = "\n".join(comparison_md(table, "measured"))
    assert note in md and "| measured |" in md


def test_a_generator_input_is_fitted_only_where_the_generator_made_the_answers():
    q = rows((3.0, 1.5), (1.0, 0.5), bench="mlvu")
    figure = "EdgeHosted accuracy (%)"
    sim = report.paper_comparison(q, synthetic=True)
    real = report.paper_comparison(q, synthetic=False)
    assert sim[sim.figure == figure].role.tolist() == ["fitted"]
    assert real[real.figure == figure].role.tolist() == ["held-out"]
    assert real[real.figure == figure].sim.tolist() == [50.0]


def test_the_measured_column_is_named_for_the_run():
    table = report.paper_comparison(rows((3.0, 1.5), (1.0, 0.5)))
    assert "sim" in report.comparison_cells(table).columns
    live = report.comparison_cells(table, measured="measured")
    assert "measured" in live.columns and "sim" not in live.columns
    assert live.measured.tolist() == report.comparison_cells(table).sim.tolist()


def test_in_range_is_said_of_ranges_and_bounds_not_of_points():
    """A zero error reads "in range" for a range or a one-sided bound the paper gives, "+0%" for a point
    (a negative point included: its minus sign does not make it a range)."""
    papers = ["1.3-12.6", "< 5", ">= 1", ">= -1", "819", "-2"]
    table = pd.DataFrame({"seed": "000", "role": "held-out", "benchmark": "all", "figure": [f"f{i}" for i in range(6)],
                          "source": "s", "paper": papers, "sim": [1.0] * 6, "error": [0.0] * 6})
    cells = report.comparison_cells(table)
    assert dict(zip(cells.paper, cells.error)) == {"1.3-12.6": "in range", "< 5": "in range", ">= 1": "in range",
                                                   ">= -1": "in range", "819": "+0%", "-2": "+0%"}
