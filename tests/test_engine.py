"""The engine end to end: determinism, recorded stage times, a hand calculation of delays, the paper's
figures (fitted and held-out) on the default workload."""

import numpy as np
import pandas as pd
import pytest

from testbed.sim.engine import run_scenario
from testbed import report
from testbed.profiles import load_profile
from testbed.scenario import load_scenario, with_overrides
from testbed.traces import table_to_workload, to_table
from testbed.workload.synthetic import synthetic_workload

SMALL = {"workload": {"queries_per_benchmark": 60},
         "policies": {"run": ["device-native", "edge-hosted", "quickgrasp-fixed16"]}}


def test_same_seed_same_results_other_seed_differs(scenario_factory):
    sc = scenario_factory({**SMALL, "arrivals": {"kind": "poisson", "clients": 3, "rate_per_client": 0.2},
                           "network": {"loss": 0.01}})
    a = run_scenario(sc).queries
    b = run_scenario(sc).queries
    pd.testing.assert_frame_equal(a, b)
    c = run_scenario(with_overrides(sc, {"seed": 1})).queries
    assert not a[["query_id", "delay_s"]].equals(c[["query_id", "delay_s"]])


def test_recorded_stage_times_replace_the_profile(scenario_factory):
    sc = scenario_factory({"workload": {"queries_per_benchmark": 20}, "policies": {"run": ["device-native"]}})
    frame, prov, params = synthetic_workload(("mvbench",), 20, 0)
    frame["recorded_s"] = [[("local.tokenize.fps.sequential", 1.25), ("local.infer.small.fps.a16", 0.5)]] * len(frame)
    wl = table_to_workload(to_table(frame, "live:testhost:tiny", params))
    q = run_scenario(sc, workload=wl).queries
    assert np.allclose(q.delay_s, 1.75)


def _at(dev, stage: str, size: float) -> float:
    """A profile curve read by hand: linear interpolation between its points (sizes inside them)."""
    c = dev.stages[stage]
    assert c.size[0] <= size <= c.size[-1]
    return float(np.interp(size, c.size, c.seconds))


def _link(nbytes: int, mbps: float, rtt_s: float, efficiency: float) -> float:
    """A loss-free transfer on a warm connection: serialisation at the goodput plus half the RTT."""
    return nbytes * 8 / (mbps * 1e6 * efficiency) + rtt_s / 2


def test_delays_match_a_hand_calculation(scenario_factory):
    """DeviceNative, EdgeHosted and Collaborative, one client, against stage times read off the
    profile's curves and the link formula, composed here by hand (sequential tokenizer: decode,
    then preprocess and encode; Collaborative: merge, zstd, upload, decompress, large LM, reply)."""
    from testbed.sim.engine import load_workload
    from testbed.codec.size import REPLY_BYTES, text_bytes, text_tokens
    from testbed.profiles import load_profile
    from testbed.tokenizer.sampling import DEFAULT_SAMPLER, decode_work, sample_indices

    sc = scenario_factory({"workload": {"queries_per_benchmark": 20},
                           "policies": {"run": ["device-native", "edge-hosted", "collaborative"]}})
    profile = load_profile(sc.profile_path())
    q = run_scenario(sc, profile=profile).queries.set_index(["policy", "query_id"])
    net, dim, ratio = sc.network, sc.models.token_dim, sc.models.compression_ratio
    rtt = net.rtt_ms / 1000
    checked = 0
    for rec in load_workload(sc).split("test"):
        v, query = rec.query.media, rec.query
        idx = sample_indices(v.n_frames, v.fps, v.keyframe_array, DEFAULT_SAMPLER)
        work = decode_work(idx, v.keyframe_array)
        prompt = text_tokens(query.question, query.options)
        text = text_bytes(query.question, query.options)

        def tokenize(dev):
            return (_at(dev, "decode", work.decoded * v.megapixels) + _at(dev, "seek", work.seeks)
                    + _at(dev, "preprocess", work.sampled) + _at(dev, "encode", work.sampled))

        def lm(dev):
            return _at(dev, "prefill", work.sampled * 16 + prompt) + _at(dev, "generate", 1)

        raw = work.sampled * 16 * dim * 2
        wire = 22 + int(np.ceil((36 + raw) * ratio))  # zstd: frame header <= 15, block header 3, checksum 4
        down = _link(REPLY_BYTES, net.down_mbps, rtt, net.efficiency)
        expect = {
            "device-native": tokenize(profile.local) + lm(profile.local),
            "edge-hosted": _link(v.file_bytes + text, net.up_mbps, rtt, net.efficiency) + tokenize(profile.edge)
            + lm(profile.edge) + down,
            "collaborative": tokenize(profile.local) + _at(profile.local, "merge", work.sampled)
            + _at(profile.local, "compress", raw) + _link(wire + text, net.up_mbps, rtt, net.efficiency)
            + _at(profile.edge, "decompress", raw) + lm(profile.edge) + down,
        }
        for policy, seconds in expect.items():
            assert q.loc[(policy, query.query_id), "delay_s"] == pytest.approx(seconds, rel=1e-9), policy
        checked += 1
    assert checked >= 30


