"""Bandwidth traces: the Pensieve "cooked" format (time_s, Mbit/s) and mahimahi's (one line per
delivery opportunity, in ms; the trace repeats with the last timestamp as its period).

Pure functions: conversion, scaling to a target mean, how a ZeroMQ message becomes the bytes that
mahimahi's link queue carries, and when a transfer that arrives at time t is delivered over a
trace (used by the sim link and, later, user-space shaping).

mahimahi's link (src/frontend/link_queue.cc, LinkQueue::rationalize, ravinet/mahimahi at
ae477d4) delivers, at each opportunity, up to PACKET_SIZE = 1504 bytes of the FIFO queue of
packets read from its TUN device: a packet may be split across opportunities, several small
ones share one, and bytes left unused when the queue runs empty are lost. Opportunities at or
before the millisecond a packet arrives are burned before it is queued, so a packet only uses
opportunities stamped strictly after its arrival millisecond. At the end of the trace the
schedule repeats with the last stamp as the period (base += last stamp), so a 0-ms stamp of
cycle c falls at c * period.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from testbed.errors import TraceError

MTU = 1500  # IP bytes per opportunity in mahimahi's trace format (what mean rates count)
OPPORTUNITY_BYTES = 1504  # mahimahi's PACKET_SIZE: a 1500-byte IP packet plus the 4-byte TUN header
TUN_HEADER = 4  # struct tun_pi: mahimahi opens its TUN device without IFF_NO_PI
TCP_IP_HEADER = 52  # IPv4 20 + TCP 20 + the timestamp option 12 (Linux default): MSS 1448 at MTU 1500


def zmtp_bytes(nbytes: int) -> int:
    """TCP payload of one ZeroMQ message of `nbytes` (one ZMTP 3 frame: a flags byte and a 1-byte
    size up to 255 bytes, else an 8-byte size)."""
    return nbytes + (2 if nbytes <= 255 else 9)


def tcp_segments(nbytes: int, mtu: int = MTU) -> int:
    """TCP segments that carry one ZeroMQ message of `nbytes` (MSS = mtu - 52)."""
    return -(-zmtp_bytes(nbytes) // (mtu - TCP_IP_HEADER)) if nbytes > 0 else 0


def mahimahi_bytes(nbytes: int, mtu: int = MTU) -> int:
    """Bytes one ZeroMQ message of `nbytes` puts into mahimahi's link queue: its ZMTP payload cut
    into MSS-sized segments, each with its IP/TCP header and the TUN header. A full segment is
    1448 + 52 + 4 = 1504 bytes, exactly one opportunity."""
    if nbytes <= 0:
        return 0
    return zmtp_bytes(nbytes) + tcp_segments(nbytes, mtu) * (TCP_IP_HEADER + TUN_HEADER)


def read_cooked(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(time_s, Mbit/s) samples of a cooked trace; times strictly increasing, rates >= 0."""
    try:
        with warnings.catch_warnings():  # an empty file: said below, in one line
            warnings.simplefilter("ignore", UserWarning)
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
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not a mahimahi trace (not text: byte {exc.start}); one integer (ms) per line") \
            from None
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None
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
    """The same variability at another mean: per-ms opportunity counts (0 ms through the period)
    are multiplied and re-quantised. Opportunities stamped 0 ms keep their own bin, and the last
    opportunity stays at the period so that the trace repeats as before."""
    if target_mbps <= 0:
        raise TraceError("target mean rate must be > 0")
    period = int(stamps[-1])
    counts = np.bincount(stamps, minlength=period + 1).astype(np.float64)
    factor = target_mbps / mean_mbps(stamps, mtu)
    whole = np.floor(np.cumsum(counts * factor) + 1e-9).astype(np.int64)
    out = np.repeat(np.arange(period + 1, dtype=np.int64), np.diff(np.concatenate([[0], whole])))
    if len(out) == 0:
        raise TraceError(f"scaling to {target_mbps} Mbit/s leaves no opportunity in the trace")
    out[-1] = period  # mahimahi's period is the last stamp: keep it
    return out


def _arrival_ms(t_s: float) -> int:
    """mahimahi's clock: whole milliseconds. A time within 1 ns below a millisecond boundary is
    taken as that millisecond (sim times that are sums of whole-ms trace times carry float error)."""
    return math.floor(t_s * 1000.0 + 1e-6)


@dataclass(frozen=True)
class MahimahiLink:
    """One direction of a trace-driven link, started at time 0 (mahimahi's base timestamp), with
    mahimahi's delivery rule (see the module docstring). Opportunities are numbered absolutely,
    counting across repeats; a byte cursor into that stream of `opportunity_bytes`-byte
    opportunities is all the state a FIFO link needs."""

    stamps_ms: np.ndarray
    opportunity_bytes: int = OPPORTUNITY_BYTES

    @property
    def period_ms(self) -> int:
        return int(self.stamps_ms[-1])

    @property
    def mean_bps(self) -> float:
        """IP-layer mean rate (MTU bytes per opportunity), as `mean_mbps` counts it."""
        return mean_mbps(self.stamps_ms) * 1e6

    def time_of(self, index: int) -> float:
        """Seconds at which absolute opportunity `index` (counting across repeats) occurs."""
        cycles, pos = divmod(index, len(self.stamps_ms))
        return (cycles * self.period_ms + int(self.stamps_ms[pos])) / 1000.0

    def first_after(self, t_s: float) -> int:
        """Absolute index of the first opportunity stamped strictly after the millisecond of `t_s`."""
        cycle, offset = divmod(_arrival_ms(t_s), self.period_ms)
        # an integer key keeps searchsorted from casting the whole trace to float on every call
        return cycle * len(self.stamps_ms) + int(np.searchsorted(self.stamps_ms, np.int64(offset), side="right"))

    def deliver(self, arrival_s: float, nbytes: int, cursor: int = 0) -> tuple[float, int]:
        """(time the last byte is delivered, new cursor) for `nbytes` of queue bytes (see
        `mahimahi_bytes`) that arrive at `arrival_s` behind bytes up to `cursor` (a byte offset
        into the opportunity stream: everything before it is used or burned)."""
        if nbytes <= 0:
            return arrival_s, cursor
        start = max(cursor, self.first_after(arrival_s) * self.opportunity_bytes)
        end = start + nbytes
        return self.time_of((end - 1) // self.opportunity_bytes), end

    def finish_s(self, arrival_s: float, nbytes: int) -> float:
        """Delivery time of the last of `nbytes` queue bytes arriving at `arrival_s` on an idle link."""
        return self.deliver(arrival_s, nbytes)[0]
