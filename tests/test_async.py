"""Submit/Wait in the sim: a policy that hedges on the edge and falls back to the device on timeout."""

import pandas as pd
import pytest

from sim import costs
from sim.engine import load_workload, simulate_policy
from testbed.router.calibration import fit_calibration
from testbed.codec.size import REPLY_BYTES
from testbed.policies.base import PolicyContext, PolicySpec
from testbed.policies.effects import TIMED_OUT, Answer, Infer, Offload, Payload, Submit, Tokenize, Wait
from testbed.profiles import load_profile
from testbed.tokenizer.sampling import DEFAULT_SAMPLER, KEYFRAME_SAMPLER

TIMEOUT_S = 1.0


def hedged(q, ctx):
    """Start an EdgeHosted request, tokenize locally meanwhile, and answer locally if the edge is late."""
    job = yield Submit(Offload((Payload("video", q.video.file_bytes),),
                               (Tokenize(q.video, DEFAULT_SAMPLER, False, where="edge"),
                                Infer("large", None, 16, 10, where="edge")), REPLY_BYTES))
    tokens = yield Tokenize(q.video, KEYFRAME_SAMPLER, pipelined=True)
    got = yield Wait(job, TIMEOUT_S)
    if got is TIMED_OUT:
        local = yield Infer("small", tokens, 16, 10)
        return Answer(local.choice, "local")
    return Answer(got.choice, "edge")


@pytest.mark.parametrize("up_mbps,served", [(0.1, "local"), (1e6, "edge")])
def test_wait_times_out_and_falls_back(scenario_factory, up_mbps, served):
    sc = scenario_factory({"workload": {"benchmarks": ["mvbench"], "queries_per_benchmark": 20},
                           "network": {"up_mbps": up_mbps, "down_mbps": 1e6, "rtt_ms": 0.0}})
    profile = load_profile(sc.profile_path())
    wl = load_workload(sc)
    ctx = PolicyContext(fit_calibration(wl.split("profile")))
    rows, _ = simulate_policy(sc, profile, PolicySpec("hedged", hedged), ctx, wl.split("test"))
    q = pd.DataFrame(rows)
    assert (q.served_by == served).all()
    if served == "local":
        by_id = {r.query.query_id: r for r in wl.records}
        for row in q.itertuples():
            v = by_id[row.query_id].query.video
            tok = costs.tokenize_cost(profile.local, v, KEYFRAME_SAMPLER, True, sc.nodes.chunk_frames)
            # the Wait starts after local tokenization and gives up TIMEOUT_S later
            expected = tok.total_s + TIMEOUT_S + costs.infer_cost(profile.local, tok.frames, 16, 10)
            assert row.delay_s == pytest.approx(expected)