@pytest.fixture(scope="module")
def default_run():
    from testbed.sim.fit import comparison

    sc = load_scenario("default")
    run = run_scenario(sc)
    return sc, run, report.summarize(run.queries, sc.policies.baselines), comparison(sc, run.queries, load_profile(
        sc.profile_path()))


def _mean(summary, bench, policy, col="mean_s"):
    return float(summary[(summary.benchmark == bench) & (summary.policy == policy)][col].iloc[0])


@pytest.mark.parametrize("bench", ["mvbench", "videomme", "mlvu"])
def test_accuracy_order(default_run, bench):
    _, _, s, _ = default_run
    dn, qg = _mean(s, bench, "device-native", "accuracy"), _mean(s, bench, "quickgrasp-fixed16", "accuracy")
    assert dn < qg
    for large in ("edge-hosted", "collaborative"):
        # "comparable" (SV-B): QuickGrasp keeps confident small-model answers, some of them right where
        # the large model is wrong, so one seed's draw may put it a query or two above (MVBench, seed 0:
        # 74.3 vs 74.1; seeds 0-4: 73.6 +- 0.8 vs 74.2)
        assert qg <= _mean(s, bench, large, "accuracy") + 1.0
    assert _mean(s, bench, "oracle", "accuracy") >= max(qg, _mean(s, bench, "edge-hosted", "accuracy"))


def test_paper_comparison_labels_every_figure(default_run):
    sc, _, _, table = default_run
    assert sc.paper_comparison
    assert len(table) == len(report.PAPER_FIGURES) and set(table.seed) == {"000"}
    assert set(table.role) == {"fitted", "held-out"}
    held = table[table.role == "held-out"]
    assert len(held) >= 4
    audit = {("mvbench", "queries where Collaborative is slower than EdgeHosted (%)"),
             ("mvbench", "Collaborative network speedup vs EdgeHosted"),
             ("mvbench", "Collaborative edge-compute speedup vs EdgeHosted"),
             ("mvbench", "NoSharing's added delay that is transmission (%)"),
             ("mvbench", "offloaded queries: QuickGrasp speedup vs EdgeHosted")}
    assert audit <= set(zip(held.benchmark, held.figure))
    from testbed.sim.fit import TARGETS

    assert not {(t.benchmark, t.label) for t in TARGETS} & set(zip(held.benchmark, held.figure))


