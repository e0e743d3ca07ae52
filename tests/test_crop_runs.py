"""Seed 003 end to end: the sim on the calibrated synthetic workload against the issue's acceptance
(entropy-crop above random-crop at equal bytes; full-res accuracy within a point at fewer bytes and
less compute; the second round trip in the delay breakdown), a live run with tiny models over a
shaped link writing the same plots, and an edge that answers bad crops with a clear error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from testbed.sim.engine import run_scenario
from testbed import report
from tests.conftest import make_scenario

POLICIES = ["global-only", "full-res", "random-crop", "entropy-crop"]


def _scenario(threshold: float, policies=POLICIES, n: int = 1500):
    return make_scenario({"workload": {"kind": "synthetic-crop", "queries_per_benchmark": n},
                          "network": {"up_mbps": 10.0, "down_mbps": 40.0, "rtt_ms": 40.0},
                          "policies": {"run": policies, "baselines": [],
                                       "entropy-crop": {"h_min_threshold": threshold, "view_tokens": 576}}})


def _sim(threshold: float, policies=POLICIES, n: int = 1500) -> pd.DataFrame:
    return run_scenario(_scenario(threshold, policies, n)).queries


@pytest.fixture(scope="module")
def sweep():
    return {t: report.crop_summary(_sim(t)).set_index("policy") for t in (0.4, 0.7, 1.0)}


def test_entropy_crop_lies_above_random_crop_at_equal_bytes(sweep):
    for t, s in sweep.items():
        ec, rc = s.loc["entropy-crop"], s.loc["random-crop"]
        assert ec.retransmit_share > 0.1
        assert abs(ec.mb_up_per_query - rc.mb_up_per_query) / rc.mb_up_per_query < 0.1, t  # equal bytes
        assert ec.accuracy > rc.accuracy + 1.0, t


def test_entropy_crop_reaches_full_res_accuracy_with_fewer_bytes_and_less_compute(sweep):
    reached = [s.loc["entropy-crop"] for s in sweep.values()
               if s.loc["entropy-crop"].accuracy >= s.loc["full-res"].accuracy - 1.0]
    full = sweep[0.4].loc["full-res"]
    assert reached, "no threshold reaches full-res accuracy within 1 point"
    assert all(ec.mb_up_per_query < full.mb_up_per_query and ec.prefill_tokens_per_query
               < full.prefill_tokens_per_query for ec in reached)
    go = sweep[0.4].loc["global-only"]
    assert go.accuracy < full.accuracy and go.retransmit_share == 0 and full.retransmit_share == 0


def test_the_second_round_trip_is_in_the_delay_breakdown():
    q = _sim(0.7, ["entropy-crop"], n=200)
    two, one = q[q.round_trips == 2], q[q.round_trips == 1]
    assert len(two) and len(one)
    # each round trip crosses the 40 ms link: at least one RTT/2 up and down per round
    assert (two.t_uplink_s >= 2 * 0.02 - 1e-9).all() and (two.t_downlink_s >= 2 * 0.02 - 1e-9).all()
    assert two.t_uplink_s.mean() > one.t_uplink_s.mean() + 0.02  # the second upload: one more RTT/2 at least
    parts = q[["t_local_s", "t_local_queue_s", "t_uplink_s", "t_edge_queue_s", "t_edge_s", "t_downlink_s"]]
    assert np.allclose(parts.sum(axis=1), q.delay_s)  # one client: the parts add up to the delay
    assert all("edge.locate" in dict(s) for s in two.stage_s)  # the relative-attention pass is booked
    # bytes up, by hand from the trace: the global view and the prompt; with a crop, the crop and the prompt again
    from testbed.sim.engine import load_workload
    from testbed.codec.size import text_bytes

    recs = {r.query.query_id: r for r in load_workload(_scenario(0.7, ["entropy-crop"], n=200)).records}
    for row in q.itertuples():
        r = recs[row.query_id]
        text = text_bytes(r.query.question, r.query.options)
        want = r.views.global_bytes + text + (r.views.crop_bytes + text if row.round_trips == 2 else 0)
        assert row.bytes_up == want


def test_same_scenario_and_seed_same_numbers():
    a, b = _sim(0.7, ["random-crop"], n=100), _sim(0.7, ["random-crop"], n=100)
    cols = ["query_id", "choice", "round_trips", "bytes_up", "delay_s"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_the_shipped_scenarios_run(tmp_path):
    from testbed.cli.main import main

    assert main(["validate", "scenarios/image_entropy_crop.toml", "scenarios/image_entropy_crop_sweep.toml"]) == 0


# -- live ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("cropmedia")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        Image.fromarray((rng.random((90, 120, 3)) * 255).astype(np.uint8)).save(d / f"im{i}.jpg", quality=90)
        lines.append({"query_id": f"q{i}", "benchmark": "img", "image": f"im{i}.jpg", "question": f"what is {i}?",
                      "options": ["a", "b", "c"], "answer": i % 3, "split": "profile" if i == 0 else "test"})
    (d / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return d


def test_a_live_run_with_tiny_models_over_a_shaped_link_writes_the_crop_plots(images, tmp_path):
    from testbed.cli.main import main

    (tmp_path / "live.toml").write_text(
        f'[workload]\nkind = "manifest"\npath = "{images / "m.jsonl"}"\n[network]\nup_mbps = 20.0\n'
        f'down_mbps = 40.0\nrtt_ms = 20.0\n[live]\nself_check = false\n[policies]\n'
        f'run = {json.dumps(POLICIES)}\nbaselines = []\n'
        '[policies.entropy-crop]\ntarget_retransmit_share = 1.0\ncrop_scale = 0.5\nglobal_side = 64\n')
    assert main(["live", str(tmp_path / "live.toml"), "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res" / "live").iterdir()
    assert {"accuracy_vs_bytes.png", "crop.csv", "delay_breakdown.png"} <= {p.name for p in run.iterdir()}
    q = pd.read_parquet(run / "queries.parquet")
    assert (q["mode"] == "live").all() and set(q.policy) == set(POLICIES) and not q.fallback.any()
    ec = q[q.policy == "entropy-crop"]
    assert (ec.round_trips == 2).all()  # every query above the lowest threshold: the crop went over the link
    full, glob = q[q.policy == "full-res"], q[q.policy == "global-only"]
    assert ec.bytes_up.min() > glob.bytes_up.max() and full.bytes_up.min() > glob.bytes_up.max()
    assert all(any(k.startswith("edge.locate") for k in dict(s)) for s in ec.stage_s)
    assert (full.edge_prefill_tokens > glob.edge_prefill_tokens.max()).all()  # the tiles cost the edge more
    crop = pd.read_csv(run / "crop.csv").set_index("policy")
    assert crop.loc["entropy-crop", "retransmit_share"] == 1.0 and crop.loc["global-only", "retransmit_share"] == 0


# -- bad inputs at the edge --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def edge_server():
    from testbed.live.edge_node import ModelEdge
    from testbed.live.edge_server import EdgeServer
    from testbed.models.pair import tiny_pair

    handler = ModelEdge(tiny_pair())
    with EdgeServer("tcp://127.0.0.1:*", handler).start() as srv:
        yield srv
    handler.close()


def _request(views: list[tuple[dict, bytes]]) -> tuple[dict, list[bytes]]:
    from testbed.tokenizer.sampling import DEFAULT_SAMPLER as S

    sampler = {"kind": S.kind, "rate": S.rate, "min_frames": S.min_frames, "max_frames": S.max_frames, "count": S.count}
    steps = [{"op": "tokenize", "payload": i, "sampler": sampler, "pipelined": False, "encoder": "large"}
             for i in range(len(views))]
    steps.append({"op": "infer", "model": "large", "density": 16, "question": "what?", "options": ["a", "b"]})
    payloads = [{"kind": "image", "frames": 0, "density": 0, "encoder": "large", "sampler": "", "raw_bytes": 0, **m}
                for m, _ in views]
    return {"query_id": "bad", "offload": {"v": 1, "payloads": payloads, "steps": steps}}, [d for _, d in views]


@pytest.mark.parametrize("views, reason", [
    ([({"view": "crop", "box": [50, 50, 250, 90], "source": [120, 90]}, "crop")], "outside the 120x90 image"),
    ([({"view": "crop", "box": [10, 10, 10, 40], "source": [120, 90]}, "crop")], "empty crop"),
    ([({"view": "crop", "box": [0, 0, 20, 20], "source": [120, 90]}, "empty")], "empty image"),
    ([({"view": "global"}, "corrupt")], "not a readable image"),
    ([({"view": "global"}, "truncated")], "not a readable image"),
    ([({"view": "crop", "box": [0, 0, 30, 30], "source": [120, 90]}, "crop")], "is 16x16 pixels but its box"),
    ([({"view": "global", "held": "0" * 64}, "none")], "no longer has it"),
])
def test_bad_crops_get_a_clear_error_reply_and_the_edge_keeps_serving(edge_server, views, reason):
    import io

    from PIL import Image

    from testbed.live.client import EdgeClient
    from testbed.live.errors import EdgeError

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, "JPEG")
    good = buf.getvalue()
    data = {"crop": good, "empty": b"", "corrupt": b"\xff\xd8\xff\xe0 this is no jpeg", "none": b"",
            "truncated": good[:40]}
    meta, frames = _request([(m, data[d]) for m, d in views])
    with EdgeClient(edge_server.endpoint, timeout_s=20) as client:
        with pytest.raises(EdgeError, match=reason):
            client.request(meta, frames)
        ok_meta, ok_frames = _request([({"view": "global"}, good)])
        assert len(client.request(ok_meta, ok_frames).meta["logits"]) == 2  # still serving


def test_the_pocket_region_map_finds_a_small_shape(tmp_path):
    """The pocket substitute (the large head's pooling weights under a question-free prompt) on canvases
    of the small-object workload: the located box holds the pasted shape (measured: 92% within 1.2
    token cells on 60 canvases; here most of five)."""
    from testbed.live.pocket_videos import small_object_workload
    from testbed.live.real import locate_box
    from testbed.crop_image import global_view
    from testbed.models.pocket import pocket_pair
    from testbed.policies.effects import Locate
    from testbed.tokenizer.image import load_image
    from testbed.tokenizer.preprocess import preprocess
    from testbed.workload.manifest import read_manifest

    small_object_workload(tmp_path, n_images=5, canvas=896, object_px=48, seed=1)
    pair = pocket_pair()
    enc, large = pair.encoders["large"], pair.models["large"]
    seen, hits = set(), 0
    for r in read_manifest(tmp_path / "pocket-crop.jsonl").records:
        if r.query.media.path in seen:
            continue
        seen.add(r.query.media.path)
        pixels = load_image(r.query.media.path)[0]
        ys, xs = np.nonzero(np.abs(pixels.astype(int) - pixels[0, 0]).sum(-1) > 60)  # the shape's pixels
        tokens = enc.encode(preprocess(global_view(pixels, 224)[None], enc.image_size, enc.mean, enc.std))
        x0, y0, x1, y1 = locate_box(large.roi_map(tokens, r.query.question, r.query.options),
                                    Locate(0.0, 0.4, 896, 896))
        hits += x0 <= xs.mean() < x1 and y0 <= ys.mean() < y1
    assert len(seen) == 5 and hits >= 4
    assert pair.models["small"].roi_map(tokens, "what?", ("a",)) is None  # the small head has no attention


def test_a_recorded_crop_trace_replays_in_the_sim(images, tmp_path):
    """`testbed record` on a scenario running the crop policies records each image's views for real;
    the sim replays the four policies on it with the bytes those real views have."""
    from testbed.cli.main import main
    from testbed.crop_image import make_view
    from testbed.traces import read_trace

    knobs = '[policies.entropy-crop]\ntarget_retransmit_share = 1.0\ncrop_scale = 0.5\nglobal_side = 64\n'
    (tmp_path / "rec.toml").write_text(f'[workload]\nkind = "manifest"\npath = "{images / "m.jsonl"}"\n'
                                       f'[policies]\nrun = {json.dumps(POLICIES)}\nbaselines = []\n{knobs}')
    assert main(["record", str(tmp_path / "rec.toml"), "--out", str(tmp_path / "t.parquet")]) == 0
    wl = read_trace(tmp_path / "t.parquet")
    for r in wl.records:
        path = images / f"{r.query.query_id.replace('q', 'im')}.jpg"
        assert r.views.global_bytes == len(make_view(path, "global", side=64)[0])
        assert r.views.crop_bytes == len(make_view(path, "crop", r.views.box)[0])
        assert (r.views.box[2] - r.views.box[0], r.views.box[3] - r.views.box[1]) == (45, 45)  # 0.5 x 90 px
        assert "edge.locate" in r.recorded_s and "local.crop.global" in r.recorded_s
    (tmp_path / "sim.toml").write_text(f'[workload]\nkind = "trace"\npath = "{tmp_path / "t.parquet"}"\n'
                                       f'[policies]\nrun = {json.dumps(POLICIES)}\nbaselines = []\n{knobs}')
    assert main(["sim", str(tmp_path / "sim.toml"), "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res" / "sim").iterdir()
    q = pd.read_parquet(run / "queries.parquet")
    ec = q[q.policy == "entropy-crop"].set_index("query_id")
    recs = {r.query.query_id: r for r in wl.records}
    assert (ec.round_trips == 2).all() and len(ec) == 2
    for qid, row in ec.iterrows():
        v = recs[qid].views
        text = len(recs[qid].query.question.encode()) + sum(len(o) + 1 for o in recs[qid].query.options)
        assert row.bytes_up == v.global_bytes + v.crop_bytes + 2 * text
