"""Engine speed, measured as ratios within one run (run by `make bench`, skipped by `make test`).

A trace-driven link must cost about what a constant-rate link costs per query: each transfer is
one binary search over the trace. (A float search key once made numpy cast the whole trace to
float on every transfer, 17x slower on the FCC scenario; this guards against that.)
"""

from __future__ import annotations

import time

import pytest

from testbed.sim.engine import load_workload, run_scenario
from testbed.profiles import load_profile
from testbed.scenario import REPO_ROOT
from tests.conftest import make_scenario

TRACE = str(REPO_ROOT / "traces" / "bandwidth" / "fcc-2016-trace_5294_http---www.youtube.com.mahi")
POLICIES = ["device-native", "edge-hosted", "collaborative", "quickgrasp-fixed16"]


def _scenario(trace: bool):
    net = {"up_trace": TRACE, "down_trace": TRACE, "trace_mean_mbps_up": 59.0, "trace_mean_mbps_down": 119.0} \
        if trace else {}
    return make_scenario({"workload": {"queries_per_benchmark": 400}, "network": net, "policies": {"run": POLICIES}})


@pytest.mark.benchmark(group="engine")
def test_trace_link_costs_about_what_a_constant_link_costs(benchmark, record_ratio):
    const, traced = _scenario(False), _scenario(True)
    profile = load_profile(const.profile_path())
    workload = load_workload(const)
    run_scenario(traced, profile=profile, workload=workload)  # warm the trace cache

    def once(sc):
        t0 = time.perf_counter()
        run = run_scenario(sc, profile=profile, workload=workload)
        return len(run.queries), time.perf_counter() - t0

    n, _ = benchmark.pedantic(lambda: once(traced), rounds=3, iterations=1)
    t_const = min(once(const)[1] for _ in range(3))
    t_traced = benchmark.stats.stats.min
    benchmark.extra_info.update(queries=n, const_queries_per_s=n / t_const, trace_queries_per_s=n / t_traced,
                                ratio_trace_over_const=t_traced / t_const)
    print(f"\nengine: {n / t_const:.0f} simulated queries/s on a constant link, "
          f"{n / t_traced:.0f} on a trace link (ratio {t_traced / t_const:.2f})")
    record_ratio("engine_const_over_trace_link", t_const / t_traced)
    assert t_traced / t_const < 2.0
