"""Engine speed, measured as ratios within one run (run by `make bench`, skipped by `make test`).

A trace-driven link must cost about what a constant-rate link costs per query: each transfer is
one binary search over the trace. (A float search key once made numpy cast the whole trace to
float on every transfer, 17x slower on the FCC scenario; this guards against that.)
"""

from __future__ import annotations

import pytest

from testbed.sim.engine import load_workload, run_scenario
from testbed.profiles import load_profile
from testbed.scenario import REPO_ROOT
from tests.bench.conftest import CPU
from tests.conftest import make_scenario

TRACE = str(REPO_ROOT / "traces" / "bandwidth" / "fcc-2016-trace_5294_http---www.youtube.com.mahi")
POLICIES = ["device-native", "edge-hosted", "collaborative", "quickgrasp-fixed16"]


def _scenario(trace: bool):
    net = {"up_trace": TRACE, "down_trace": TRACE, "trace_mean_mbps_up": 59.0, "trace_mean_mbps_down": 119.0} \
        if trace else {}
    return make_scenario({"workload": {"queries_per_benchmark": 400}, "network": net, "policies": {"run": POLICIES}})


@pytest.mark.benchmark(group="engine")
def test_trace_link_costs_about_what_a_constant_link_costs(benchmark, compare_speed):
    const, traced = _scenario(False), _scenario(True)
    profile = load_profile(const.profile_path())
    workload = load_workload(const)
    run_scenario(traced, profile=profile, workload=workload)  # warm the trace cache

    n = len(run_scenario(const, profile=profile, workload=workload).queries)
    m = compare_speed("engine_const_over_trace_link",
                      f"sim of {n} queries, 4 policies: CPU time on a constant-rate link / on the FCC trace link",
                      lambda: run_scenario(const, profile=profile, workload=workload),
                      lambda: run_scenario(traced, profile=profile, workload=workload), rounds=3, clock=CPU)
    benchmark.extra_info.update(queries=n, ratio_trace_over_const=1 / m.value)
    assert 1 / m.value < 2.0
