"""A link direction as one long-lived TCP connection (ZeroMQ keeps one per peer) over a FIFO
channel: a transfer holds the channel while its segments are sent, then its last byte
propagates for RTT/2, so transfers queue behind each other and propagate in parallel.

How long a transfer holds the channel is `testbed.direction.Direction`'s rule (rate, TCP Reno
under loss or slow start after idle, mahimahi traces), which live's user-space pacing uses too.
Every random draw comes from the channel's own seeded generator, in transfer order.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import simpy

from testbed.bandwidth import MahimahiLink
from testbed.direction import Direction


class Channel:
    """One direction (uplink or downlink) of the device-edge link: a FIFO in front of a
    `testbed.direction.Direction`, which says how long each transfer holds it."""

    def __init__(self, env: simpy.Environment, rate_mbps: float, rtt_s: float, efficiency: float, mtu: int,
                 loss: float, rng: np.random.Generator, trace: MahimahiLink | None = None,
                 slow_start_after_idle: bool = False, trace_offset_s: float = 0.0) -> None:
        self.env = env
        self.rtt_s = rtt_s
        self.direction = Direction(rate_mbps, rtt_s, efficiency, mtu, loss, rng, trace, slow_start_after_idle,
                                   trace_offset_s)
        self.fifo = simpy.Resource(env, capacity=1)
        self.busy_s = 0.0  # time the channel was held (sending, window stalls and retransmissions)
        self.bytes = 0  # message bytes carried

    @property
    def retransmitted(self) -> int:
        """Segments sent again (loss)."""
        return self.direction.retransmitted

    def send_s(self, arrival_s: float, nbytes: int) -> float:
        """Seconds the channel is held for `nbytes`, asked for at `arrival_s` and granted now."""
        return self.direction.send_s(arrival_s, self.env.now, nbytes)

    def transfer(self, nbytes: int) -> Generator[simpy.Event, None, float]:
        """SimPy process body: wait for the channel, send, propagate; returns the seconds waited for
        the channel (behind other transfers)."""
        arrival = self.env.now
        with self.fifo.request() as req:
            yield req
            waited = self.env.now - arrival
            busy = self.send_s(arrival, nbytes)
            yield self.env.timeout(busy)
            self.busy_s += busy
            self.bytes += nbytes
            self.direction.last_sent_s = self.env.now
        yield self.env.timeout(self.rtt_s / 2)
        return waited
