"""A link direction as a FIFO channel: serialization at the shaped rate times the protocol
efficiency (or over a mahimahi trace), then one-way propagation RTT/2; loss costs an RTT per lost
packet. The channel is held only while serializing, so transfers pipeline behind each other."""

from __future__ import annotations

import math
from typing import Generator

import numpy as np
import simpy

from testbed.bandwidth import MahimahiLink


class Channel:
    """One direction (uplink or downlink) of the device-edge link."""

    def __init__(self, env: simpy.Environment, rate_mbps: float, rtt_s: float, efficiency: float, mtu: int,
                 loss: float, rng: np.random.Generator, trace: MahimahiLink | None = None) -> None:
        self.env = env
        self.rate_bps = rate_mbps * 1e6
        self.rtt_s = rtt_s
        self.efficiency = efficiency
        self.mtu = mtu
        self.loss = loss
        self.rng = rng
        self.trace = trace
        self.fifo = simpy.Resource(env, capacity=1)
        self.busy_s = 0.0
        self.bytes = 0
        self._next_opportunity = 0  # trace links: opportunities before this one are used

    def serialization_s(self, start_s: float, nbytes: int) -> float:
        """Seconds to push `nbytes` of payload onto the link starting at `start_s`."""
        if self.trace is not None:
            end, self._next_opportunity = self.trace.deliver(start_s, nbytes, self._next_opportunity)
            return end - start_s
        return nbytes * 8 / (self.rate_bps * self.efficiency)

    def transfer(self, nbytes: int) -> Generator[simpy.Event, None, None]:
        """SimPy process body: wait for the channel, serialize, propagate."""
        with self.fifo.request() as req:
            yield req
            busy = self.serialization_s(self.env.now, nbytes)
            yield self.env.timeout(busy)
            self.busy_s += busy
            self.bytes += nbytes
        lost = 0
        if self.loss > 0 and nbytes > 0:
            lost = int(self.rng.binomial(math.ceil(nbytes / (self.mtu * self.efficiency)), self.loss))
        yield self.env.timeout(self.rtt_s / 2 + lost * self.rtt_s)
