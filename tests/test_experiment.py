"""The interpreter-independent run layer (testbed/experiment.py): the arrival schedule both
interpreters follow, run totals, and one policy preparation for sim and live."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.policies.base import THRESHOLD
from testbed.experiment import arrival_schedule, client_streams, run_totals
from testbed.scenario import ArrivalsConfig
from testbed.workload import query_order
from tests.conftest import make_scenario


def _records(n: int):
    from testbed.sim.engine import load_workload

    return load_workload(make_scenario({"workload": {"queries_per_benchmark": 200}})).records[:n]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 40), clients=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_the_schedule_deals_the_seeded_order_round_robin(n, clients, seed):
    recs = _records(n)
    plans = arrival_schedule(recs, ArrivalsConfig("closed", clients), seed)
    assert [p.client for p in plans] == list(range(clients)) and all(p.gaps_s is None for p in plans)
    dealt = [p.records[k] for k in range(max((len(p.records) for p in plans), default=0)) for p in plans
             if k < len(p.records)]
    assert dealt == query_order(recs, seed)  # every query once, in submission order
    assert arrival_schedule(recs, ArrivalsConfig("closed", clients), seed) == plans  # same seed, same schedule


def test_poisson_gaps_are_exponential_at_the_clients_rate():
    """Mean gap 1/rate and coefficient of variation 1 (an exponential's), per client, own generator."""
    recs = _records(400)
    plans = arrival_schedule(recs, ArrivalsConfig("poisson", 2, rate_per_client=4.0), seed=7)
    for p in plans:
        g = np.array(p.gaps_s)
        assert len(g) == len(p.records) == 200
        assert abs(g.mean() - 0.25) < 4 * 0.25 / np.sqrt(len(g))
        assert abs(g.std() / g.mean() - 1.0) < 0.25
    assert plans[0].gaps_s != plans[1].gaps_s
    again = arrival_schedule(recs, ArrivalsConfig("poisson", 2, rate_per_client=4.0), seed=7)
    assert again[1].gaps_s == plans[1].gaps_s


def test_streams_are_dealt_over_clients_and_totals_are_shares():
    assert client_streams(list("abcde"), 2) == (("a", "c", "e"), ("b", "d"))
    t = run_totals("p", 10.0, 5.0, 2, 100, 50, 0.5)
    assert t["edge_gpu_util"] == 5.0 / (10.0 * 2) and t["bytes_up"] == 100 and t["uplink_util_max"] == 0.5


def test_sim_and_live_prepare_a_routing_policy_alike():
    """One preparation (Experiment.prepare): a target threshold picked on the profiling split, and an
    input-aware router trained there, whichever interpreter asks."""
    from testbed.sim.engine import load_workload, policy_context
    from testbed.experiment import Experiment
    from testbed.router.calibration import scenario_calibration

    sc = make_scenario({"policies": {"run": ["nosharing"], "nosharing": {"target_local_share": 0.5}}})
    wl = load_workload(sc)
    cal, _ = scenario_calibration(sc, wl.split("profile"))
    ctx = policy_context(sc, "nosharing", cal, wl.split("profile"))
    spec, again = Experiment(sc, cal, wl.split("profile")).prepare("nosharing")
    assert spec.router is not None and spec.router.name == "confidence"
    pick = THRESHOLD.get(ctx.state)
    assert pick is not None and THRESHOLD.get(again.state) == pick
    assert abs(pick.profile_share - 0.5) < 0.1
