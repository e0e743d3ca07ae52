"""The profiler measures the way live queries run: in a worker thread with the process's torch thread
count, encoder chunks as the tokenizer feeds them, one forward pass per Infer; a robust fit over size."""

import threading
import time

import pytest
import torch

from testbed.live.profile import LiveThread, _curve, measure
from testbed.live.real import RealNode
from testbed.models.pair import VLMPair, tiny_pair
from tests.videos import encode


def test_a_spike_at_one_size_is_pooled_with_its_neighbours_not_carried_forward():
    # hand-worked pool-adjacent-violators: 0.128 at 16 frames and 0.010 at 64 pool to their mean
    c = _curve([(4.0, 0.0004), (16.0, 0.128), (64.0, 0.010)])
    assert c.size == (0.0, 4.0, 16.0, 64.0)
    assert c.seconds == pytest.approx((0.0, 0.0004, 0.069, 0.069))
    # already increasing: unchanged
    assert _curve([(1.0, 0.1), (2.0, 0.3)]).seconds == pytest.approx((0.0, 0.1, 0.3))


def test_live_queries_run_their_model_work_in_worker_threads():
    """What the profiler copies: a real node runs a query's work in the thread that asked (a client's
    worker thread in run_policy), never the main thread."""
    node = RealNode(VLMPair({}, {}, "none"))  # holding a GPU server needs no model
    seen = []
    try:
        t = threading.Thread(target=lambda: node.hold(lambda: seen.append(threading.current_thread())))
        t.start()
        t.join()
    finally:
        node.close()
    assert seen and seen[0] is not threading.main_thread()


def test_the_profiler_measures_in_a_worker_thread_with_the_process_torch_threads(tmp_path, monkeypatch):
    import testbed.live.profile

    # the settings are what is checked, not the times: the smallest sizes will do
    monkeypatch.setattr(testbed.live.profile, "SIZES", {"decode": (8, 16), "encode": (4, 8), "prefill": (4, 8),
                                                "merge": (16, 32)})
    video = encode(tmp_path / "p.mp4", 2, fps=10, size="64x36", gop=10)
    runner = LiveThread()
    pair = tiny_pair()
    try:
        prof = measure("local", pair, video, repeats=1, runner=runner, clock=time.perf_counter)
        edge = measure("edge", pair, video, repeats=1, runner=runner, clock=time.perf_counter)
    finally:
        runner.close()
    assert runner.seen == {(False, torch.get_num_threads())}  # every timing: not the main thread, same threads
    assert prof.stages["generate"](1) == 0.0  # live runs one forward pass: no generate step is charged
    for name, curve in {**prof.stages, **edge.stages}.items():
        assert all(b >= a for a, b in zip(curve.seconds, curve.seconds[1:])), name
    # the edge also takes requests in and hands replies back: both measured, both a fixed cost at least
    assert set(edge.stages) - set(prof.stages) == {"request", "reply"}
    assert set(prof.stages) - set(edge.stages) == {"large_preprocess", "large_encode"}
    # the device also runs the large model's encoder (Collaborative): measured when the pair's encoders differ
    assert pair.encoders["large"] is not pair.encoders["small"]
    assert {"large_preprocess", "large_encode"} <= set(prof.stages)
    assert prof.with_encoder("large").stages["encode"] == prof.stages["large_encode"]
    assert prof.with_encoder("small") is prof and edge.with_encoder("large") is edge  # nothing else to swap
    assert edge.optional("request", 1.0) > 0 and edge.optional("reply", 1.0) > 0
    assert prof.optional("request", 1e6) == 0.0  # the device's profile has none: nothing charged


def test_a_fixed_cost_stays_fixed_below_the_smallest_size():
    from testbed.live.profile import _flat

    c = _flat([(100.0, 0.002), (300.0, 0.001), (900.0, 0.004)])  # hand-worked: 0.002 and 0.001 pool to 0.0015
    assert c.size == (0.0, 100.0, 300.0, 900.0)
    assert c.seconds == pytest.approx((0.0015, 0.0015, 0.0015, 0.004))
    assert c(10.0) == pytest.approx(0.0015) and c(600.0) == pytest.approx(0.00275)
    one = _flat([(256.0, 0.0003)])
    assert one(1.0) == one(256.0) == one(1e6) == pytest.approx(0.0003)
