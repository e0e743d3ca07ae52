"""Stream runs end to end: `testbed sim` results folders (Table 2 and Table 1 shapes), visual
focus's arithmetic, and a real-time run with tiny models that records a trace the sim replays."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from testbed.cli.main import main
from testbed.streams.focus import (category_patches, focus_tokens, focus_weights, ggvr_patches, patch_grid,
                                   roi_patches)

SMALL = """
description = "tiny stream run"
seed = 1
[workload]
kind = "stream"
[stream]
streams_per_dataset = 12
[network]
up_mbps = 211.0
down_mbps = 72.0
rtt_ms = 42.0
[nodes]
edge_gpus = 64
[policies]
run = ["svlm-only", "lvlm-only", "laecips-like", "adas-like", "edgevlm"]
baselines = []
{extra}
"""


def test_sim_of_a_stream_scenario_writes_its_results(tmp_path, capsys):
    sc = tmp_path / "st.toml"
    sc.write_text(SMALL.format(extra=""))
    assert main(["sim", str(sc), "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res" / "st").iterdir()
    names = {p.name for p in run.iterdir()}
    assert {"frames.parquet", "summary.csv", "summary.md", "table2.csv", "table2.md", "paper_comparison.csv",
            "scenario.toml", "versions.json", "totals.csv", "f1_vs_lcr.png"} <= names
    s = pd.read_csv(run / "summary.csv")
    assert {"micro_f1", "macro_f1", "em", "accuracy", "lcr", "lhl_s", "lcr_band", "deadline_misses"} <= set(s.columns)
    assert list(s.policy) == ["svlm-only", "lvlm-only", "laecips-like", "adas-like", "edgevlm"]
    frames = pd.read_parquet(run / "frames.parquet")
    assert len(frames) == 5 * 12 * 20
    assert "SYNTHETIC" in (run / "summary.md").read_text() and "SYNTHETIC" in (run / "table2.md").read_text()
    t2 = pd.read_csv(run / "table2.csv")
    assert {"nuscenes Micro-F1", "nuscenes Macro-F1", "nuscenes 0-1 EM", "nuscenes LCR"} <= set(t2.columns)
    cmp = pd.read_csv(run / "paper_comparison.csv")
    assert set(cmp.role) <= {"fitted", "held-out", "band"}
    # the rows in the results are the rows the run made: LCR is the uploaded share of frames
    e = frames[frames.policy == "edgevlm"]
    assert s.set_index("policy").lcr["edgevlm"] == pytest.approx(100 * e.uploaded.mean())
    assert "as seed 001's Table 2 lays them out" in capsys.readouterr().out


def test_a_k_call_sweep_writes_table_1(tmp_path):
    sc = tmp_path / "k.toml"
    sc.write_text(SMALL.format(extra='[sweep]\n"policies.edgevlm.k_call" = [1, 3]\n'))
    assert main(["sim", str(sc), "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res" / "k").iterdir()
    t1 = pd.read_csv(run / "table1.csv")
    assert list(t1.k_call) == [1, 3] and list(t1.paper_lcr) == [69.1, 27.3]
    assert list(t1.lcr) == [50.0, 25.0]  # 'call' reading: ceil(20 / (K + 1)) of 20 frames
    assert (run / "point-000" / "summary.csv").is_file() and (run / "sweep.csv").is_file()
    assert "SYNTHETIC" in (run / "table1.md").read_text()


def test_roi_patches_by_hand():
    # a 4x4 grid on 400x200: patches 100 x 50 px; the box (150, 60)-(260, 90) covers columns 1-2 of row 1
    assert roi_patches((150, 60, 260, 90), 400, 200, 4) == [5, 6]
    assert roi_patches((0, 0, 400, 200), 400, 200, 4) == list(range(16))
    assert roi_patches((10, 10, 10, 50), 400, 200, 4) == []


def test_focus_follows_eq_10_and_11():
    then = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    now = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    w = focus_weights(now, then, [[0]], mu=1.0)
    s = torch.tensor([1.0, 0.0, 1 / math.sqrt(2)])  # cosine to the ROI's feature (1, 0)
    assert torch.allclose(w, torch.sigmoid(s) + 0.5)  # mu sigmoid(s) + b, 0.5 mu + b = 1
    assert w[1] == pytest.approx(1.0)  # no similarity either way: the token is kept
    out = focus_tokens(now, then, [[0]], alpha=0.7, mu=1.0)
    assert torch.allclose(out, 0.7 * now + 0.3 * w[:, None] * now)
    assert torch.equal(focus_weights(now, then, [[]]), torch.ones(3))


def test_ggvr_keeps_the_patches_of_each_categorys_largest_region_eq_6():
    # 100 x 60 px cut into 5 x 3 patches of 20 x 20; category 0 has two boxes, the larger counts
    rois = [(0, (0, 0, 5, 5)), (0, (10, 10, 30, 25)), (2, (60, 40, 80, 60)), (4, (40, 0, 60, 20))]
    assert category_patches(rois, 100, 60, (5, 3)) == {0: [0, 1, 5, 6], 2: [13], 4: [2]}  # an edge touch is no overlap
    assert ggvr_patches(rois, 100, 60, (5, 3)) == [0, 1, 2, 5, 6, 13]  # |P_ROI| = 6 tokens of 15
    assert ggvr_patches([], 100, 60, (5, 3)) == []
    assert patch_grid(1824, 1600, 900) == (57, 32) and patch_grid(49, 224, 224) == (7, 7)


def test_grvr_weights_two_categories_by_hand_eq_7_to_11():
    then = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # frame T - d: category A on patch 0, B on 1 and 2
    now = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    # Eq. 7: f_A = (1, 0), f_B = (0.5, 1); Eq. 8: S_A = (1, 0), S_B = (0.5, 1) / |(0.5, 1)| = (0.4472, 0.8944)
    s = [(1.0 + 0.5 / math.sqrt(1.25)) / 2, (0.0 + 1.0 / math.sqrt(1.25)) / 2]  # Eq. 9
    w = [1.0 / (1.0 + math.exp(-x)) + 0.5 for x in s]  # Eq. 10, mu = 1, b = 1 - 0.5 mu
    assert w == pytest.approx([1.173401, 1.109977], abs=1e-6)
    got = focus_weights(now, then, [[0], [1, 2]], mu=1.0)
    assert got.tolist() == pytest.approx(w, abs=1e-6)
    out = focus_tokens(now, then, [[0], [1, 2]], alpha=0.7, mu=1.0)  # Eq. 11
    assert out.flatten().tolist() == pytest.approx([2 * (0.7 + 0.3 * w[0]), 0.0, 0.0, 3 * (0.7 + 0.3 * w[1])], abs=1e-6)


def test_the_sim_counts_ggvr_tokens_from_the_traces_grounding(tmp_path):
    """edgeVLM in the sim: a frame with a context answer adds Eq. 6's patches of that answer's
    regions (each category's box on the 1600 x 900 frame's 57 x 32 grid), only with GGVR on."""
    from testbed.sim.engine import run_stream_scenario
    from testbed.streams.synthetic import synthetic_streams
    from testbed.streams.trace import table_to_streams, to_table, write_stream_trace
    from tests.conftest import make_scenario

    frame, provenance, params = synthetic_streams(("nuscenes",), 0, 3)
    write_stream_trace(frame, tmp_path / "t.parquet", provenance, params)
    streams = {s.stream_id: s for s in table_to_streams(to_table(frame, provenance, params)).streams}
    sc = make_scenario({"workload": {"kind": "stream-trace", "path": str(tmp_path / "t.parquet")},
                        "stream": {"vision_tokens": 1824},
                        "policies": {"run": ["edgevlm-ablation-crm", "edgevlm-ablation-crm-ggvr-grvr"],
                                     "baselines": []}})
    rows = run_stream_scenario(sc).queries
    focus = rows[rows.policy == "edgevlm-ablation-crm-ggvr-grvr"]
    with_ctx = focus[focus.context_frame >= 0]
    assert len(with_ctx) > 10
    for r in with_ctx.itertuples():
        rois = streams[r.stream_id].rois[r.context_frame]
        assert r.ggvr_tokens == len(ggvr_patches(rois, 1600, 900, (57, 32)))
    assert with_ctx.ggvr_tokens.gt(0).any()
    assert (rows[rows.policy == "edgevlm-ablation-crm"].ggvr_tokens == 0).all()


def test_a_live_stream_keeps_real_time_and_records_a_replayable_trace(tmp_path, monkeypatch):
    """Tiny models at 1 FPS on this machine's CPU: every frame's local answer is before its deadline."""
    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path / "cache"))
    from testbed.live.streams import record_trace, run_streams_real
    from testbed.sim.engine import run_stream_scenario
    from testbed.models.pair import make_pair
    from testbed.streams.trace import table_to_streams, to_table, write_stream_trace
    from tests.conftest import make_scenario

    sc = make_scenario({"workload": {"kind": "stream"}, "stream": {"fps": 1.0, "seconds": 4.0, "live_streams": 1},
                        "policies": {"run": ["svlm-only", "edgevlm"], "baselines": []}})
    pair = make_pair("tiny")
    run, played = run_streams_real(sc, pair, tmp_path / "out", note=lambda s: None)
    q = run.queries
    assert len(q) == 2 * 4 and q.answered.all()
    assert not q.local_missed.any(), q[["policy", "frame_index", "local_lateness_s"]]
    assert (q.local_s >= q.frame_time_s).all()  # nothing answered before its frame was captured
    e = q[q.policy == "edgevlm"]
    assert e.uploaded.iloc[0] and (e.context_lag_s.dropna() <= 10).all()
    trace = record_trace(pair, played, 16, max_lag_s=2.0)
    wl = table_to_streams(to_table(trace, "live:test:tiny", {}))
    assert wl.streams[0].n == 4 and wl.streams[0].max_lag == 2 and (wl.streams[0].cloud_s > 0).all()
    write_stream_trace(trace, tmp_path / "t.parquet", "live:test:tiny")
    replay = make_scenario({"workload": {"kind": "stream-trace", "path": str(tmp_path / "t.parquet")},
                            "policies": {"run": ["svlm-only", "edgevlm"], "baselines": [],
                                         "edgevlm": {"delta_s": 2.0}}})  # the trace holds 2 lags
    rows = run_stream_scenario(replay).queries
    assert len(rows) == 2 * 4 and np.isin(rows.source, ["small", "large", "none"]).all()
    # replayed stage times are the recording's: a frame with no answer is one its local path made late
    assert ((rows.source != "none") | rows.local_missed).all()


def test_a_live_stream_uploads_over_the_shaped_link_to_an_edge_process(tmp_path):
    """Seed 001 for real over the network: frames played at 1 FPS, uploads crossing the shaped link
    to the edge process, which answers asynchronously."""
    import json

    (tmp_path / "sl.toml").write_text(
        'seed = 0\n[workload]\nkind = "stream"\n[stream]\nfps = 1.0\nseconds = 4.0\nlive_streams = 1\n'
        '[network]\nup_mbps = 20.0\ndown_mbps = 40.0\nrtt_ms = 20.0\n[live]\nself_check = false\n'
        '[models]\npreset = "tiny"\n[policies]\nrun = ["lvlm-only", "edgevlm"]\nbaselines = []\n')
    assert main(["live", str(tmp_path / "sl.toml"), "--out", str(tmp_path / "r")]) == 0
    (run,) = (tmp_path / "r" / "sl").iterdir()
    versions = json.loads((run / "versions.json").read_text())
    assert versions["mode"] == "live" and versions["shaping"] in ("tbf", "htb", "tbf+netem", "user-space")
    f = pd.read_parquet(run / "frames.parquet")
    up = f[f.uploaded]
    assert (f["mode"] == "live").all() and f[f.policy == "lvlm-only"].uploaded.all()
    assert (up.bytes_up > 0).all() and (up.bytes_down > 0).all()  # every upload crossed and was answered
    assert (up.t_uplink_s >= 0.009).all() and (up.t_downlink_s >= 0.009).all()  # RTT/2 = 10 ms each way
    assert f[f.policy == "edgevlm"].uploaded.sum() < len(f[f.policy == "edgevlm"])  # K_call skips some


def test_a_pocket_stream_grounds_and_focuses_for_real_and_records_every_variant(tmp_path, monkeypatch):
    """The pocket pair on easy-VQA shapes: the edge grounds each shape its answer names, edgeVLM's
    small model gets Eq. 6's region patches of the context frame (on the encoder's 7 x 7 grid), and
    the recording holds the small model with its own history, the large answer as history, with
    GGVR and with GGVR + GRVR, each from the models."""
    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path / "cache"))
    from testbed.live.streams import record_trace, run_streams_real
    from testbed.models.pair import make_pair
    from testbed.streams.trace import table_to_streams, to_table
    from tests.conftest import make_scenario

    sc = make_scenario({"workload": {"kind": "stream"},
                        "stream": {"fps": 1.0, "seconds": 6.0, "live_streams": 1, "content": "easy-vqa"},
                        "models": {"preset": "pocket"},
                        "policies": {"run": ["edgevlm"], "baselines": [], "edgevlm": {"k_call": 0}}})
    pair = make_pair("pocket")
    notes: list[str] = []
    run, played = run_streams_real(sc, pair, tmp_path / "out", note=notes.append)
    q = run.queries
    assert not any("focus skipped" in n for n in notes), notes
    ctx = q[q.context_frame >= 0]
    assert len(ctx) and (ctx.ggvr_tokens > 0).all() and (ctx.ggvr_tokens < 49).all()
    trace = record_trace(pair, played, 16, max_lag_s=2.0)
    (s,) = table_to_streams(to_table(trace, "live:test:pocket", {})).streams
    assert s.categories == ("circle", "rectangle", "triangle") and all(len(r) >= 1 for r in s.rois)
    assert s.context is not None and s.context_ggvr is not None and s.context_focus is not None
    # GGVR adds tokens to the same prompt: on frames with a context, its scores are the models' own, not a copy
    assert not np.allclose(s.context_ggvr[2:], s.context[2:])


def test_a_live_stream_run_spreads_its_streams_over_the_clients(tmp_path, monkeypatch):
    """As the sim does (testbed.experiment.client_streams): with two clients, two streams play at once,
    one per client, so the policy's run takes about one stream's time, not two."""
    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path / "cache"))
    from testbed.live.streams import run_streams_real
    from testbed.models.pair import make_pair
    from tests.conftest import make_scenario

    sc = make_scenario({"workload": {"kind": "stream"}, "arrivals": {"clients": 2},
                        "stream": {"fps": 1.0, "seconds": 3.0, "live_streams": 2},
                        "policies": {"run": ["svlm-only"], "baselines": []}})
    run, played = run_streams_real(sc, make_pair("tiny"), tmp_path / "out", note=lambda s: None)
    q = run.queries
    assert len(q) == 2 * 3 and len(played) == 2
    assert q.groupby("stream_id").client.unique().map(tuple).to_dict() == {"live-00": (0,), "live-01": (1,)}
    assert run.totals.makespan_s.iloc[0] < 2 * 3.0  # played side by side: two 3 s streams in under 6 s
