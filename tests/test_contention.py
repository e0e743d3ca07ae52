"""Compression holds resources: merging on the device GPU, zstd on a device CPU worker, and
decompression on an edge CPU worker, so concurrent (de)compressions queue. Timelines by hand."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from testbed.sim.engine import simulate_policy
from testbed.policies.base import PolicyContext, PolicySpec
from testbed.policies.effects import Answer, Compress, Decompress, Infer, Offload, Payload, Submit, Tokens, Wait
from testbed.profiles import Curve, load_profile
from testbed.query import DENSITIES, Query, QueryRecord, VideoMeta

FRAMES, DENSITY = 64, 16
RAW = FRAMES * DENSITY * 1024 * 2  # fp16 tokens of width 1024


def _records(n: int = 1) -> list[QueryRecord]:
    video = VideoMeta(1.0, 30.0, 30, 64, 64, 0, (0,))
    logits = np.array([1.0, 0.0])
    return [QueryRecord(Query(f"q{i}", "c", video, "", ()), 0, "test", logits, logits, dict.fromkeys(DENSITIES, logits))
            for i in range(n)]


def _profile(sc, merge_s: float = 0.0, zstd_s: float = 0.0, unzstd_s: float = 0.0):
    """The shipped profile with merge, zstd and unzstd of one message set, and a free edge LM."""
    p = load_profile(sc.profile_path())
    local = {**p.local.stages, "merge": Curve.linear(0, merge_s / FRAMES, 1e3),
             "compress": Curve.linear(0, zstd_s / RAW, 1e9)}
    edge = {**p.edge.stages, "decompress": Curve.linear(0, unzstd_s / RAW, 1e9),
            "prefill": Curve.linear(0, 0, 1e5), "generate": Curve.linear(0, 0, 100)}
    return replace(p, local=replace(p.local, stages=local), edge=replace(p.edge, stages=edge))


def two_compressions(q, ctx):
    tokens = Tokens(FRAMES, FRAMES, 0, "local")
    first = yield Submit(Compress(tokens, DENSITY))
    second = yield Submit(Compress(tokens, DENSITY))
    yield Wait(first)
    yield Wait(second)
    return Answer(0, "local")


@pytest.mark.parametrize("merge_s,zstd_s", [(1.0, 3.0), (3.0, 1.0)])
def test_concurrent_compressions_queue_for_the_gpu_then_the_cpu(scenario_factory, merge_s, zstd_s):
    """One GPU, one CPU worker: merge 1 runs, then zstd 1 on the CPU while merge 2 takes the GPU,
    then zstd 2 once both the CPU and its merge are free. Either way the query takes
    max(2 merge, merge + zstd) + zstd; without the GPU (merges in parallel) or without the CPU
    (zstds in parallel) one of the two cases would take merge + zstd + min(merge, zstd) less."""
    sc = scenario_factory({"nodes": {"local_gpus": 1, "local_decode_workers": 1}})
    profile = _profile(sc, merge_s, zstd_s)
    rows, _ = simulate_policy(sc, profile, PolicySpec("two", two_compressions), PolicyContext(), _records())
    (row,) = rows
    assert row["delay_s"] == pytest.approx(max(2 * merge_s, merge_s + zstd_s) + zstd_s)
    assert row["t_local_s"] == pytest.approx(2 * (merge_s + zstd_s))
    # the waits: merge 2 waits merge 1; zstd 2 waits for the CPU beyond its own merge's end
    waited = merge_s + max(0.0, (merge_s + zstd_s) - 2 * merge_s)
    assert row["t_local_queue_s"] == pytest.approx(waited)


def two_offloads(q, ctx):
    empty = Payload("tokens", 0, RAW, FRAMES, DENSITY)
    jobs = []
    for _ in range(2):
        jobs.append((yield Submit(Offload((empty,), (Decompress(empty), Infer("large", None, DENSITY, "", ()))))))
    for job in jobs:
        yield Wait(job)
    return Answer(0, "edge")


@pytest.mark.parametrize("workers,delay", [(1, 4.0), (2, 2.0)])
def test_decompressions_queue_for_edge_cpu_workers(scenario_factory, workers, delay):
    """Two 2-s decompressions arrive together: one edge CPU worker serves them one after the other."""
    sc = scenario_factory({"network": {"up_mbps": 1e9, "down_mbps": 1e9, "rtt_ms": 0.0},
                           "nodes": {"edge_decode_workers": workers}})
    rows, _ = simulate_policy(sc, _profile(sc, unzstd_s=2.0), PolicySpec("two", two_offloads), PolicyContext(),
                              _records())
    q = pd.DataFrame(rows)
    assert q.delay_s[0] == pytest.approx(delay, abs=1e-6)
    assert q.t_edge_s[0] == pytest.approx(4.0)
    assert q.t_edge_queue_s[0] == pytest.approx(delay - 2.0, abs=1e-6)
