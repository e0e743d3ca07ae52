"""Link model: exact loss-free transfer times at a constant rate, FIFO order, trace conversion and
scaling. Loss and TCP: test_link_tcp.py; mahimahi semantics: test_link_mahimahi.py."""

import numpy as np
import pytest
import simpy

from testbed.sim.link import Channel
from testbed.bandwidth import cooked_to_mahimahi, mean_mbps, scale_to_mean


def _run_transfers(channel: Channel, env: simpy.Environment, sizes, starts=None):
    done = {}

    def one(i, n, t0):
        yield env.timeout(t0)
        yield env.process(channel.transfer(n))
        done[i] = env.now

    for i, n in enumerate(sizes):
        env.process(one(i, n, (starts or [0.0] * len(sizes))[i]))
    env.run()
    return [done[i] for i in range(len(sizes))]


def _packet_fifo_delivery(nbytes: int, rate_bps: float, eff: float, rtt: float, mss: int) -> float:
    """Independent reference: the message cut into MSS-sized packets, each serialized in turn at
    the goodput rate, the last one then propagating for RTT/2 (a sender whose window never binds)."""
    t = 0.0
    for k in range(0, nbytes, mss):
        t += min(mss, nbytes - k) * 8 / (rate_bps * eff)
    return t + rtt / 2


def test_constant_rate_loss_free_transfer_is_exact():
    env = simpy.Environment()
    rate, rtt, eff = 59.0, 0.009, 1 / 1.055
    ch = Channel(env, rate, rtt, eff, 1500, 0.0, np.random.default_rng(0))
    nbytes = 10_000_000
    (t,) = _run_transfers(ch, env, [nbytes])
    # the closed form the default scenarios have always used, to the last bit
    assert t == nbytes * 8 / (rate * 1e6 * eff) + rtt / 2
    # and the packet-by-packet reference
    assert t == pytest.approx(_packet_fifo_delivery(nbytes, rate * 1e6, eff, rtt, 1448), rel=1e-9)
    # by hand: 1 MB over 8 Mbit/s at half efficiency is 2 s, plus 50 ms
    env = simpy.Environment()
    (t,) = _run_transfers(Channel(env, 8.0, 0.1, 0.5, 1500, 0.0, np.random.default_rng(0)), env, [1_000_000])
    assert t == pytest.approx(2.05, rel=1e-12)


def test_fifo_transfers_queue_behind_each_other_but_propagate_in_parallel():
    env = simpy.Environment()
    ch = Channel(env, 8.0, 0.1, 1.0, 1500, 0.0, np.random.default_rng(0))  # 1 MB/s
    t1, t2 = _run_transfers(ch, env, [1_000_000, 500_000])
    assert t1 == pytest.approx(1.0 + 0.05)
    assert t2 == pytest.approx(1.5 + 0.05)


def test_cooked_to_mahimahi_constant_rate():
    # 12 Mbit/s = one 1500-byte packet per ms
    stamps = cooked_to_mahimahi(np.array([0.0, 1.0]), np.array([12.0, 12.0]))
    assert stamps.tolist() == list(range(1, 2001))
    assert mean_mbps(stamps) == pytest.approx(12.0)
    # 6 Mbit/s: one packet every 2 ms
    half = cooked_to_mahimahi(np.array([0.0, 1.0]), np.array([6.0, 6.0]))
    assert half.tolist() == list(range(2, 2001, 2))


def test_scale_to_mean_keeps_shape():
    stamps = cooked_to_mahimahi(np.array([0.0, 1.0, 2.0]), np.array([12.0, 6.0, 6.0]))
    scaled = scale_to_mean(stamps, 2 * mean_mbps(stamps))
    assert mean_mbps(scaled) == pytest.approx(2 * mean_mbps(stamps), rel=1e-3)
    # the first second still carries twice the rate of the second one
    assert (scaled <= 1000).sum() == pytest.approx(2 * ((scaled > 1000) & (scaled <= 2000)).sum(), rel=0.01)
