"""How much of this machine other processes used while we measured: a live run's stage times and a
profile's medians are only comparable when both ran on an otherwise quiet machine.

Reads /proc/stat (all CPUs' busy time) and os.times() (this process and its waited-for children,
such as the edge node a live run starts) at the start and the end; what the machine spent beyond
ours, over wall time x CPUs, is the foreign share. None where /proc/stat is missing (not Linux).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (guest is inside user)


def machine_busy_s(stat: str) -> float:
    """Busy CPU-seconds of all CPUs since boot from the text of /proc/stat."""
    fields = stat.splitlines()[0].split()
    if fields[0] != "cpu":
        raise ValueError("not /proc/stat: its first line is not the 'cpu' total")
    ticks = [int(x) for x in fields[1:]]
    return sum(ticks[i] for i in BUSY_FIELDS if i < len(ticks)) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU-seconds of this process and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass(frozen=True)
class Sample:
    wall: float
    machine: float
    own: float


def sample(stat: Path = Path("/proc/stat")) -> Sample | None:
    try:
        return Sample(time.monotonic(), machine_busy_s(stat.read_text()), own_cpu_s())
    except (OSError, ValueError, IndexError):
        return None


def foreign_share(start: Sample | None, end: Sample | None, cpus: int | None = None) -> float | None:
    """The share of all CPUs that processes other than ours used between two samples."""
    if start is None or end is None or end.wall <= start.wall:
        return None
    n = cpus or os.cpu_count() or 1
    other = (end.machine - start.machine) - (end.own - start.own)
    return max(0.0, other) / ((end.wall - start.wall) * n)


class ForeignLoad:
    """Context manager: `share` is the foreign share of the CPUs over the block (None if unknown)."""

    def __init__(self) -> None:
        self.share: float | None = None
        self._start: Sample | None = None

    def __enter__(self) -> ForeignLoad:
        self._start = sample()
        return self

    def __exit__(self, *exc: object) -> None:
        self.share = foreign_share(self._start, sample())

