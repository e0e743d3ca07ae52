"""A link direction as one long-lived TCP connection (ZeroMQ keeps one per peer) over a FIFO
channel: a transfer holds the channel while its segments are sent, then its last byte
propagates for RTT/2, so transfers queue behind each other and propagate in parallel.

How long a transfer is sent for:
- constant rate, no loss (slow start after idle off, the default): `bytes*8/(rate*efficiency)`,
  the window never binding (a warm connection on a loss-free path keeps a window above the BDP);
- constant rate with loss, or with slow start after idle: TCP Reno's round model
  (`testbed.tcp.send`): the window limits the rate below the BDP, losses halve it once per round
  and are retransmitted a round later on the same link, and the connection's window carries over
  from one transfer to the next (reset after idle if `slow_start_after_idle`). Segments carry
  `mtu - 52` payload bytes and take `segment*8/(rate*efficiency)` of link time each;
- a mahimahi trace: mahimahi's own link-queue rule (`testbed.bandwidth.MahimahiLink`) for the
  bytes the ZeroMQ message puts on the wire (`mahimahi_bytes`), counted from the moment the
  transfer is asked for, so a message queued behind another uses the rest of that one's last
  opportunity as mahimahi would. With loss or slow start, the same Reno model with the trace's
  mean rate for the BDP gives the window's own limit (rounds of one RTT) and its
  retransmissions, and the transfer ends at the later of the window's limit and the trace's
  delivery of all bytes, retransmissions included.

Every random draw comes from the channel's own seeded generator, in transfer order.
"""

from __future__ import annotations

from typing import Generator

import numpy as np
import simpy

from testbed import tcp
from testbed.bandwidth import TCP_IP_HEADER, TUN_HEADER, MahimahiLink, mahimahi_bytes, tcp_segments


class Channel:
    """One direction (uplink or downlink) of the device-edge link."""

    def __init__(self, env: simpy.Environment, rate_mbps: float, rtt_s: float, efficiency: float, mtu: int,
                 loss: float, rng: np.random.Generator, trace: MahimahiLink | None = None,
                 slow_start_after_idle: bool = False) -> None:
        self.env = env
        self.rate_bps = rate_mbps * 1e6
        self.rtt_s = rtt_s
        self.efficiency = efficiency
        self.mtu = mtu
        self.mss = mtu - TCP_IP_HEADER
        self.loss = loss
        self.rng = rng
        self.trace = trace
        self.slow_start_after_idle = slow_start_after_idle
        self.fifo = simpy.Resource(env, capacity=1)
        self.busy_s = 0.0  # time the channel was held (sending, window stalls and retransmissions)
        self.bytes = 0  # message bytes carried
        self.retransmitted = 0  # segments sent again
        self._cursor = 0  # trace links: byte offset into the opportunity stream, see MahimahiLink
        self._reno = self.loss > 0 or slow_start_after_idle
        if trace is None:
            self.path = tcp.RenoPath.of(rtt_s, loss, self.mss * 8 / (self.rate_bps * efficiency))
        else:  # the trace is the link; the window's own limit uses its mean rate for the BDP
            self.path = tcp.RenoPath.of(rtt_s, loss, 0.0, rtt_s * trace.mean_bps / (mtu * 8))
        if slow_start_after_idle:  # a fresh connection starts in slow start
            self.state = tcp.RenoState(min(tcp.IW, self.path.wmax), self.path.wmax)
        else:
            w = tcp.steady_window(loss, self.path.wmax)
            self.state = tcp.RenoState(w, w)
        self.rto_s = rtt_s + tcp.RTO_MIN_S
        self._last_sent_s = 0.0

    def _reno_send(self, now: float, segments: float) -> tcp.Sent:
        if self.slow_start_after_idle:
            self.state = tcp.after_idle(self.state, now - self._last_sent_s, self.rto_s)
        sent = tcp.send(segments, self.state, self.path, self.rng)
        self.state = sent.state
        self.retransmitted += sent.retransmitted
        return sent

    def send_s(self, arrival_s: float, nbytes: int) -> float:
        """Seconds the channel is held for `nbytes`, asked for at `arrival_s` and granted now."""
        now = self.env.now
        if nbytes <= 0:
            return 0.0
        if self.trace is None:
            if not self._reno:
                return nbytes * 8 / (self.rate_bps * self.efficiency)
            return self._reno_send(now, nbytes / self.mss).duration_s
        wire = mahimahi_bytes(nbytes, self.mtu)
        window_s = 0.0
        if self._reno:
            sent = self._reno_send(now, tcp_segments(nbytes, self.mtu))
            window_s = sent.duration_s
            wire += sent.retransmitted * (self.mtu + TUN_HEADER)
        end, self._cursor = self.trace.deliver(arrival_s, wire, self._cursor)
        return max(end - now, window_s, 0.0)

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
            self._last_sent_s = self.env.now
        yield self.env.timeout(self.rtt_s / 2)
        return waited

