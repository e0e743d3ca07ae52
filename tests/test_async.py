"""Submit/Wait in the sim: a policy that hedges on the edge and falls back to the device on timeout,
and a future the policy never waits for, whose work still counts to its query's row."""

import pandas as pd
import pytest

from testbed.sim import costs
from testbed.sim.engine import load_workload, simulate_policy
from testbed.codec.size import REPLY_BYTES, TokenFormat, text_bytes, text_tokens, wire_token_bytes
from testbed.policies.base import PolicyContext, PolicySpec, RunState
from testbed.policies.effects import (TIMED_OUT, Answer, Decompress, Infer, Offload, Payload, Submit,
                                      Tokenize, Wait, WaitAny)
from testbed.profiles import load_profile
from testbed.router.calibration import fit_calibration
from tests.policies import fire_and_forget
from testbed.tokenizer.sampling import DEFAULT_SAMPLER, KEYFRAME_SAMPLER

TIMEOUT_S = 1.0


def hedged(q, ctx):
    """Start an EdgeHosted request, tokenize locally meanwhile, and answer locally if the edge is late."""
    job = yield Submit(Offload((Payload.of_media(q.media),),
                               (Tokenize(q.media, DEFAULT_SAMPLER, False, encoder="large"),
                                Infer("large", None, 16, q.question, q.options))))
    tokens = yield Tokenize(q.media, KEYFRAME_SAMPLER, pipelined=True)
    got = yield Wait(job, TIMEOUT_S)
    if got is TIMED_OUT:
        local = yield Infer("small", tokens, 16, q.question, q.options)
        return Answer(local.choice, "local")
    return Answer(got.choice, "edge")


def _run(sc, policy, name="p"):
    profile = load_profile(sc.profile_path())
    wl = load_workload(sc)
    ctx = PolicyContext(state=RunState(fit_calibration(wl.split("profile"))))
    rows, totals = simulate_policy(sc, profile, PolicySpec(name, policy), ctx, wl.split("test"))
    return pd.DataFrame(rows), totals, profile, wl


@pytest.mark.parametrize("up_mbps,served", [(0.1, "local"), (1e6, "edge")])
def test_wait_times_out_and_falls_back(scenario_factory, up_mbps, served):
    sc = scenario_factory({"workload": {"benchmarks": ["mvbench"], "queries_per_benchmark": 20},
                           "network": {"up_mbps": up_mbps, "down_mbps": 1e6, "rtt_ms": 0.0}})
    q, _, profile, wl = _run(sc, hedged, "hedged")
    assert (q.served_by == served).all()
    if served == "local":
        by_id = {r.query.query_id: r for r in wl.records}
        for row in q.itertuples():
            rq = by_id[row.query_id].query
            tok = costs.tokenize_cost(profile.local, rq.media, KEYFRAME_SAMPLER, True, sc.nodes.chunk_frames)
            # the Wait starts after local tokenization and gives up TIMEOUT_S later
            expected = tok.total_s + TIMEOUT_S + costs.infer_cost(profile.local, tok.frames, 16,
                                                                  text_tokens(rq.question, rq.options))
            assert row.delay_s == pytest.approx(expected)



def test_a_future_never_waited_for_counts_to_its_query(scenario_factory):
    sc = scenario_factory({"workload": {"benchmarks": ["mvbench"], "queries_per_benchmark": 20},
                           "network": {"up_mbps": 2.0, "rtt_ms": 20.0}})
    q, totals, profile, wl = _run(sc, fire_and_forget)
    by_id = {r.query.query_id: r.query for r in wl.records}
    fmt = TokenFormat(sc.models.token_dim, sc.models.dtype, sc.models.compression_ratio)
    for row in q.itertuples():
        rq = by_id[row.query_id]
        # bytes: the compressed tokens and the prompt up, one reply down, though nobody waited
        assert row.bytes_up == wire_token_bytes(row.frames, 8, fmt) + text_bytes(rq.question, rq.options)
        assert row.bytes_down == REPLY_BYTES
        assert row.t_edge_s > 0 and row.t_uplink_s > 0
        assert "edge.infer.large.shared.keyframe.a8" in row.stage_s
    # row totals equal run totals: the edge GPU's busy time and the links' bytes are all in rows
    edge_gpu = sum(s["edge.infer.large.shared.keyframe.a8"] for s in q.stage_s)
    assert edge_gpu == pytest.approx(totals["edge_gpu_busy_s"])
    assert q.bytes_up.sum() == totals["bytes_up"] and q.bytes_down.sum() == totals["bytes_down"]
    # and the answer did not wait for the edge: delay is the local path alone
    assert q.delay_s.to_numpy() == pytest.approx(q.t_local_s.to_numpy())


def racing(q, ctx):
    """Ask the edge (a 100 kB upload, then the large LM) and tokenize locally at once; take whichever
    finishes first."""
    payload = Payload("tokens", 100_000, 400_000, 4, 16)
    edge = yield Submit(Offload((payload,), (Decompress(payload), Infer("large", None, 16, q.question, q.options))))
    local = yield Submit(Tokenize(q.media, KEYFRAME_SAMPLER, pipelined=True))
    first = yield WaitAny((edge, local), None)
    return Answer(0, "edge" if first[0] == 0 else "local")


@pytest.mark.parametrize("up_mbps,served", [(0.05, "local"), (1e6, "edge")])
def test_wait_any_returns_the_first_future(scenario_factory, up_mbps, served):
    sc = scenario_factory({"workload": {"benchmarks": ["mvbench"], "queries_per_benchmark": 20},
                           "network": {"up_mbps": up_mbps, "down_mbps": 1e6, "rtt_ms": 0.0},
                           "nodes": {"edge_gpus": 4}})
    q, _, _, _ = _run(sc, racing)
    assert (q.served_by == served).all()
