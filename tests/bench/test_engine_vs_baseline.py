"""The reshaped core must not slow the sim down: simulated queries per second of this tree against
the commit before the reshaping (issue 8), both measured in this session, interleaved, best of
several rounds each. Run by `make bench`; skipped where git or that commit is not available."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from testbed.scenario import REPO_ROOT

BASELINE_SHORT = "9cddeea"
"""The last commit before the core was reshaped (effects, driver, placement, results in the core)."""

SCRIPT = r'''
import json, sys, time
from pathlib import Path
if (Path(sys.argv[1]) / "testbed" / "sim").exists():  # this tree: the sim installs as testbed.sim
    from testbed.sim.engine import load_workload, run_scenario
else:  # the baseline commit's tree, before the package was renamed (sim/ at the top)
    from sim.engine import load_workload, run_scenario
from testbed.profiles import load_profile
from testbed.scenario import scenario_from_dict
sc = scenario_from_dict({"name": "bench", "workload": {"queries_per_benchmark": 400},
                         "policies": {"run": ["device-native", "edge-hosted", "collaborative", "quickgrasp-fixed16",
                                              "nosharing"]}}, Path(sys.argv[1]) / "scenarios")
profile, workload = load_profile(sc.profile_path()), load_workload(sc)
run_scenario(sc, profile=profile, workload=workload)  # warm up
best = float("inf")
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    n = len(run_scenario(sc, profile=profile, workload=workload).queries)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"queries": n, "seconds": best}))
'''


def _qps(tree: Path, rounds: int) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tree), str(rounds)], cwd=tree, capture_output=True,
                         text=True, timeout=900, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["queries"] / r["seconds"]


@pytest.mark.benchmark(group="engine")
def test_reshaped_engine_keeps_its_speed(benchmark, record_ratio):
    git = shutil.which("git")
    if git is None or subprocess.run([git, "cat-file", "-e", f"{BASELINE_SHORT}^{{commit}}"], cwd=REPO_ROOT,
                                     capture_output=True).returncode != 0:
        pytest.skip(f"needs git and commit {BASELINE_SHORT} (a full clone)")
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run([git, "worktree", "add", "--detach", str(old), BASELINE_SHORT], cwd=REPO_ROOT, check=True,
                       capture_output=True)
        try:
            base, new = [], []
            for _ in range(3):  # interleaved, so that drift in machine load hits both alike
                base.append(_qps(old, 2))
                new.append(_qps(REPO_ROOT, 2))
        finally:
            subprocess.run([git, "worktree", "remove", "--force", str(old)], cwd=REPO_ROOT, capture_output=True)
    ratio = max(new) / max(base)
    benchmark.extra_info.update(baseline_qps=max(base), reshaped_qps=max(new), ratio=ratio)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(f"\nengine: {max(new):.0f} simulated queries/s now, {max(base):.0f} at {BASELINE_SHORT} (ratio {ratio:.3f})")
    record_ratio("engine_reshaped_over_baseline", ratio)
    assert ratio >= 0.95
