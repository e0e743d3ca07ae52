"""Benchmarks report speed as ratios measured inside one run, higher is better, each printed with three
significant digits and one line saying what it compares.

`compare_speed` times a baseline and our code interleaved (baseline, ours, ours, baseline, ... the order
rotating every round), so drift in the load of a shared machine hits both alike, and takes the best
(minimum) time of each: the run least disturbed by other processes. `record_ratio` records a ratio a
test computed itself. At the end of `make bench` the ratios are compared with .benchmarks/ratios-v2.json,
which keeps each ratio's last HISTORY values, and then saved there.

The regression gate fires when a ratio falls below the lowest of its last HISTORY saved values (the same
code's spread across runs and loads) by more than the tolerance: 20%, or three times the spread this run
measured (the two halves of the rounds disagreeing) if that is more, at most 50%. (Against the median,
identical code raised a false REGRESSION about once in six runs on this shared machine.) A ratio below the
gate is measured again with twice the rounds before it counts.
Ratios that need a second core (threads, pipelines, child processes) are gated only when the machine's
other processes left it free: their lines say so when the gate was skipped, and only such quiet values
enter the saved history.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import pytest

from testbed.live.busy import ForeignLoad

RATIOS = Path(".benchmarks") / "ratios-v2.json"
"""v2: ratios measured interleaved, best of rounds, some in CPU time (issue 24); the v1 file's single values,
measured otherwise, are not compared with."""
TOLERANCE = 0.20
HISTORY = 5
SPREAD_FACTOR = 3.0
MAX_TOLERANCE = 0.5
QUIET_CORES = 0.25
"""The machine counts as quiet when processes other than ours used under this many cores' worth of CPU
time while a ratio was measured (from /proc/stat against our own CPU time, live/busy.py)."""

DESCRIPTIONS = {
    "engine_reshaped_over_baseline": "simulated queries/s of this tree / the commit before the core was reshaped",
}
"""What a ratio compares, for benches that record a ratio without saying (kept here, not in their file)."""


@dataclass
class Measured:
    """One ratio of this run: its value, what it compares, its relative spread and the load it saw."""

    value: float
    what: str
    spread: float = 0.0
    foreign_cores: float | None = None
    needs_idle_core: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def quiet(self) -> bool:
        return self.foreign_cores is not None and self.foreign_cores < QUIET_CORES

    @property
    def gated(self) -> bool:
        """Whether the regression gate applies: always, or for a two-core ratio only on a quiet machine."""
        return not self.needs_idle_core or self.quiet


_measured: dict[str, Measured] = {}


def sig3(v: float) -> str:
    """A number with three significant digits: 1.70, 12.3, 0.0457, 1.23e+04."""
    if not math.isfinite(v) or v == 0:
        return f"{v:g}"
    text = f"{v:#.3g}"
    return text[:-1] if text.endswith(".") else text


def load_history(path: Path = RATIOS) -> dict[str, list[float]]:
    """Saved ratios, name -> last values (the oldest first); a file of single values (the old format) reads
    as histories of one."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {k: [float(x) for x in (v if isinstance(v, list) else [v])] for k, v in data.items()}


def tolerance(spread: float) -> float:
    """The relative fall a ratio may show before it counts as a regression: 20%, or three times the spread
    this run's halves showed if that is more (at most 50%)."""
    return min(MAX_TOLERANCE, max(TOLERANCE, SPREAD_FACTOR * spread))


def floor_for(name: str, spread: float, history: dict[str, list[float]]) -> float | None:
    """The lowest value of `name` that passes the regression gate: the lowest of its saved values (the same
    code's spread between runs and loads) less the tolerance; None without saved values."""
    past = history.get(name)
    if not past:
        return None
    return min(past) * (1 - tolerance(spread))