HELD_OUT_BOUNDS = {
    # the range each held-out prediction must stay in on the default run: the paper's own range
    # where the sim meets it, else the paper's claim widened to the miss traces/profiles/README.md
    # documents (so a change that moves a prediction further from seed 000 fails here)
    ("mvbench", "queries where Collaborative is slower than EdgeHosted (%)"): (55.0, 86.0),  # 73; sim -16%
    ("mvbench", "Collaborative network speedup vs EdgeHosted"): (1.5, 15.6),  # 2.9-15.6; sim -38%
    ("videomme", "Collaborative network speedup vs EdgeHosted"): (2.9, 15.6),
    ("mlvu", "Collaborative network speedup vs EdgeHosted"): (2.9, 15.6),
    ("mvbench", "Collaborative edge-compute speedup vs EdgeHosted"): (2.5, 17.7),  # 10-17.7; sim -57%
    ("mlvu", "Collaborative edge-compute speedup vs EdgeHosted"): (10.0, 30.0),  # 10-17.7; sim +20%
    ("mvbench", "NoSharing's added delay that is transmission (%)"): (25.0, 75.0),  # 49; sim -11%
    ("videomme", "NoSharing's added delay that is transmission (%)"): (80.0, 100.0),  # 89; sim +2%
    ("mlvu", "NoSharing's added delay that is transmission (%)"): (80.0, 100.0),  # 92; sim 0%
    ("mvbench", "offloaded queries: QuickGrasp speedup vs EdgeHosted"): (0.95, 12.6),  # 1.3-12.6; sim -1%
    ("mvbench", "offloaded queries: QuickGrasp speedup vs Collaborative"): (0.85, 12.6),  # 1.3-12.6; sim -20%
    ("mlvu", "QuickGrasp accuracy (%)"): (57.0, 63.0),  # 59.9; sim +3% (the densities the agent picks)
    **{(b, f"offloaded queries: QuickGrasp speedup vs {x}"): (1.3, 12.6)
       for b in ("videomme", "mlvu") for x in ("EdgeHosted", "Collaborative")},
    ("mvbench", "local queries: QuickGrasp speedup vs DeviceNative"): (1.1, 13.1),  # 1.2-13.1; sim -1%
    **{(b, f"local queries: QuickGrasp speedup vs {x}"): (1.2, 13.1)
       for b, x in (("mvbench", "EdgeHosted"), ("mvbench", "Collaborative"),
                    ("videomme", "DeviceNative"), ("videomme", "Collaborative"), ("mlvu", "DeviceNative"),
                    ("mlvu", "Collaborative"))},
    ("videomme", "local queries: QuickGrasp speedup vs EdgeHosted"): (1.2, 16.0),  # 1.2-13.1; sim +12%
    ("mlvu", "local queries: QuickGrasp speedup vs EdgeHosted"): (1.2, 20.0),  # 1.2-13.1; sim +5%
    **{(b, "Uncalibrated / QuickGrasp mean delay"): (0.9, 1.1) for b in ("mvbench", "videomme", "mlvu")},
    **{(b, "QuickGrasp - Uncalibrated accuracy (points)"): (1.0, 100.0) for b in ("mvbench", "videomme", "mlvu")},
    ("mvbench", "QuickGrasp overhead share of delay (fraction)"): (0.25, 0.46),  # 0.46; sim -38%
    ("videomme", "QuickGrasp overhead share of delay (fraction)"): (0.50, 0.75),  # 0.50; sim +43%
    ("mlvu", "QuickGrasp overhead share of delay (fraction)"): (0.67, 0.85),  # 0.67; sim +23%
}


def test_held_out_predictions_stay_within_their_documented_errors(default_run):
    _, _, _, table = default_run
    held = table[table.role == "held-out"]
    got = {(b, f): v for b, f, v in zip(held.benchmark, held.figure, held.sim)}
    assert set(got) == set(HELD_OUT_BOUNDS)
    for key, (lo, hi) in HELD_OUT_BOUNDS.items():
        assert lo <= got[key] <= hi, (key, got[key])


def test_shared_link_makes_clients_queue_for_the_uplink(scenario_factory):
    base = {"workload": {"benchmarks": ["videomme"], "queries_per_benchmark": 40},
            "arrivals": {"kind": "closed", "clients": 4}, "policies": {"run": ["edge-hosted"]}}
    own = run_scenario(scenario_factory(base))
    shared = run_scenario(scenario_factory({**base, "network": {"shared": True}}))
    assert shared.queries.delay_s.mean() > 1.5 * own.queries.delay_s.mean()
    assert shared.totals.uplink_util_max[0] > own.totals.uplink_util_max[0]
    # every query is answered exactly once, whatever the contention
    assert sorted(shared.queries.query_id) == sorted(own.queries.query_id)
    assert shared.queries.query_id.is_unique


def test_overload_is_reported(scenario_factory):
    sc = scenario_factory({"workload": {"benchmarks": ["videomme"], "queries_per_benchmark": 200},
                           "arrivals": {"kind": "poisson", "clients": 4, "rate_per_client": 0.1},
                           "policies": {"run": ["edge-hosted", "device-native"]}})
    run = run_scenario(sc)
    notes = report.saturation_notes(run.queries)
    assert any(n.startswith("edge-hosted:") for n in notes)
    assert not any(n.startswith("device-native:") for n in notes)


