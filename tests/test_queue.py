"""The edge as a queue: Poisson arrivals and exponential service give M/M/1's mean wait."""

import numpy as np
import pandas as pd
import pytest

from testbed.sim.engine import simulate_policy
from testbed.policies.base import PolicyContext, PolicySpec
from testbed.policies.effects import Answer, Infer, Offload, Payload
from testbed.profiles import load_profile
from testbed.query import DENSITIES, Query, QueryRecord, VideoMeta

SERVICE_KEY = "edge.infer.large.shared.a16"


def edge_only(q: Query, ctx: PolicyContext):
    """Send an empty token payload, run the large model at the edge: only the edge queue remains."""
    from testbed.policies.effects import Decompress

    empty = Payload("tokens", 0, 0, 1, 16)
    out = yield Offload((empty,), (Decompress(empty), Infer("large", None, 16, q.question, q.options)))
    return Answer(out.choice, "edge")


def records(n: int, mu: float, seed: int) -> list[QueryRecord]:
    rng = np.random.default_rng(seed)
    video = VideoMeta(1.0, 30.0, 30, 64, 64, 0, (0,))
    logits = np.array([1.0, 0.0])
    return [QueryRecord(Query(f"q{i}", "mm1", video, "", ()), 0, "test", logits, logits,
                        dict.fromkeys(DENSITIES, logits),
                        {SERVICE_KEY: float(rng.exponential(1 / mu)), "edge.decompress.a16": 0.0})
            for i in range(n)]


@pytest.mark.parametrize("clients", [1, 4])
def test_mm1_mean_wait(scenario_factory, clients):
    lam, mu, n = 0.5, 1.0, 40_000
    sc = scenario_factory({"network": {"up_mbps": 1e9, "down_mbps": 1e9, "rtt_ms": 0.0},
                           "arrivals": {"kind": "poisson", "clients": clients, "rate_per_client": lam / clients}})
    profile = load_profile(sc.profile_path())
    rows, totals = simulate_policy(sc, profile, PolicySpec("mm1", edge_only), PolicyContext(), records(n, mu, 3))
    q = pd.DataFrame(rows)
    rho = lam / mu
    assert q.t_edge_queue_s.mean() == pytest.approx(rho / (mu - lam), rel=0.05)
    # sojourn = wait + service = 1 / (mu - lambda) (links at 1e9 Mbit/s add nanoseconds)
    assert q.delay_s.mean() == pytest.approx(1 / (mu - lam), rel=0.05)
    assert totals["edge_gpu_busy_s"] / totals["makespan_s"] == pytest.approx(rho, rel=0.03)