def interleave(fns: dict[str, Callable[[], object]], rounds: int,
               clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Wall times of each function, called in turn `rounds` times, the order rotating every round."""
    names = list(fns)
    out: dict[str, list[float]] = {n: [] for n in names}
    for i in range(rounds):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t0 = clock()
            fns[name]()
            out[name].append(clock() - t0)
    return out


def ratio_of_bests(baseline: list[float], ours: list[float]) -> tuple[float, float]:
    """(min(baseline) / min(ours), relative spread): the spread is how far the ratios of the two halves
    of the rounds (even and odd) lie apart, relative to the ratio; 0 with fewer than 2 rounds each."""
    value = min(baseline) / min(ours)
    if len(baseline) < 2 or len(ours) < 2:
        return value, 0.0
    halves = [min(baseline[i::2]) / min(ours[i::2]) for i in (0, 1)]
    return value, abs(halves[0] - halves[1]) / value


def _record(benchmark, name: str, m: Measured) -> None:  # type: ignore[no-untyped-def]
    _measured[name] = m
    benchmark.extra_info[name] = m.value
    load = "" if m.foreign_cores is None else f"; other processes used {m.foreign_cores:.2f} cores"
    print(f"\nratio {name}: {sig3(m.value)} ({m.what}{load})" + "".join(f"\n  note: {n}" for n in m.notes))


@pytest.fixture
def record_ratio(benchmark):  # type: ignore[no-untyped-def]
    """record(name, value, what="", *, spread=0.0, needs_idle_core=False, foreign_cores=None) -> Measured:
    a ratio this test computed (higher is better) and what it compares."""

    def record(name: str, value: float, what: str = "", *, spread: float = 0.0, needs_idle_core: bool = False,
               foreign_cores: float | None = None) -> Measured:
        m = Measured(float(value), what or DESCRIPTIONS.get(name, "higher is better"), spread, foreign_cores,
                     needs_idle_core)
        _record(benchmark, name, m)
        return m

    return record


def _foreign_cores(load: ForeignLoad) -> float | None:
    return None if load.share is None else load.share * (os.cpu_count() or 1)


def machine_load(seconds: float = 0.3) -> float | None:
    """Cores' worth of CPU that other processes use, measured while this process sleeps (for benches whose
    own child processes would otherwise count as foreign); None where /proc/stat is missing."""
    with ForeignLoad() as load:
        time.sleep(seconds)
    return _foreign_cores(load)


CPU = time.thread_time
"""The clock for single-threaded comparisons: this thread's CPU time, which other processes' load barely
moves (time waiting for a core is not counted)."""


@pytest.fixture
def compare_speed(benchmark):  # type: ignore[no-untyped-def]
    """compare(name, what, baseline, ours, *, rounds=5, needs_idle_core=False, clock=time.perf_counter,
    at_least=None) -> Measured: best time of `baseline` / best time of `ours`, timed interleaved. Below the
    regression gate or below `at_least`, it is measured again with twice the rounds (all rounds count).
    `at_least` is then asserted (for a ratio that needs an idle core, only when the machine was quiet;
    otherwise a note says why not). The first call of `ours` is pytest-benchmark's figure and a warm-up."""
    history = load_history()

    def compare(name: str, what: str, baseline: Callable[[], object], ours: Callable[[], object], *,
                rounds: int = 5, needs_idle_core: bool = False, clock: Callable[[], float] = time.perf_counter,
                at_least: float | None = None) -> Measured:
        if getattr(benchmark, "_mode", None):
            ours()
        else:
            benchmark.pedantic(ours, rounds=1, iterations=1)
        baseline()  # warm-up
        fns = {"baseline": baseline, "ours": ours}

        def measure(n: int) -> tuple[dict[str, list[float]], float | None]:
            with ForeignLoad() as load:
                times = interleave(fns, n, clock)
            return times, _foreign_cores(load)

        times, foreign = measure(rounds)
        value, spread = ratio_of_bests(times["baseline"], times["ours"])
        m = Measured(value, what, spread, foreign, needs_idle_core)
        floor = max(floor_for(name, spread, history) or 0.0, at_least or 0.0)
        if value < floor and m.gated:
            more, foreign = measure(2 * rounds)
            times = {k: times[k] + more[k] for k in fns}
            value, spread = ratio_of_bests(times["baseline"], times["ours"])
            m = Measured(value, what, spread, foreign, needs_idle_core,
                         [f"below {sig3(floor)} at first: measured again with {2 * rounds} more rounds"])
        _record(benchmark, name, m)
        if at_least is not None:
            idle_core_gate(m, at_least, name)
        return m

    return compare


def idle_core_gate(m: Measured, floor: float, what: str) -> None:
    """Assert `m.value >= floor`, where a ratio that needs a second core is asserted only when other
    processes left the machine quiet; on a busy machine, say why the gate was skipped."""
    if m.gated:
        assert m.value >= floor, f"{what}: {sig3(m.value)} < {sig3(floor)}"
        return
    seen = "an unknown number of" if m.foreign_cores is None else f"{m.foreign_cores:.2f}"
    print(f"  note: gate {what} >= {sig3(floor)} skipped: other processes used {seen} cores "
          f"(it applies under {QUIET_CORES})")


def pytest_sessionfinish(session, exitstatus):  # type: ignore[no-untyped-def]
    if not _measured:
        return
    history = load_history()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    worse = []
    for k, m in sorted(_measured.items()):
        floor = floor_for(k, m.spread, history)
        past = history.get(k, [])
        was = f"; lowest of the last {len(past)} saved {sig3(min(past))}" if past else ""
        skipped = "" if m.gated else "; regression gate skipped, the machine was busy"
        reporter.write_line(f"ratio {k}: {sig3(m.value)} ({m.what}{was}{skipped})")
        if floor is not None and m.gated and m.value < floor:
            worse.append((k, m, floor))
    for k, m, floor in worse:
        reporter.write_line(f"REGRESSION {k}: {sig3(m.value)} < {sig3(floor)} (lowest of the last {len(history[k])} "
                            f"saved less {tolerance(m.spread):.0%})", red=True)
    saved = {k: (v + [_measured[k].value])[-HISTORY:] if k in _measured and _measured[k].gated else v
             for k, v in history.items()}
    saved.update({k: [m.value] for k, m in _measured.items() if k not in history and m.gated})
    RATIOS.parent.mkdir(exist_ok=True)
    RATIOS.write_text(json.dumps(saved, indent=2, sort_keys=True))
    if worse:
        session.exitstatus = 1
