"""Recording a trace on every arm, resumed after an interruption, replayed by the sim; and the sim's
fidelity to a live run over a shaped link (strict replay within 5% per policy)."""

import json

import numpy as np
import pandas as pd
import pytest

from testbed.cli.main import main
from testbed.live.record import record
from testbed.live.shaping import probe
from testbed.models.pair import tiny_pair
from testbed.traces import read_trace
from testbed.workload.manifest import read_manifest
from tests.videos import encode

ARMS = {"local.tokenize.keyframe.pipelined", "local.tokenize.fps.sequential", "edge.tokenize.fps.sequential",
        "edge.tokenize.keyframe.pipelined", "local.infer.small.keyframe.a16", "local.infer.small.fps.a16",
        "edge.infer.large.native.fps.a16", "edge.infer.large.native.keyframe.a16", "local.compress.fps.a16",
        "edge.decompress.fps.a16", "local.describe.keyframe", "local.inspect.keyframe",
        *{f"{k}.keyframe.a{d}" for k in ("local.compress", "edge.decompress") for d in (2, 4, 8, 16, 32)},
        *{f"edge.infer.large.shared.keyframe.a{d}" for d in (2, 4, 8, 16, 32)}}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    d = tmp_path_factory.mktemp("recmedia")
    clips = [encode(d / f"r{i}.mp4", s, fps=25, size="160x90", gop=g)
             for i, (s, g) in enumerate([(3, 25), (6, 50), (4, 10_000), (5, 25)])]
    path = d / "rec.jsonl"
    path.write_text("".join(json.dumps({"query_id": f"r{i}", "video": c.name, "question": f"clip {i}?",
                                        "options": ["a", "b", "c"], "answer": i % 3,
                                        "split": "profile" if i == 0 else "test"}) + "\n"
                            for i, c in enumerate(clips)))
    return path


def test_an_interrupted_recording_resumes_to_the_same_trace(manifest, tmp_path):
    wl, pair = read_manifest(manifest), tiny_pair()
    assert record(wl, pair, tmp_path / "a.parquet", stop_after=1) is None  # interrupted after one query
    assert len((tmp_path / "a.parquet.partial.jsonl").read_text().splitlines()) == 1
    record(wl, pair, tmp_path / "a.parquet")  # resumes: three more
    record(wl, tiny_pair(), tmp_path / "b.parquet")  # in one go, with a freshly built pair
    a, b = read_trace(tmp_path / "a.parquet"), read_trace(tmp_path / "b.parquet")
    assert a.provenance.startswith("live:") and [r.query.query_id for r in a.records] == ["r0", "r1", "r2", "r3"]
    for ra, rb in zip(a.records, b.records):
        assert ra.query.query_id == rb.query.query_id and ra.split == rb.split
        np.testing.assert_allclose(ra.small_logits, rb.small_logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ra.small_logits_fps, rb.small_logits_fps, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ra.large_native_logits, rb.large_native_logits, rtol=1e-5, atol=1e-6)
        for d in (2, 4, 8, 16, 32):
            np.testing.assert_allclose(ra.large_logits[d], rb.large_logits[d], rtol=1e-5, atol=1e-6)
        assert set(ra.recorded_s) == ARMS and all(v > 0 for v in ra.recorded_s.values())
        assert set(ra.recorded_bytes) == {k for k in ARMS if k.startswith("local.compress")}
    assert not (tmp_path / "a.parquet.partial.jsonl").exists()


def test_the_sim_replays_every_policy_on_a_recorded_trace(manifest, tmp_path):
    record(read_manifest(manifest), tiny_pair(), tmp_path / "t.parquet")
    (tmp_path / "t.toml").write_text(f'[workload]\nkind = "trace"\npath = "{tmp_path / "t.parquet"}"\n'
                                     '[policies]\nrun = ["device-native", "edge-hosted", "collaborative", '
                                     '"quickgrasp-fixed8", "nosharing", "uncalibrated-fixed32", "oracle", '
                                     '"quickgrasp"]\n')
    assert main(["sim", str(tmp_path / "t.toml"), "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res" / "t").iterdir()
    q = pd.read_parquet(run / "queries.parquet")
    assert len(q) == 8 * 3
    # recorded stage times drive the sim: device-native's local time is exactly its two recorded stages
    trace = {r.query.query_id: r for r in read_trace(tmp_path / "t.parquet").records}
    for row in q[q.policy == "device-native"].itertuples():
        rec = trace[row.query_id].recorded_s
        assert row.t_local_s == pytest.approx(rec["local.tokenize.fps.sequential"] + rec["local.infer.small.fps.a16"])
    # the recording computed the density agent's context inputs for real; the sim replays quickgrasp on
    # them, with the recorded Describe time, and knows every density's outcome (exact regret)
    for r in trace.values():
        assert r.context.txt is not None and r.context.vis is not None and 0 <= r.context.s_cplx <= 1
    ad = q[(q.policy == "quickgrasp") & (q.served_by == "edge")]
    for row in ad.itertuples():
        assert dict(row.stage_s)["local.describe.keyframe"] == trace[row.query_id].recorded_s["local.describe.keyframe"]
    assert ad.regret.notna().all() and (run / "decisions-quickgrasp.npz").is_file()
    # and the payloads it sends are the recorded ones
    for row in q[(q.policy == "quickgrasp-fixed8") & (q.served_by == "edge")].itertuples():
        assert dict(row.stage_bytes)["local.compress.keyframe.a8"] == trace[row.query_id].recorded_bytes[
            "local.compress.keyframe.a8"]


def test_the_sim_replays_a_live_run_within_five_percent(manifest, tmp_path):
    """Strict replay: the live run's own stage times, the sim's link and queues: mean delay within 5%."""
    if probe().available == ["user-space"]:
        pytest.skip("needs namespaces for a live edge")
    policies = ["device-native", "edge-hosted", "collaborative", "quickgrasp-fixed16", "nosharing"]
    knobs = "[policies.quickgrasp-fixed16]\ntau_route = 1.0\n[policies.nosharing]\ntau_route = 1.0\n"
    (tmp_path / "f.toml").write_text(
        f'[workload]\nkind = "manifest"\npath = "{manifest}"\n[network]\nup_mbps = 10.0\ndown_mbps = 20.0\n'
        f'rtt_ms = 30.0\n[policies]\nrun = {json.dumps(policies)}\n{knobs}')
    assert main(["live", str(tmp_path / "f.toml"), "--fidelity", "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res" / "f").iterdir()
    table = pd.read_csv(run / "fidelity.csv")
    assert list(table.columns) == ["policy", "stage", "replay", "metric", "live_s", "sim_s", "error"]
    assert set(table.replay) == {"strict", "profile", "heldout"} and set(table.metric) == {"mean", "p50", "p99"}
    strict = table[(table.stage == "total") & (table.replay == "strict") & (table.metric == "mean")]
    assert set(strict.policy) == set(policies)
    assert (strict.error.abs() <= 0.05).all(), strict
    heldout = table[(table.stage == "total") & (table.replay == "heldout") & (table.metric == "mean")]
    assert set(heldout.policy) == set(policies) and heldout.error.notna().all()
    predicted = table[(table.stage == "predicted") & (table.replay == "strict")]
    assert set(predicted.policy) == set(policies) and (predicted.live_s >= 0).all()
    assert "## Verdicts" in (run / "fidelity.md").read_text()
    assert (run / "fidelity.md").is_file() and (run / "fidelity.png").stat().st_size > 0
