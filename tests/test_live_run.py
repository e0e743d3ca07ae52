"""Live mode end to end: a real edge process behind a shaped link, tiny models, videos made with
ffmpeg; the sim's results folder; an edge killed in mid-run loses no query."""

import json
import os
import signal
import tempfile
import threading
from pathlib import Path

import pandas as pd
import pytest

from testbed.cli.main import main
from testbed.live.record import record
from testbed.live.run import live_link, run_real
from testbed.live.shaping import probe
from testbed.sim.fidelity import replay
from testbed.models.pair import tiny_pair
from testbed.profiles import load_profile
from testbed.router.calibration import Calibration
from testbed.traces import read_trace
from testbed.workload.manifest import read_manifest
from tests.conftest import make_scenario
from tests.videos import encode

POLICIES = ["device-native", "edge-hosted", "collaborative", "quickgrasp-fixed16", "nosharing"]


def orphaned_scratch() -> set[Path]:
    """Edge scratch folders (`testbed-edge-<pid>-*`) whose edge process is gone: none may be left behind
    (an edge still running, such as another test worker's, keeps its own)."""
    out = set()
    for path in Path(tempfile.gettempdir()).glob("testbed-edge-*"):
        pid = path.name.removeprefix("testbed-edge-").split("-", 1)[0]
        if not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
            out.add(path)
    return out


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    d = tmp_path_factory.mktemp("livemedia")
    made = [encode(d / f"v{i}.mp4", s, fps=25, size="160x90", gop=g)
            for i, (s, g) in enumerate([(3, 25), (8, 50), (5, 10_000), (4, 25)])]
    lines = [{"query_id": f"q{i}", "benchmark": "ffmpeg", "video": p.name, "question": f"Which clip is {i}?",
              "options": ["a", "b", "c"], "answer": i % 3, "split": "profile" if i == 0 else "test"}
             for i, p in enumerate(made)]
    path = d / "live.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_a_live_run_over_a_shaped_link_writes_the_sims_folder(manifest, tmp_path):
    knobs = "[policies.quickgrasp-fixed16]\ntau_route = 1.0\n[policies.nosharing]\ntau_route = 1.0\n"
    (tmp_path / "live.toml").write_text(
        f'[workload]\nkind = "manifest"\npath = "{manifest}"\n[network]\nup_mbps = 20.0\ndown_mbps = 40.0\n'
        f'rtt_ms = 20.0\n[arrivals]\nclients = 2\n[policies]\nrun = {json.dumps(POLICIES)}\n{knobs}')
    scratch = orphaned_scratch()
    assert main(["live", str(tmp_path / "live.toml"), "--out", str(tmp_path / "res")]) == 0
    assert orphaned_scratch() <= scratch  # the edge cleaned up after itself
    (run,) = (tmp_path / "res" / "live").iterdir()
    q = pd.read_parquet(run / "queries.parquet")
    assert (q["mode"] == "live").all() and set(q.policy) == set(POLICIES) and len(q) == 3 * len(POLICIES)
    assert set(q.client) == {0, 1}  # two clients at once
    versions = json.loads((run / "versions.json").read_text())
    assert versions["shaping"] in ("tbf", "htb", "tbf+netem", "user-space")
    assert versions["self_check"]["rtt_ms_configured"] == 20.0
    offloaded = q[q.served_by == "edge"]
    assert len(offloaded) == 3 * 4 and not q.fallback.any()
    # every offload crossed the link: real bytes, at least RTT/2 each way, the edge's stage times
    assert (offloaded.bytes_up > 0).all() and (offloaded.bytes_down > 0).all()
    assert (offloaded.t_uplink_s >= 0.009).all() and (offloaded.t_downlink_s >= 0.009).all()
    assert all(any(k.startswith("edge.infer.large") for k in dict(s)) for s in offloaded.stage_s)
    # the delay is accounted for: its parts add up to it (one client's query, no concurrency inside it)
    parts = offloaded[["t_local_s", "t_local_queue_s", "t_uplink_s", "t_edge_queue_s", "t_edge_s", "t_downlink_s"]]
    assert ((parts.sum(axis=1) - offloaded.delay_s).abs() < 0.05 + 0.1 * offloaded.delay_s).all()
    sim_dir = tmp_path / "sim"
    assert main(["sim", "default", "--queries", "10", "--out", str(sim_dir)]) == 0
    (srun,) = (sim_dir / "default").iterdir()
    assert list(q.columns) == list(pd.read_parquet(srun / "queries.parquet").columns)
    # (the sim's default scenario also runs quickgrasp, whose decision log, profiling fit and regret
    # plot this live run, without it, does not have)
    bandit_files = {p.name for p in srun.iterdir() if p.name.startswith(("decisions-", "profiling.", "backbone."))}
    assert {p.name for p in srun.iterdir()} - {"paper_comparison.csv", "cumulative_regret.png"} - bandit_files \
        <= {p.name for p in run.iterdir()}


def test_an_edge_killed_in_mid_run_loses_no_query(manifest, tmp_path):
    if probe().available == ["user-space"]:
        pytest.skip("needs namespaces: the edge is a separate process behind the link")
    sc = make_scenario({"workload": {"kind": "manifest", "path": str(manifest)},
                        "live": {"edge_timeout_s": 6.0, "self_check": False},  # a busy CI host answers in < 6 s
                        "policies": {"run": ["edge-hosted"]}})
    wl = read_manifest(manifest)
    done = []
    scratch = orphaned_scratch()
    with live_link(sc, "tiny", "cpu", note=lambda n: None) as (link, info):
        pid = info["edge_pid"]

        def progress(n):
            done.append(n)
            if len(done) == 1:  # after the first answer (the edge's, or on a busy host a fallback), the edge dies
                threading.Thread(target=os.kill, args=(pid, signal.SIGKILL)).start()

        run = run_real(sc, wl, tiny_pair(), "live", link=link, progress=progress, note=lambda n: None)
    q = run.queries
    assert orphaned_scratch() <= scratch  # the killed edge's folder removed
    test_ids = {r.query.query_id for r in wl.split("test")}
    assert set(q.query_id) == test_ids and len(q) == len(test_ids)  # zero lost queries
    # every query the edge did not answer fell back to the device and is counted as such (a query
    # already at the edge when it was killed may still have been answered)
    assert q.fallback.sum() >= 1 and (q.served_by == "edge").sum() + q.fallback.sum() == len(q)
    assert (q[q.fallback].served_by == "local").all()
    # each fallback recorded how long the device waited for the dead edge, and a strict replay of the run
    # (its own stage times, the sim's edge) falls back on the same queries after the same wait
    fell = q[q.fallback]
    waits = [dict(s).get("fallback.wait.1") for s in fell.stage_s]
    assert all(w is not None and w > 0 for w in waits)
    assert all(w == pytest.approx(t) for w, t in zip(waits, fell.t_edge_queue_s))
    record(wl, tiny_pair(), tmp_path / "t.parquet")
    sim = replay(q, sc, Calibration(1.0, 1.0), read_trace(tmp_path / "t.parquet"),
                 load_profile(sc.profile_path()), "strict")
    sim = sim.set_index("query_id").loc[q.query_id]
    assert (sim.fallback.to_numpy() == q.fallback.to_numpy()).all()
    assert (sim.served_by.to_numpy() == q.served_by.to_numpy()).all()
    assert sim.t_edge_queue_s[q.fallback.to_numpy()].to_numpy() == pytest.approx(fell.t_edge_queue_s.to_numpy())