@pytest.mark.parametrize("bench", ["all", "mvbench", "videomme", "mlvu"])
def test_adaptive_density_matches_the_best_fixed_density_faster(default_run, bench):
    """Seed 000 Fig. 11's shape: quickgrasp's accuracy is within 0.5 point of the most accurate
    fixed density's (ties go to the faster), at no more than 1.05x that density's mean delay."""
    _, _, s, _ = default_run
    fixed = [f"quickgrasp-fixed{a}" for a in (2, 4, 8, 16, 32)]
    best = max(fixed, key=lambda p: (_mean(s, bench, p, "accuracy"), -_mean(s, bench, p)))
    acc, delay = _mean(s, bench, "quickgrasp", "accuracy"), _mean(s, bench, "quickgrasp")
    print(f"\n{bench}: quickgrasp {acc:.2f}% at {delay:.3f} s; best fixed {best} "
          f"{_mean(s, bench, best, 'accuracy'):.2f}% at {_mean(s, bench, best):.3f} s")
    assert acc >= _mean(s, bench, best, "accuracy") - 0.5
    assert delay <= 1.05 * _mean(s, bench, best)


def test_a_busy_link_that_nobody_waits_for_is_not_overloaded():
    """low_bw: one closed-loop client keeps its slow uplink busy, but nothing ever queues."""
    sc = load_scenario("low_bw")
    run = run_scenario(with_overrides(sc, {"workload.queries_per_benchmark": 300}))
    assert run.totals.uplink_util_max.max() > 0.5  # busy, yet
    assert report.saturation_notes(run.queries) == []


def test_contention_at_four_times_its_rate_is_overloaded():
    sc = load_scenario("contention")
    fast = with_overrides(sc, {"workload.queries_per_benchmark": 300,
                               "arrivals.rate_per_client": 4 * sc.arrivals.rate_per_client})
    run = run_scenario(fast)
    notes = report.saturation_notes(run.queries)
    assert notes and all("overloaded" in n for n in notes)
    calm = run_scenario(with_overrides(sc, {"workload.queries_per_benchmark": 300,
                                            "policies.run": ["device-native"]}))
    assert report.saturation_notes(calm.queries) == []


def test_a_live_fallback_replays_as_a_fallback_after_the_recorded_wait(scenario_factory):
    """Hand-worked: two queries of edge-hosted whose live offload went unanswered for 2.5 s (`fallback.wait.1`)
    replay as fallbacks: 2.5 s of edge queue, then the device's recorded 0.1 + 0.1 s, with their request
    bytes sent; the others are served by the edge. The recorded wait wins whatever the sim's own edge would
    do, with or without an edge timeout, and heldout replay copies it rather than fitting it."""
    from testbed.sim.engine import policy_context, simulate_policy
    from testbed.sim.fidelity import heldout_stages
    from testbed.policies.registry import resolve
    from testbed.router.calibration import Calibration

    sc = scenario_factory({"workload": {"queries_per_benchmark": 10}, "network": {"rtt_ms": 0.0}})
    frame, _, params = synthetic_workload(("mvbench",), 10, 0)
    keys = ["local.tokenize.fps.sequential", "local.infer.small.fps.a16", "edge.tokenize.fps.sequential",
            "edge.infer.large.native.fps.a16"]
    dead = set(frame.query_id[:2])
    frame["recorded_s"] = [[(k, 0.1) for k in keys] + ([("fallback.wait.1", 2.5)] if q in dead else [])
                           for q in frame.query_id]
    records = table_to_workload(to_table(frame, "live:testhost:tiny", params)).records
    spec = resolve("edge-hosted")
    ctx = policy_context(sc, "edge-hosted", Calibration(1.0, 1.0), [])
    profile = load_profile(sc.profile_path())
    for timeout in (None, 60.0):
        out = pd.DataFrame(simulate_policy(sc, profile, spec, ctx, records, edge_timeout_s=timeout)[0])
        out = out.set_index("query_id")
        fell = out.index.isin(dead)
        assert fell.sum() == 2
        assert out.fallback[fell].all() and (out.served_by[fell] == "local").all()
        assert not out.fallback[~fell].any() and (out.served_by[~fell] == "edge").all()
        assert np.allclose(out.t_edge_queue_s[fell], 2.5) and np.allclose(out.delay_s[fell], 2.5 + 0.2)
        assert (out.bytes_up[fell] > 0).all()  # the request went up; no reply came down
        assert (out.bytes_down[fell] == 0).all()
        assert all(dict(s)["fallback.wait.1"] == 2.5 for s in out.stage_s[fell])
    live = pd.DataFrame({"policy": "edge-hosted", "query_id": frame.query_id, "frames": 16, "decoded_frames": 16,
                         "stage_s": [dict(r) for r in frame.recorded_s]})
    held = heldout_stages(live)
    assert [h.get("fallback.wait.1") for h in held] == [2.5 if q in dead else None for q in frame.query_id]


