"""The sim's trace link against a port of mahimahi's own link queue.

`LinkQueuePort` below is a line-by-line port of mahimahi's LinkQueue (src/frontend/link_queue.cc
and link_queue.hh, ravinet/mahimahi at ae477d4: the constructor's trace loading, read_packet,
next_delivery_time, use_a_delivery_opportunity and rationalize) with an infinite packet queue
(mm-link's default) and repeat on. It shares no code with testbed/bandwidth.py: it reads the trace
file itself and is fed packets, each with its own size and arrival millisecond, as mahimahi's TUN
device would hand them over. The packets a ZeroMQ message becomes are also derived here from the
protocols (ZMTP 3 framing, MSS = 1500 - 52, IP/TCP headers and the 4-byte TUN header), not taken
from the code under test.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import simpy

from testbed.sim.link import Channel
from testbed.bandwidth import MahimahiLink, mahimahi_bytes, mean_mbps, read_mahimahi, scale_to_mean
from testbed.scenario import REPO_ROOT

TRACES = sorted((REPO_ROOT / "traces" / "bandwidth").glob("*.mahi"))
PACKET_SIZE = 1504  # link_queue.hh


class LinkQueuePort:
    """mahimahi's LinkQueue, ported. Times are integer milliseconds since the link was created."""

    def __init__(self, schedule: list[int]) -> None:
        if not schedule:
            raise ValueError("no valid timestamps found")
        if any(b < a for a, b in zip(schedule, schedule[1:])):
            raise ValueError("timestamps must be monotonically nondecreasing")
        if schedule[-1] == 0:
            raise ValueError("trace must last for a nonzero amount of time")
        self.schedule = schedule
        self.next_delivery = 0
        self.base_timestamp = 0
        self.packet_queue: deque[tuple[int, int, int]] = deque()  # (arrival ms, size, id)
        self.in_transit: tuple[int, int, int] | None = None
        self.in_transit_bytes_left = 0
        self.departures: dict[int, int] = {}  # packet id -> departure ms

    @staticmethod
    def from_file(path: Path) -> "LinkQueuePort":
        schedule = []
        for line in path.read_text().splitlines():
            if not line:
                raise ValueError("invalid empty line")
            schedule.append(int(line))
        return LinkQueuePort(schedule)

    def next_delivery_time(self) -> int:
        return self.schedule[self.next_delivery] + self.base_timestamp

    def use_a_delivery_opportunity(self) -> None:
        self.next_delivery = (self.next_delivery + 1) % len(self.schedule)
        if self.next_delivery == 0:  # wraparound, repeat on
            self.base_timestamp += self.schedule[-1]

    def rationalize(self, now: int) -> None:
        while self.next_delivery_time() <= now:
            this_delivery_time = self.next_delivery_time()
            bytes_left_in_this_delivery = PACKET_SIZE
            self.use_a_delivery_opportunity()
            while bytes_left_in_this_delivery > 0:
                if not self.in_transit_bytes_left:
                    if not self.packet_queue:
                        break
                    self.in_transit = self.packet_queue.popleft()
                    self.in_transit_bytes_left = self.in_transit[1]
                assert self.in_transit is not None
                assert self.in_transit[0] <= this_delivery_time
                amount_to_send = min(bytes_left_in_this_delivery, self.in_transit_bytes_left)
                self.in_transit_bytes_left -= amount_to_send
                bytes_left_in_this_delivery -= amount_to_send
                if self.in_transit_bytes_left == 0:
                    self.departures[self.in_transit[2]] = this_delivery_time

    def read_packet(self, size: int, now: int, pid: int) -> None:
        if size > PACKET_SIZE:
            raise ValueError("packet size is greater than maximum")
        self.rationalize(now)
        self.packet_queue.append((now, size, pid))

    def drain(self) -> None:
        """Run the event loop until every queued packet has left (mm-link would wake at each
        next_delivery_time; rationalizing at each of them gives the same departures)."""
        while self.packet_queue or self.in_transit_bytes_left:
            self.rationalize(self.next_delivery_time())


def zmq_tcp_packets(nbytes: int) -> list[int]:
    """Sizes of the TUN packets (tun_pi 4 + IPv4 20 + TCP 20 + timestamps 12 + payload) that carry
    one ZeroMQ message of `nbytes` as a single ZMTP 3 frame (flags byte + 1-byte size up to 255
    bytes, else an 8-byte size) in MSS-sized segments (1500 - 52 = 1448)."""
    payload = nbytes + (1 + 1 if nbytes <= 255 else 1 + 8)
    full, rest = divmod(payload, 1448)
    return [1448 + 56] * full + ([rest + 56] if rest else [])


def port_finish_ms(path: Path, transfers: list[tuple[float, int]]) -> list[int]:
    """Departure ms of each transfer's last packet: (arrival seconds, message bytes), in order."""
    port = LinkQueuePort.from_file(path) if isinstance(path, Path) else LinkQueuePort(list(path))
    last_ids = []
    pid = 0
    for t_s, nbytes in transfers:
        now = math.floor(t_s * 1000 + 1e-6)  # mahimahi's clock is whole ms
        for size in zmq_tcp_packets(nbytes):
            port.read_packet(size, now, pid)
            pid += 1
        last_ids.append(pid - 1)
    port.drain()
    return [port.departures[i] for i in last_ids]


