"""How long one link direction is held to send a message: the one rule the sim's Channel
(sim/link.py) and live's user-space Pacer (live/pacing.py) both use, so that a live run shaped in
user space is timed as the sim times it. Pure and seeded; the caller owns the clock and the queue.

- constant rate, no loss, no slow start after idle: `bytes*8/(rate*efficiency)`;
- constant rate with loss or slow start after idle: TCP Reno's round model (`testbed.tcp.send`),
  the connection's window carried from one message to the next (reset after idle if asked);
  segments carry `mtu - 52` payload bytes and take `segment*8/(rate*efficiency)` of link time;
- a mahimahi trace: mahimahi's link-queue rule (`MahimahiLink.deliver`) for the bytes the ZeroMQ
  message puts on the wire, counted from the message's arrival at the queue (so it uses the rest
  of the previous message's last opportunity); with loss or slow start, the later of that and the
  Reno window's own limit, retransmissions sent over the trace too.
"""

from __future__ import annotations

import numpy as np

from testbed import tcp
from testbed.bandwidth import (
    TCP_IP_HEADER,
    TUN_HEADER,
    MahimahiLink,
    mahimahi_bytes,
    tcp_segments,
)


def link_seed(seed: int, direction: int, channel: int = 0) -> tuple[int, int, int, int]:
    """The seed of one link channel's loss draws (direction 0 up, 1 down): the sim's and live's
    user-space pacer draw the same losses for the same scenario seed."""
    return (seed, 2, direction, channel)


class Direction:
    """One direction's sending state: the Reno window and the trace's byte cursor."""

    def __init__(self, rate_mbps: float, rtt_s: float, efficiency: float, mtu: int, loss: float,
                 rng: np.random.Generator, trace: MahimahiLink | None = None,
                 slow_start_after_idle: bool = False, trace_offset_s: float = 0.0) -> None:
        self.rate_bps = rate_mbps * 1e6
        self.trace_offset_s = trace_offset_s  # the trace time at this direction's clock 0 (a live run's policy start)
        self.efficiency = efficiency
        self.mtu = mtu
        self.mss = mtu - TCP_IP_HEADER
        self.rng = rng
        self.trace = trace
        self.slow_start_after_idle = slow_start_after_idle
        self.retransmitted = 0  # segments sent again
        self._cursor = 0  # trace links: byte offset into the opportunity stream, see MahimahiLink
        self.reno = loss > 0 or slow_start_after_idle
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
        self.last_sent_s = 0.0  # when the previous message's last byte left (the caller sets it)

    def _reno_send(self, now: float, segments: float) -> tcp.Sent:
        if self.slow_start_after_idle:
            self.state = tcp.after_idle(self.state, now - self.last_sent_s, self.rto_s)
        sent = tcp.send(segments, self.state, self.path, self.rng)
        self.state = sent.state
        self.retransmitted += sent.retransmitted
        return sent

    def send_s(self, arrival_s: float, now: float, nbytes: int) -> float:
        """Seconds the direction is held for `nbytes`, asked for at `arrival_s` and granted at `now`
        (trace times are the trace's own, from its start)."""
        if nbytes <= 0:
            return 0.0
        if self.trace is None:
            if not self.reno:
                return nbytes * 8 / (self.rate_bps * self.efficiency)
            return self._reno_send(now, nbytes / self.mss).duration_s
        wire = mahimahi_bytes(nbytes, self.mtu)
        window_s = 0.0
        if self.reno:
            sent = self._reno_send(now, tcp_segments(nbytes, self.mtu))
            window_s = sent.duration_s
            wire += sent.retransmitted * (self.mtu + TUN_HEADER)
        off = self.trace_offset_s
        end, self._cursor = self.trace.deliver(arrival_s + off, wire, self._cursor)
        return max(end - off - now, window_s, 0.0)