def test_a_replay_with_the_live_edge_timeout_falls_back_as_live_does(scenario_factory):
    """Hand-worked: edge-hosted uploads each video file. With every recorded stage 0.1 s and a 1 s edge
    timeout, a query whose upload takes longer than 1 s falls back to the device after exactly 1 s of edge
    queue (live's ZmqEdge books the time waited there), then answers locally; one whose upload is quicker
    is served by the edge as without a timeout."""
    from testbed.sim.engine import policy_context, simulate_policy
    from testbed.policies.registry import resolve
    from testbed.router.calibration import Calibration

    sc = scenario_factory({"workload": {"queries_per_benchmark": 20}, "network": {"up_mbps": 20.0, "rtt_ms": 0.0}})
    frame, _, params = synthetic_workload(("mvbench",), 20, 0)
    keys = ["local.tokenize.fps.sequential", "local.infer.small.fps.a16", "edge.tokenize.fps.sequential",
            "edge.infer.large.native.fps.a16"]
    frame["recorded_s"] = [[(k, 0.1) for k in keys]] * len(frame)
    records = table_to_workload(to_table(frame, "live:testhost:tiny", params)).records
    spec = resolve("edge-hosted")
    ctx = policy_context(sc, "edge-hosted", Calibration(1.0, 1.0), [])
    profile = load_profile(sc.profile_path())
    free = pd.DataFrame(simulate_policy(sc, profile, spec, ctx, records)[0]).set_index("query_id")
    timed = pd.DataFrame(simulate_policy(sc, profile, spec, ctx, records, edge_timeout_s=1.0)[0]).set_index("query_id")
    assert ((free.t_uplink_s + 0.2 > 1.0).any() and (free.t_uplink_s + 0.2 < 1.0).any())  # both kinds of video
    slow = timed.fallback
    assert slow.any() and (~slow).any()
    assert (timed.served_by[slow] == "local").all() and (timed.served_by[~slow] == "edge").all()
    assert np.allclose(timed.t_edge_queue_s[slow], 1.0)  # the wait, booked as edge queue
    assert np.allclose(timed.delay_s[slow], 1.0 + 0.2)  # then the device: its tokenize and infer
    edge = timed[~slow][["t_uplink_s", "t_edge_queue_s", "t_edge_s", "t_downlink_s"]].sum(axis=1)
    assert (edge <= 1.0).all()  # the ones the edge answered, it answered in time
    first = free.submit_s.idxmin()  # nothing ran before the first query: the same either way unless it fell back
    if not slow[first]:
        assert timed.loc[first, "delay_s"] == free.loc[first, "delay_s"]