def sim_finish_s(link: MahimahiLink, transfers: list[tuple[float, int]]) -> list[float]:
    """When the sim's channel over `link` (RTT 0, no loss) delivers each transfer."""
    env = simpy.Environment()
    ch = Channel(env, 1.0, 0.0, 1.0, 1500, 0.0, np.random.default_rng(0), link)
    done: dict[int, float] = {}

    def one(i: int, t0: float, n: int):
        yield env.timeout(t0)
        yield env.process(ch.transfer(n))
        done[i] = env.now

    for i, (t0, n) in enumerate(transfers):
        env.process(one(i, t0, n))
    env.run()
    return [done[i] for i in range(len(transfers))]


def _agree(link: MahimahiLink, source, transfers: list[tuple[float, int]]) -> None:
    want = port_finish_ms(source, transfers)
    got = sim_finish_s(link, transfers)
    for (t0, n), w, g in zip(transfers, want, got):
        assert g * 1000 == pytest.approx(w, abs=1e-6), f"{n} B at {t0} s: sim {g * 1000:.6f} ms, mahimahi {w} ms"


SIZES = [1_000, 14_480, 100_000, 1_000_000, 10_000_000, 50_000_000]


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.stem[:24])
def test_sim_matches_mahimahi_port_on_shipped_trace(path):
    stamps = read_mahimahi(path)
    link = MahimahiLink(stamps)
    period_s = stamps[-1] / 1000
    # from the link's start, exactly at an opportunity's ms (it may not be used), mid-ms,
    # and in the second period
    starts = [0.0, stamps[7] / 1000, 12.3456, 1.5 * period_s]
    for n in SIZES:
        for t0 in starts if n < 50_000_000 else starts[1:3]:
            _agree(link, path, [(t0, n)])


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.stem[:24])
def test_queued_transfers_match_mahimahi_port(path):
    # back-to-back and overlapping messages: a message queued behind another shares the rest of
    # its last opportunity, one that arrives after the queue ran dry does not
    link = MahimahiLink(read_mahimahi(path))
    transfers = [(0.5, 3_000), (0.5, 700), (0.5004, 200_000), (0.9, 100), (2.0, 1_000), (2.0, 1_000),
                 (7.0, 2_000_000), (7.001, 50), (60.0, 1_000)]
    _agree(link, path, transfers)


def test_scaled_trace_matches_mahimahi_port():
    # scenarios scale traces to a mean (several opportunities per ms): same rule
    path = REPO_ROOT / "traces" / "bandwidth" / "hsdpa-norway-norway_train_4.mahi"
    stamps = scale_to_mean(read_mahimahi(path), 10.0)
    link = MahimahiLink(stamps)
    transfers = [(0.0, 1_000), (0.0, 10_000_000), (3.0004, 123_457), (40.0, 50_000_000), (41.0, 9)]
    _agree(link, [int(s) for s in stamps], transfers)


def test_zero_ms_stamps_match_mahimahi_port():
    # an opportunity stamped 0 ms falls at the link's start (no packet can use it then) and at
    # every later period boundary
    stamps = np.array([0, 0, 2, 2, 5, 9, 10])
    link = MahimahiLink(stamps)
    for t0 in [0.0, 0.0009, 0.002, 0.0095, 0.010, 0.0101, 0.0205]:
        for n in [1, 1_500, 4_000, 20_000, 100_000]:
            _agree(link, stamps.tolist(), [(t0, n)])
    _agree(link, stamps.tolist(), [(0.0, 3_000), (0.001, 5), (0.009, 10_000), (0.0315, 1)])


def test_hand_computed_delivery():
    # opportunities at 1, 1, 3, 5 ms; period 5 ms
    link = MahimahiLink(np.array([1, 1, 3, 5]))
    assert link.finish_s(0.0, 1) == 0.001
    assert link.finish_s(0.0, 2 * 1504) == 0.001  # both 1-ms opportunities
    assert link.finish_s(0.0, 2 * 1504 + 1) == 0.003
    assert link.finish_s(0.001, 1) == 0.003  # arriving at 1 ms: the 1-ms opportunities are gone
    assert link.finish_s(0.0049, 1) == 0.005
    assert link.finish_s(0.0049, 1505) == 0.006  # wraps: next cycle's first at 5 + 1
    assert link.finish_s(0.005, 4 * 1504) == 0.010  # 6, 6, 8, 10
    assert link.finish_s(0.0, 12 * 1504) == 0.015  # exactly three cycles
    # the sim's first transfer of 1000 message bytes: 1009 payload + 56 header bytes in one packet
    assert mahimahi_bytes(1000) == 1065
    assert mahimahi_bytes(1448 - 9) == 1504 and mahimahi_bytes(1448 - 8) == 1504 + 57
    # a queued transfer uses what the one ahead left of its last opportunity
    end, cur = link.deliver(0.0, 1000)
    assert (end, cur) == (0.001, 1000)
    assert link.deliver(0.0, 2008, cur) == (0.001, 3008)
    assert link.deliver(0.001, 504, cur) == (0.003, 3008 + 504)  # arrived at 1 ms: the rest was burned


def test_scale_to_mean_keeps_zero_ms_stamps_and_the_period():
    stamps = np.array([0, 0, 0, 4, 4, 7, 10])
    doubled = scale_to_mean(stamps, 2 * mean_mbps(stamps))
    assert len(doubled) == 2 * len(stamps)
    assert (doubled == 0).sum() == 6 and doubled[-1] == 10
    halved = scale_to_mean(stamps, mean_mbps(stamps) / 3)
    assert halved[-1] == 10 and mean_mbps(halved) == pytest.approx(mean_mbps(stamps) / 3, rel=0.5)
