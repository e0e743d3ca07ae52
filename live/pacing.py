"""User-space link emulation in the transport: what the kernel does not shape here, the client does.

A `Pacer` is one direction of a link, modelled exactly as the sim's Channel (sim/link.py): a FIFO
that serializes a message at rate*efficiency (or over a mahimahi trace with MTU*efficiency bytes
(`MahimahiLink.deliver` with mahimahi's 1504-byte opportunities, as the sim uses it), then holds it for the
one-way delay RTT/2, plus one RTT per lost packet when a loss rate is set. It does not sleep itself:
`schedule(now, nbytes)` reserves the link and returns when the message may be handed on, and the
client waits until then (before sending an upload, after receiving a reply). The link is held only
while serializing, so messages pipeline behind each other as in the sim.

Modes: delay only (rate shaped by tbf/htb in the kernel, no netem for the delay), rate and delay
(the user-space backend on loopback), trace and delay (user-space pacing by a mahimahi trace).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from testbed.bandwidth import MahimahiLink, mahimahi_bytes


class Pacer:
    """One link direction in user space. Thread-safe: threads of one client share the link."""

    def __init__(self, *, delay_s: float = 0.0, rate_mbps: float | None = None, efficiency: float = 1.0,
                 trace: MahimahiLink | None = None, trace_origin: float = 0.0, loss: float = 0.0,
                 rtt_s: float = 0.0, mtu: int = 1500, seed: int = 0) -> None:
        if delay_s < 0 or not math.isfinite(delay_s):
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        if rate_mbps is not None and not rate_mbps > 0:
            raise ValueError(f"rate_mbps must be > 0, got {rate_mbps}")
        if not 0 < efficiency <= 1:
            raise ValueError(f"efficiency must be in (0, 1], got {efficiency}")
        if not 0 <= loss < 1:
            raise ValueError(f"loss must be in [0, 1), got {loss}")
        self.delay_s = delay_s
        self.rate_bps = None if rate_mbps is None else rate_mbps * 1e6
        self.efficiency = efficiency
        self.trace = trace
        self.trace_origin = trace_origin
        self.loss = loss
        self.rtt_s = rtt_s
        self.mtu = mtu
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._free_at = -math.inf  # when the link finishes serializing what it already holds
        self._next_opportunity = 0  # trace links: a byte cursor into the opportunity stream (see MahimahiLink)

    @property
    def shapes_rate(self) -> bool:
        return self.rate_bps is not None or self.trace is not None

    def describe(self) -> str:
        rate = "trace" if self.trace is not None else \
            "kernel" if self.rate_bps is None else f"{self.rate_bps / 1e6:g} Mbit/s x {self.efficiency:.4g}"
        return f"rate {rate}, delay {self.delay_s * 1000:g} ms" + (f", loss {self.loss:g}" if self.loss else "")

    def schedule(self, now: float, nbytes: int) -> float:
        """Reserve the link for a message of `nbytes` offered at monotonic time `now`; return the
        monotonic time at which it has crossed (serialized, propagated, lost packets resent)."""
        with self._lock:
            done = now
            if self.trace is not None:  # mahimahi's rule, as the sim: queue bytes, a byte cursor
                start = max(now, self._free_at) - self.trace_origin
                end, self._next_opportunity = self.trace.deliver(max(start, 0.0), mahimahi_bytes(nbytes, self.mtu),
                                                                 self._next_opportunity)
                done = end + self.trace_origin
                self._free_at = done
            elif self.rate_bps is not None:
                done = max(now, self._free_at) + nbytes * 8 / (self.rate_bps * self.efficiency)
                self._free_at = done
            lost = 0
            if self.loss > 0 and nbytes > 0:
                lost = int(self._rng.binomial(math.ceil(nbytes / (self.mtu * self.efficiency)), self.loss))
            return done + self.delay_s + lost * self.rtt_s


@dataclass(frozen=True)
class UserLink:
    """Both directions of the user-space part of a link: `up` paces requests before they are sent,
    `down` holds replies after they arrive. Either may be None (the kernel does all of it)."""

    up: Pacer | None
    down: Pacer | None

    def describe(self) -> str:
        up = self.up.describe() if self.up else "kernel"
        return f"up: {up}; down: {self.down.describe() if self.down else 'kernel'}"
