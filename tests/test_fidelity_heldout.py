"""The held-out replay's stage-time predictions and the fidelity verdicts, on hand-worked rows."""

import numpy as np
import pandas as pd
import pytest

from testbed.sim.fidelity import fit_line, heldout_stages, stage_size, verdicts


def test_stage_sizes_follow_what_each_stage_grows_with():
    assert stage_size("local.tokenize.keyframe.pipelined", 12, 40) == 40  # decoded frames
    assert stage_size("edge.infer.large.shared.keyframe.a8", 12, 40) == 96  # frames x density
    assert stage_size("local.describe.keyframe", 12, 40) == 12


def test_each_half_is_predicted_by_a_line_through_the_other():
    key = "local.infer.small.keyframe.a16"
    frames = [1, 2, 3, 4, 5, 6]
    times = [0.1 + 0.01 * 16 * f for f in frames]  # exactly linear in frames x 16
    live = pd.DataFrame({"policy": "p", "query_id": [f"q{i}" for i in range(6)], "frames": frames,
                         "decoded_frames": frames, "stage_s": [[(key, t), ("const", 0.5 + i % 2)]
                                                                for i, t in enumerate(times)]})
    pred = heldout_stages(live)
    assert [p[key] for p in pred] == pytest.approx(times)  # a line through the other half's points
    # a stage time that does not grow is predicted flat at the other half's level: 1.5 for even rows, 0.5 for odd
    assert [p["const"] for p in pred] == pytest.approx([1.5, 0.5, 1.5, 0.5, 1.5, 0.5])


def test_a_falling_fit_falls_back_to_the_median():
    assert fit_line(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == (2.0, 0.0)
    assert fit_line(np.array([2.0, 2.0]), np.array([1.0, 3.0])) == (2.0, 0.0)


def test_verdicts_count_the_policies_within_the_bounds():
    rows = []
    for policy, err_mean, err_p99 in (("a", 0.05, 0.1), ("b", 0.3, 0.1), ("c", -0.08, 0.25)):
        for metric, err in (("mean", err_mean), ("p99", err_p99), ("p50", 0.0)):
            rows.append({"policy": policy, "stage": "total", "replay": "heldout", "metric": metric, "live_s": 1.0,
                         "sim_s": 1.0 + err, "error": err})
    v = verdicts(pd.DataFrame(rows))
    assert v == ["heldout: 1 of 3 policies have the whole delay mean within 10% and p99 within 20%; missed: "
                 "b (+30%), c (-8%)"]


def test_a_replayed_policy_reads_the_trace_from_its_recorded_offset(tmp_path):
    """Hand-worked two-policy replay: a trace of one 1504-byte opportunity a millisecond (12 Mbit/s) for
    2 s, then one per 10 ms. The live run set the link up at monotonic 100 s and started its policies at
    100 s and 102 s; 200 segments sent at each policy's start take 0.2 s and 2.0 s of trace."""
    import json

    from testbed.sim.fidelity import trace_offsets
    from testbed.bandwidth import MahimahiLink
    from testbed.direction import Direction

    (tmp_path / "totals.csv").write_text("policy,started_monotonic_s\nedge-hosted,100.0\nnosharing,102.0\n")
    versions = json.loads('{"trace_origin_monotonic_s": 100.0}')
    offsets = trace_offsets(tmp_path, versions)
    assert offsets == {"edge-hosted": 0.0, "nosharing": 2.0}
    assert trace_offsets(tmp_path, {}) == {}  # no traces in the run: every policy from 0
    trace = MahimahiLink(np.array(list(range(1, 2001)) + list(range(2010, 10_001, 10)), dtype=np.int64))
    for policy, seconds in (("edge-hosted", 0.2), ("nosharing", 2.0)):
        d = Direction(12.0, 0.0, 1.0, 1500, 0.0, np.random.default_rng(0), trace, trace_offset_s=offsets[policy])
        assert d.send_s(0.0, 0.0, 200 * 1448) == pytest.approx(seconds, abs=0.011)
