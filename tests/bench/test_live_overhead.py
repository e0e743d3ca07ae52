"""What the real interpreter adds per query on top of the effects' own work (goal: under 1 ms):
one run, the query's delay against the sum of its measured stage times."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from testbed.live.busy import ForeignLoad
from testbed.live.real import InProcEdge, RealInterpreter, RealNode
from testbed.live.run import run_policy
from testbed.models.pair import tiny_pair
from testbed.policies.base import PolicyContext, RouteKnobs
from testbed.policies.registry import resolve
from testbed.workload.manifest import read_manifest
from tests.bench.conftest import idle_core_gate
from tests.conftest import make_scenario
from tests.videos import encode


@pytest.mark.benchmark(group="live")
def test_interpreter_overhead_per_query(benchmark, record_ratio, tmp_path):
    clips = [encode(tmp_path / f"c{i}.mp4", 2 + i, fps=25, size="160x90", gop=25) for i in range(6)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(
        {"query_id": f"q{i}", "video": c.name, "question": "q?", "options": ["a", "b"], "answer": 0}) + "\n"
        for i, c in enumerate(clips)))
    wl = read_manifest(tmp_path / "m.jsonl")
    pair = tiny_pair()
    sc = make_scenario({"policies": {"run": ["device-native"]}})
    rows = []

    def once():
        for name in ("device-native", "quickgrasp-fixed16"):
            spec = resolve(name)
            interp = RealInterpreter([RealNode(pair)], RealNode(pair), InProcEdge())
            knobs = RouteKnobs(1.0) if spec.knobs is RouteKnobs else spec.knobs()
            r, _ = run_policy(sc, spec, PolicyContext(knobs), wl.records, interp, "inproc")
            interp.close()
            rows.extend(r)

    with ForeignLoad() as load:
        benchmark.pedantic(once, rounds=3, iterations=1, warmup_rounds=1)
    work = np.array([sum(r["stage_s"].values()) for r in rows])
    delay = np.array([r["delay_s"] for r in rows])
    overhead = delay - work
    for name in ("device-native", "quickgrasp-fixed16"):
        sel = np.array([r["policy"] == name for r in rows])
        print(f"\n{name}: {1e6 * np.median(overhead[sel]):.0f} us over {1e3 * np.median(work[sel]):.1f} ms")
    print(f"\nlive interpreter: {1e6 * np.median(overhead):.0f} us per query on top of "
          f"{1e3 * np.median(work):.1f} ms of effects (median over {len(rows)} queries)")
    benchmark.extra_info.update(overhead_us=float(1e6 * np.median(overhead)), work_ms=float(1e3 * np.median(work)))
    m = record_ratio("live_work_over_interpreter_overhead", float(np.median(work) / max(np.median(overhead), 1e-9)),
                     "device-native and quickgrasp-fixed16 on 6 clips, in process: median of the effects' stage "
                     "times / median of what the interpreter adds (delay less stage times)",
                     needs_idle_core=True,
                     foreign_cores=None if load.share is None else load.share * (os.cpu_count() or 1))
    idle_core_gate(m, 20.0, "live_work_over_interpreter_overhead")  # overhead under 5% of the work
