"""TCP congestion control as a transfer-time model: pure functions of numbers and a seeded
generator, no clock (the sim link turns the result into SimPy time).

The model is the round ("flight") model of TCP Reno/NewReno used by Padhye et al. (SIGCOMM 1998)
and Cardwell et al. (INFOCOM 2000), evaluated exactly rather than in expectation:

- the sender sends its congestion window `w` (segments) as one round; the next round starts when
  the first ACK of this one is back, `max(RTT + pkt_s, k * pkt_s)` after it began (`k` segments in the
  round, `pkt_s` the link time of one segment): below the bandwidth-delay product `B = RTT/pkt_s`
  the window limits the rate, at or above it the link does;
- each segment is lost independently with probability `p` (the gap to the next loss is drawn
  from a geometric law, which is the same thing); a round with any loss halves the window once
  (`ssthresh = max(w//2, 2)`, NewReno: one reduction per window of data) and its lost segments are
  sent again in the next round, one RTT later, as fast retransmit does. Retransmissions take link
  time like any segment;
- a loss-free round grows the window by one segment in congestion avoidance and doubles it in
  slow start (below ssthresh), up to `wmax`: the path's BDP plus a drop-tail buffer of one BDP, so
  that Reno keeps a link with a BDP of buffer full after halving, as the buffer-sizing rule of
  thumb intends (Villamizar & Song 1994). Overflow of that buffer is not modelled; random loss is
  the only loss.

Its long-run rate is Mathis et al.'s (CCR 1997), `MSS/RTT * C/sqrt(p)`, when the window limits,
and the link rate when it does not; `mathis_bps` gives the formula. The model is not a CUBIC
model: Linux's default CUBIC is at least as fast as Reno (its TCP-friendly region), so on long,
lossy, high-BDP paths the sim is the pessimistic side of a Linux sender.

Loss-free rounds in congestion avoidance are skipped in closed form (window sizes form an
arithmetic series up to `wmax`), so a transfer costs O(1 + losses) steps, not O(rounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

IW = 10  # initial window, segments (RFC 6928; Linux's TCP_INIT_CWND)
RTO_MIN_S = 0.2  # Linux's TCP_RTO_MIN: the retransmission timeout is about RTT + 200 ms
MATHIS_C = math.sqrt(1.5)  # periodic loss, an ACK per segment (Mathis et al. 1997, eq. 3)


def mathis_bps(mss: float, rtt_s: float, loss: float, c: float = MATHIS_C) -> float:
    """Reno's long-run goodput (bit/s) at loss rate `loss`: MSS/RTT * C/sqrt(p)."""
    if loss <= 0 or rtt_s <= 0:
        return math.inf
    return mss * 8 / rtt_s * c / math.sqrt(loss)


def steady_window(loss: float, wmax: int) -> int:
    """Reno's mean window at loss rate `loss`, sqrt(3/(2p)) segments, within [2, wmax]."""
    if loss <= 0:
        return wmax
    return int(min(wmax, max(2, round(math.sqrt(1.5 / loss)))))


@dataclass(frozen=True, slots=True)
class RenoPath:
    """What the sender sees of one link direction."""

    rtt_s: float  # round-trip propagation time
    loss: float  # per-segment loss probability
    pkt_s: float  # link time of one full segment; 0 where the link is accounted for elsewhere
    wmax: int  # window cap, segments

    @staticmethod
    def of(rtt_s: float, loss: float, pkt_s: float, bdp_pkts: float | None = None) -> "RenoPath":
        """A path whose window cap is its BDP plus one BDP of buffer (at least 4 segments).
        `bdp_pkts` defaults to RTT/pkt_s."""
        bdp = bdp_pkts if bdp_pkts is not None else (rtt_s / pkt_s if pkt_s > 0 else 0.0)
        return RenoPath(rtt_s, loss, pkt_s, max(4, 2 * math.ceil(bdp)))


@dataclass(frozen=True, slots=True)
class RenoState:
    """Congestion state a connection carries from one transfer to the next."""

    cwnd: int
    ssthresh: int


@dataclass(frozen=True, slots=True)
class Sent:
    duration_s: float  # first segment's departure to the last (re)transmitted segment's departure end
    state: RenoState
    retransmitted: int  # segments sent again
    rounds: int


