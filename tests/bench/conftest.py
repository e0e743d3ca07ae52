"""Benchmarks report speed as ratios measured inside one run. Each test records its ratios with
`record_ratio` (higher is better); at the end of `make bench` they are saved to
.benchmarks/ratios.json and compared with the last saved run: a ratio that fell by more than
20% fails the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RATIOS = Path(".benchmarks") / "ratios.json"
TOLERANCE = 0.20
_measured: dict[str, float] = {}


@pytest.fixture
def record_ratio(benchmark):
    def record(name: str, value: float) -> None:
        _measured[name] = float(value)
        benchmark.extra_info[name] = float(value)
        print(f"\n{name}: {value:.2f}")

    return record


def pytest_sessionfinish(session, exitstatus):
    if not _measured:
        return
    previous = json.loads(RATIOS.read_text()) if RATIOS.is_file() else {}
    worse = {k: (previous[k], v) for k, v in _measured.items() if k in previous and v < previous[k] * (1 - TOLERANCE)}
    RATIOS.parent.mkdir(exist_ok=True)
    RATIOS.write_text(json.dumps({**previous, **_measured}, indent=2, sort_keys=True))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for k, v in sorted(_measured.items()):
        was = f" (last run {previous[k]:.3g})" if k in previous else ""
        reporter.write_line(f"ratio {k}: {v:.3g}{was}")
    for k, (old, new) in worse.items():
        reporter.write_line(f"REGRESSION {k}: {new:.3g} < {old:.3g} - {TOLERANCE:.0%}", red=True)
    if worse:
        session.exitstatus = 1