def test_the_edge_taking_a_request_in_and_the_reply_machinery_are_charged(scenario_factory):
    """Hand-worked: an edge profile with a `request` stage of 0.05 s whatever the upload and a `reply` of 0.01 s
    adds exactly 0.05 s of edge CPU and 0.01 s of downlink to an uncontended edge-hosted query (a video upload),
    nothing to the request of a token payload; a live run's
    recorded `edge.request` time is copied instead; a profile without them (paper-fitted) charges nothing."""
    from dataclasses import replace

    from testbed.sim.engine import policy_context, simulate_policy
    from testbed.policies.registry import resolve
    from testbed.profiles import Curve
    from testbed.router.calibration import Calibration

    sc = scenario_factory({"workload": {"queries_per_benchmark": 10}, "network": {"rtt_ms": 0.0}})
    frame, _, params = synthetic_workload(("mvbench",), 10, 0)
    keys = ["edge.tokenize.fps.sequential", "edge.infer.large.native.fps.a16"]
    frame["recorded_s"] = [[(k, 0.1) for k in keys]] * len(frame)
    records = table_to_workload(to_table(frame, "live:testhost:tiny", params)).records
    spec = resolve("edge-hosted")
    ctx = policy_context(sc, "edge-hosted", Calibration(1.0, 1.0), [])
    base = load_profile(sc.profile_path())
    assert "request" not in base.edge.stages and "reply" not in base.edge.stages
    extra = {"request": Curve((0.0, 1.0), (0.05, 0.05)), "reply": Curve((0.0, 1.0), (0.01, 0.01))}
    charged = replace(base, edge=replace(base.edge, stages={**base.edge.stages, **extra}))

    def first(profile, recs):
        rows = pd.DataFrame(simulate_policy(sc, profile, spec, ctx, recs)[0])
        return rows.loc[rows.submit_s.idxmin()]

    a, b = first(base, records), first(charged, records)
    assert "edge.request" not in dict(a.stage_s) and dict(b.stage_s)["edge.request"] == pytest.approx(0.05)
    assert b.t_edge_s - a.t_edge_s == pytest.approx(0.05) and b.t_downlink_s - a.t_downlink_s == pytest.approx(0.01)
    assert b.delay_s - a.delay_s == pytest.approx(0.06)
    tokens = pd.DataFrame(simulate_policy(sc, charged, resolve("collaborative"),
                                          policy_context(sc, "collaborative", Calibration(1.0, 1.0), []), records)[0])
    assert all(dict(s)["edge.request"] == 0.0 for s in tokens.stage_s)  # tokens: no upload to write and probe
    recorded = [replace(r, recorded_s={**r.recorded_s, "edge.request": 0.2}) for r in records]
    c = first(base, recorded)  # a live run's measured time wins, with or without the profile's curve
    assert dict(c.stage_s)["edge.request"] == pytest.approx(0.2) and c.delay_s - a.delay_s == pytest.approx(0.2)


def test_collaborative_tokenizes_on_the_device_with_the_large_models_encoder(scenario_factory):
    """Hand-worked: a device profile whose large_encode curve is its encode curve + 0.5 s makes each of
    Collaborative's device tokenizations (the large model's encoder) exactly 0.5 s longer, and no
    DeviceNative one (the small model's)."""
    from dataclasses import replace

    from testbed.profiles import Curve

    sc = scenario_factory({"workload": {"queries_per_benchmark": 10},
                           "policies": {"run": ["collaborative", "device-native"]}})
    base = load_profile(sc.profile_path())
    enc = base.local.stages["encode"]
    slower = Curve(enc.size, tuple(y + 0.5 for y in enc.seconds))
    both = replace(base, local=replace(base.local, stages={**base.local.stages, "large_encode": slower}))
    a, b = run_scenario(sc, profile=base).queries, run_scenario(sc, profile=both).queries
    key = "local.tokenize.fps.sequential"
    for policy, added in (("collaborative", 0.5), ("device-native", 0.0)):
        ta = [dict(s)[key] for s in a[a.policy == policy].stage_s]
        tb = [dict(s)[key] for s in b[b.policy == policy].stage_s]
        assert np.allclose(np.array(tb) - np.array(ta), added), policy


def test_fig13_overhead_is_describe_and_compression_over_the_mean_delay():
    """Hand-worked: two QuickGrasp queries of 1 s and 3 s; the first described (0.01 s) and compressed
    (0.03 s), the second served locally with neither: 0.02 s mean overhead over 2 s mean delay = 1%."""
    q = pd.DataFrame({"policy": "quickgrasp", "benchmark": "mvbench", "query_id": ["a", "b"], "delay_s": [1.0, 3.0],
                      "stage_s": [{"local.describe.keyframe": 0.01, "local.compress.keyframe.a8": 0.03,
                                   "edge.infer.large.shared.keyframe.a8": 0.5},
                                  {"local.infer.small.keyframe.a16": 1.0}]})
    assert report.overhead_share(q, "mvbench") == pytest.approx(1.0)
