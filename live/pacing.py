"""User-space link emulation in the transport: what the kernel does not shape here, the client does.

A `Pacer` is one direction of a link, timed by the rule the sim's Channel uses
(`testbed.direction.Direction`: rate*efficiency, TCP Reno under loss, mahimahi's rule on a trace)
behind a FIFO, then held for the one-way delay RTT/2. It does not sleep itself:
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

from testbed.bandwidth import MahimahiLink
from testbed.direction import Direction


class Pacer:
    """One link direction in user space. Thread-safe: threads of one client share the link.

    With `rate_mbps` or `trace` it paces the message as the sim's Channel does (a FIFO in front of
    `testbed.direction.Direction`); with neither it only adds the delay, and, given the rate the
    kernel shapes (`kernel_rate_mbps`) and a loss rate, the time TCP Reno's window stalls and
    retransmissions add beyond the kernel's serialization."""

    def __init__(self, *, delay_s: float = 0.0, rate_mbps: float | None = None, efficiency: float = 1.0,
                 trace: MahimahiLink | None = None, trace_origin: float = 0.0, loss: float = 0.0,
                 rtt_s: float = 0.0, mtu: int = 1500, seed: int | tuple[int, ...] = 0,
                 kernel_rate_mbps: float | None = None) -> None:
        if delay_s < 0 or not math.isfinite(delay_s):
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        for name, rate in (("rate_mbps", rate_mbps), ("kernel_rate_mbps", kernel_rate_mbps)):
            if rate is not None and not rate > 0:
                raise ValueError(f"{name} must be > 0, got {rate}")
        if not 0 < efficiency <= 1:
            raise ValueError(f"efficiency must be in (0, 1], got {efficiency}")
        if not 0 <= loss < 1:
            raise ValueError(f"loss must be in [0, 1), got {loss}")
        self.delay_s = delay_s
        self.trace_origin = trace_origin
        self.shapes_rate = rate_mbps is not None or trace is not None
        rate = rate_mbps or kernel_rate_mbps
        self.direction = None
        if self.shapes_rate or (loss > 0 and rate is not None):
            self.direction = Direction(rate or 1.0, rtt_s, efficiency, mtu, loss, np.random.default_rng(seed), trace)
        self._lock = threading.Lock()
        self._free_at = -math.inf  # when the link finishes serializing what it already holds

    def schedule(self, now: float, nbytes: int) -> float:
        """Reserve the link for a message of `nbytes` offered at monotonic time `now`; return the
        monotonic time at which it has crossed (serialized, propagated, lost packets resent)."""
        d = self.direction
        if d is None:
            return now + self.delay_s
        with self._lock:
            origin = self.trace_origin
            grant = max(now, self._free_at) if self.shapes_rate else now
            held = d.send_s(now - origin, grant - origin, nbytes)
            if self.shapes_rate:
                done = self._free_at = grant + held
            else:  # the kernel serializes; what the window's stalls and resends add is ours
                done = now + max(0.0, held - nbytes * 8 / (d.rate_bps * d.efficiency))
            d.last_sent_s = done - origin
            return done + self.delay_s


@dataclass(frozen=True)
class UserLink:
    """Both directions of the user-space part of a link: `up` paces requests before they are sent,
    `down` holds replies after they arrive. Either may be None (the kernel does all of it)."""

    up: Pacer | None
    down: Pacer | None
