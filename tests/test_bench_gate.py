"""The bench's ratio helpers (tests/bench/conftest.py): three significant digits, interleaved timing,
the best-of ratio and its spread, the regression tolerance, and reading the saved history."""

from __future__ import annotations

import json

from tests.bench.conftest import floor_for, interleave, load_history, ratio_of_bests, sig3, tolerance


def test_three_significant_digits():
    assert [sig3(v) for v in (1.7, 123.4, 0.045678, 12345.0, 2.0, 0.5)] == \
        ["1.70", "123", "0.0457", "1.23e+04", "2.00", "0.500"]


def test_interleave_rotates_the_order_and_times_each_call():
    calls: list[str] = []
    ticks = iter(range(100))
    times = interleave({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3,
                       clock=lambda: float(next(ticks)))
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert times == {"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 1.0]}


def test_ratio_of_bests_and_its_spread_by_hand():
    value, spread = ratio_of_bests([4.0, 5.0, 6.0, 4.4], [2.0, 2.0, 2.5, 2.2])
    assert value == 2.0  # min 4 / min 2
    halves = (4.0 / 2.0, 4.4 / 2.0)  # even rounds, odd rounds
    assert abs(spread - (halves[1] - halves[0]) / 2.0) < 1e-12


def test_tolerance_grows_with_the_spread_and_the_floor_is_the_lowest_saved_less_it():
    assert tolerance(0.0) == 0.20
    assert abs(tolerance(0.1) - 0.30) < 1e-12
    assert tolerance(1.0) == 0.5  # capped
    history = {"r": [2.5, 2.0, 3.0]}
    assert floor_for("r", 0.0, history) == 1.6 and floor_for("other", 0.0, history) is None


def test_history_reads_both_formats(tmp_path):
    path = tmp_path / "ratios.json"
    path.write_text(json.dumps({"old": 1.5, "new": [1.0, 2.0]}))
    assert load_history(path) == {"old": [1.5], "new": [1.0, 2.0]}
    assert load_history(tmp_path / "missing.json") == {}
