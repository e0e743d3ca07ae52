"""Bandwidth traces: the Pensieve "cooked" format (time_s, Mbit/s) and mahimahi's (one line per
1500-byte delivery opportunity, in ms; the trace repeats with the last timestamp as its period).

Pure functions: conversion, scaling to a target mean, and when a transfer that starts at time t
finishes over a trace (used by the sim link and, later, user-space shaping).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from testbed.errors import TraceError

MTU = 1500


def read_cooked(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(time_s, Mbit/s) samples of a cooked trace; times strictly increasing, rates >= 0."""
    try:
        data = np.loadtxt(path, ndmin=2)
    except FileNotFoundError:
        raise TraceError(f"bandwidth trace not found: {path}") from None
    except ValueError as exc:
        raise TraceError(f"{path}: not a 'time_s<TAB>Mbit/s' trace ({exc})") from None
    if data.shape[1] != 2 or len(data) < 2:
        raise TraceError(f"{path}: expected two columns and at least two lines")
    t, r = data[:, 0], data[:, 1]
    if np.any(np.diff(t) <= 0) or np.any(r < 0) or not np.isfinite(data).all():
        raise TraceError(f"{path}: times must increase and rates be finite and >= 0")
    return t, r


def cooked_to_mahimahi(t_s: np.ndarray, mbps: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Delivery-opportunity timestamps (integer ms) for a piecewise-constant rate.

    Each sample's rate holds until the next sample (the last one for the mean interval). Credit
    accumulates at rate/12 packets per ms (1500 bytes = 12 kbit) and one opportunity is emitted per
    whole packet of credit, so the mean rate is kept to within one packet."""
    t_s = np.asarray(t_s, dtype=np.float64)
    mbps = np.asarray(mbps, dtype=np.float64) * scale
    step = float(np.mean(np.diff(t_s)))
    ends = np.append(t_s[1:], t_s[-1] + step)
    total_ms = int(round((ends[-1] - t_s[0]) * 1000))
    ms = np.arange(total_ms)
    rate = mbps[np.searchsorted(ends, t_s[0] + (ms + 0.5) / 1000, side="right").clip(0, len(mbps) - 1)]
    credit = np.cumsum(rate * 1e6 / 8 / MTU / 1000)  # packets available by the end of each ms
    whole = np.floor(credit + 1e-9).astype(np.int64)
    counts = np.diff(np.concatenate([[0], whole]))
    out = np.repeat(ms + 1, counts)  # opportunities at the end of each ms, as mahimahi stamps them
    if len(out) == 0:
        raise TraceError("trace carries no data (all rates zero)")
    return out


def read_mahimahi(path: Path) -> np.ndarray:
    """Opportunity timestamps (ms, non-decreasing integers) from a mahimahi trace file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise TraceError(f"mahimahi trace not found: {path}") from None
    try:
        stamps = np.array([int(line) for line in text.split()], dtype=np.int64)
    except ValueError:
        raise TraceError(f"{path}: a mahimahi trace has one integer (ms) per line") from None
    if len(stamps) == 0 or np.any(np.diff(stamps) < 0) or stamps[0] < 0 or stamps[-1] <= 0:
        raise TraceError(f"{path}: timestamps must be non-negative, non-decreasing, and end after 0 ms")
    return stamps


def write_mahimahi(stamps: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(str(int(s)) for s in stamps) + "\n")


def mean_mbps(stamps: np.ndarray, mtu: int = MTU) -> float:
    """Mean rate of a mahimahi trace over its period."""
    return len(stamps) * mtu * 8 / (stamps[-1] / 1000) / 1e6


def scale_to_mean(stamps: np.ndarray, target_mbps: float, mtu: int = MTU) -> np.ndarray:
    """The same variability at another mean: per-ms opportunity counts are multiplied and re-quantised."""
    if target_mbps <= 0:
        raise TraceError("target mean rate must be > 0")
    period = int(stamps[-1])
    counts = np.bincount(stamps - 1, minlength=period).astype(np.float64) if stamps.min() >= 1 else \
        np.bincount(stamps, minlength=period + 1)[1:].astype(np.float64)
    factor = target_mbps / mean_mbps(stamps, mtu)
    whole = np.floor(np.cumsum(counts * factor) + 1e-9).astype(np.int64)
    return np.repeat(np.arange(1, period + 1), np.diff(np.concatenate([[0], whole])))


@dataclass(frozen=True)
class MahimahiLink:
    """One direction of a trace-driven link. Opportunities at or after the start carry
    `payload_per_opp` bytes each; the trace repeats every `period_ms`."""

    stamps_ms: np.ndarray
    payload_per_opp: float

    @property
    def period_ms(self) -> int:
        return int(self.stamps_ms[-1])

    def time_of(self, index: int) -> float:
        """Seconds at which absolute opportunity `index` (counting across repeats) occurs."""
        cycles, pos = divmod(index, len(self.stamps_ms))
        return (cycles * self.period_ms + float(self.stamps_ms[pos])) / 1000.0

    def deliver(self, start_s: float, nbytes: int, first_free: int = 0) -> tuple[float, int]:
        """(finish time, next unused opportunity) of a transfer starting at `start_s` that may use
        opportunities from absolute index `first_free` on; each opportunity is used once."""
        if nbytes <= 0:
            return start_s, first_free
        need = math.ceil(nbytes / self.payload_per_opp)
        cycle, offset = divmod(start_s * 1000.0, self.period_ms)
        # stamps are whole ms: the first usable one is >= ceil(offset); an integer key keeps
        # searchsorted from casting the whole trace to float on every call
        key = np.int64(math.ceil(offset - 1e-9))
        first = int(cycle) * len(self.stamps_ms) + int(np.searchsorted(self.stamps_ms, key, side="left"))
        last = max(first, first_free) + need - 1
        return self.time_of(last), last + 1

    def finish_s(self, start_s: float, nbytes: int) -> float:
        """Time the last byte of a transfer starting at `start_s` on an idle link is delivered."""
        return self.deliver(start_s, nbytes)[0]
