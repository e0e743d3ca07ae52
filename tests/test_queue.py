"""The edge as a queue: Poisson arrivals and exponential service give M/M/1's mean wait."""

import numpy as np
import pandas as pd
import pytest

from sim.engine import simulate_policy
from testbed.policies.base import PolicyContext, PolicySpec
from testbed.policies.effects import Answer, Infer, Offload, Tokens
from testbed.profiles import load_profile
from testbed.query import DENSITIES, Query, QueryRecord, VideoMeta
from testbed.router.calibration import Calibration

SERVICE_KEY = "edge.infer.large.native.a16"


def edge_only(q: Query, ctx: PolicyContext):
    """Send nothing, run the large model at the edge, get nothing back: only the edge queue remains."""
    out = yield Offload((), (Infer("large", Tokens(1, 1, 16, "edge"), 16, 0, where="edge"),), 0)
    return Answer(out.choice, "edge")


def records(n: int, mu: float, seed: int) -> list[QueryRecord]:
    rng = np.random.default_rng(seed)
    video = VideoMeta(1.0, 30.0, 30, 64, 64, 0, (0,))
    logits = np.array([1.0, 0.0])
    return [QueryRecord(Query(f"q{i}", "mm1", video, "q", ("a", "b")), 0, "test", logits, logits,
                        {a: logits for a in DENSITIES}, {SERVICE_KEY: float(rng.exponential(1 / mu))})
            for i in range(n)]


@pytest.mark.parametrize("clients", [1, 4])
def test_mm1_mean_wait(scenario_factory, clients):
    lam, mu, n = 0.5, 1.0, 40_000
    sc = scenario_factory({"network": {"up_mbps": 1e9, "down_mbps": 1e9, "rtt_ms": 0.0},
                           "arrivals": {"kind": "poisson", "clients": clients, "rate_per_client": lam / clients}})
    profile = load_profile(sc.profile_path())
    rows, totals = simulate_policy(sc, profile, PolicySpec("mm1", edge_only), PolicyContext(Calibration()),
                                   records(n, mu, 3))
    q = pd.DataFrame(rows)
    rho = lam / mu
    assert q.t_edge_queue_s.mean() == pytest.approx(rho / (mu - lam), rel=0.05)
    # sojourn = wait + service = 1 / (mu - lambda)
    assert q.delay_s.mean() == pytest.approx(1 / (mu - lam), rel=0.05)
    assert totals["edge_gpu_busy_s"] / totals["makespan_s"] == pytest.approx(rho, rel=0.03)