def after_idle(state: RenoState, idle_s: float, rto_s: float) -> RenoState:
    """Linux's tcp_cwnd_restart (RFC 2861, RFC 5681 sec. 4.1): after an idle period longer than
    the RTO, ssthresh keeps at least 3/4 of the window, and the window halves once per RTO idle,
    not below the initial window."""
    if idle_s <= rto_s:
        return state
    restart = min(IW, state.cwnd)
    ssthresh = max(state.ssthresh, (state.cwnd >> 1) + (state.cwnd >> 2))
    cwnd, delta = state.cwnd, idle_s
    while True:
        delta -= rto_s
        if delta <= 0 or cwnd <= restart:
            break
        cwnd >>= 1
    return RenoState(max(cwnd, restart), ssthresh)


def _ca_sum(w: int, wmax: int, j: int) -> int:
    """Segments in `j` loss-free congestion-avoidance rounds from window `w` (w, w+1, ..., wmax)."""
    c = max(0, wmax - w)
    if j <= c:
        return j * w + j * (j - 1) // 2
    return c * w + c * (c - 1) // 2 + (j - c) * wmax


def _ca_rounds(w: int, wmax: int, budget: int) -> int:
    """The most loss-free congestion-avoidance rounds from window `w` that send <= `budget` segments."""
    if budget < w:
        return 0
    c = max(0, wmax - w)
    if _ca_sum(w, wmax, c) <= budget:
        return c + (budget - _ca_sum(w, wmax, c)) // wmax
    b = 2 * w - 1
    j = (math.isqrt(b * b + 8 * budget) - b) // 2
    while _ca_sum(w, wmax, j + 1) <= budget:
        j += 1
    while j > 0 and _ca_sum(w, wmax, j) > budget:
        j -= 1
    return j


def _ca_time(w: int, wmax: int, j: int, path: RenoPath) -> float:
    """Duration of `j` full loss-free congestion-avoidance rounds from window `w`: a round of
    window w_i lasts RTT + pkt_s (until its first ACK is back) or w_i * pkt_s if longer (then the
    link is the limit)."""
    if path.pkt_s <= 0:
        return j * path.rtt_s
    bdp = path.rtt_s / path.pkt_s + 1  # a round's first ACK is back pkt_s + RTT after it began
    if w >= bdp:
        m = 0
    elif wmax < bdp:
        m = j
    else:
        m = min(j, math.ceil(bdp - w))
    return m * (path.rtt_s + path.pkt_s) + (_ca_sum(w, wmax, j) - _ca_sum(w, wmax, m)) * path.pkt_s


def _gap(rng: np.random.Generator, loss: float) -> float:
    """Segments sent up to and including the next lost one."""
    return float(rng.geometric(loss)) if loss > 0 else math.inf


def send(segments: float, state: RenoState, path: RenoPath, rng: np.random.Generator) -> Sent:
    """Send `segments` (a fraction allowed for a short last segment) over `path` from `state`.

    Returns the time from the first departure to the end of the last one, the state after it, and
    the retransmissions. Random draws come only from `rng`, in a fixed order."""
    if segments <= 0:
        return Sent(0.0, state, 0, 0)
    w, ss = state.cwnd, state.ssthresh
    left = float(segments)
    gap = _gap(rng, path.loss)
    t, retx, rounds = 0.0, 0, 0
    while True:
        if w >= ss or w >= path.wmax:  # congestion avoidance: skip loss-free full rounds at once
            budget = math.ceil(left) - 1
            if gap != math.inf:
                budget = min(budget, int(gap) - 1)
            j = _ca_rounds(w, path.wmax, budget)
            if j:
                sent = _ca_sum(w, path.wmax, j)
                t += _ca_time(w, path.wmax, j, path)
                left -= sent
                gap -= sent
                rounds += j
                w = min(w + j, path.wmax)
        k = min(float(w), left)
        kp = math.ceil(k)
        lost = 0
        if gap <= kp:
            lost = 1 + (int(rng.binomial(kp - int(gap), path.loss)) if kp > gap else 0)
            gap = _gap(rng, path.loss)
        else:
            gap -= kp
        left += lost - k
        retx += lost
        rounds += 1
        if left <= 1e-12:
            t += k * path.pkt_s
            return Sent(t, RenoState(w, ss), retx, rounds)
        t += max(path.rtt_s + path.pkt_s, k * path.pkt_s)
        if lost:
            ss = max(w // 2, 2)
            w = ss
        elif w < ss:
            w = min(2 * w, ss, path.wmax)
        else:
            w = min(w + 1, path.wmax)
