"""Link model: exact transfer times at a constant rate, FIFO order, mahimahi traces by hand."""

import numpy as np
import pytest
import simpy

from sim.link import Channel
from testbed.bandwidth import MahimahiLink, cooked_to_mahimahi, mean_mbps, scale_to_mean


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


def test_constant_rate_transfer_is_exact():
    env = simpy.Environment()
    rate, rtt, eff = 59.0, 0.009, 1 / 1.055
    ch = Channel(env, rate, rtt, eff, 1500, 0.0, np.random.default_rng(0))
    nbytes = 10_000_000
    (t,) = _run_transfers(ch, env, [nbytes])
    assert t == pytest.approx(nbytes * 8 / (rate * 1e6 * eff) + rtt / 2, rel=1e-12)
    # the measurement: 10 MB at 59 Mbit/s took 1.055x bytes*8/rate (before propagation)
    assert (t - rtt / 2) / (nbytes * 8 / (rate * 1e6)) == pytest.approx(1.055)


def test_fifo_transfers_queue_behind_each_other_but_propagate_in_parallel():
    env = simpy.Environment()
    ch = Channel(env, 8.0, 0.1, 1.0, 1500, 0.0, np.random.default_rng(0))  # 1 MB/s
    t1, t2 = _run_transfers(ch, env, [1_000_000, 500_000])
    assert t1 == pytest.approx(1.0 + 0.05)
    assert t2 == pytest.approx(1.5 + 0.05)


def test_mahimahi_hand_computed_example():
    # opportunities at 1, 1, 3, 5 ms, period 5 ms; 1000 payload bytes per opportunity
    link = MahimahiLink(np.array([1, 1, 3, 5]), 1000.0)
    assert link.finish_s(0.0, 1) == pytest.approx(0.001)
    assert link.finish_s(0.0, 2000) == pytest.approx(0.001)  # two opportunities at 1 ms
    assert link.finish_s(0.0, 2001) == pytest.approx(0.003)
    assert link.finish_s(0.0, 4000) == pytest.approx(0.005)
    assert link.finish_s(0.0, 4001) == pytest.approx(0.006)  # wraps: next cycle's first at 5 + 1
    assert link.finish_s(0.0045, 3000) == pytest.approx(0.006)  # 5, then 6, 6
    assert link.finish_s(0.0, 12000) == pytest.approx(0.015)  # exactly three cycles


def test_channel_over_trace_adds_propagation_and_queues():
    env = simpy.Environment()
    link = MahimahiLink(np.array([1, 1, 3, 5]), 1500 * 0.5)
    ch = Channel(env, 1.0, 0.002, 0.5, 1500, 0.0, np.random.default_rng(0), link)
    t1, t2 = _run_transfers(ch, env, [1500, 750])  # 2 opportunities (1, 1 ms), then 1 (3 ms)
    assert t1 == pytest.approx(0.001 + 0.001)
    assert t2 == pytest.approx(0.003 + 0.001)


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


def test_loss_adds_one_rtt_per_lost_packet_on_average():
    env = simpy.Environment()
    rtt, loss = 0.05, 0.01
    ch = Channel(env, 1000.0, rtt, 1.0, 1500, loss, np.random.default_rng(7))
    sizes = [150_000] * 400  # 100 packets each
    starts = [i * 10.0 for i in range(400)]
    done = _run_transfers(ch, env, sizes, starts)
    extra = np.array(done) - np.array(starts) - 150_000 * 8 / 1e9 - rtt / 2
    assert extra.mean() == pytest.approx(100 * loss * rtt, rel=0.15)
