"""QuickGrasp (seed 000): adaptive density, fixed densities, and its ablations.

Local first: keyframe-aligned, pipelined tokenization; the small VLM answers; if its calibrated
confidence is below tau_route, the tokens are merged to a density per frame, compressed and sent
to the edge, where the large LM (sharing the small model's encoder) answers. `quickgrasp_adaptive`
lets the run's density agent choose that density from the query's context and learn from the
edge's answer (SIII-C); `quickgrasp_fixed` always sends one density. NoSharing instead uploads the
video and the edge re-tokenizes it for the native large VLM. Uncalibrated routes on raw
confidences (registered with calibrated=False).
"""
from __future__ import annotations

from collections.abc import Callable

from dataclasses import replace

from testbed.errors import TestbedError
from testbed.policies.base import PolicyContext
from testbed.policies.baselines import edge_answer, large_answer, media_offload, token_offload
from testbed.policies.effects import (Answer, Compress, Describe, Inference, Infer, Policy, Step, Tokenize, Tokens)
from testbed.query import Query
from testbed.tokenizer.sampling import KEYFRAME_SAMPLER


def local_first(q: Query, ctx: PolicyContext) -> Step:
    """Tokenize with the accelerated tokenizer and answer with the small VLM; returns (tokens, inference)."""
    tokens = yield Tokenize(q.media, KEYFRAME_SAMPLER, pipelined=True)
    local = yield Infer("small", tokens, ctx.default_density, q.question, q.options)
    return tokens, local


def offload_tokens(q: Query, ctx: PolicyContext, tokens: Tokens, density: int, local: Answer | None = None) -> Policy:
    """Send tokens merged to `density` to the edge's large LM (shared encoder) and return its answer;
    if the edge does not answer, the local answer (marked as a fallback)."""
    payload = yield Compress(tokens, density)
    out = yield from edge_answer(token_offload(payload, density, q.question, q.options))
    if out is None:
        if local is None:
            inf = yield Infer("small", tokens, ctx.default_density, q.question, q.options)
            local = _local_answer(ctx, inf, ctx.calibration.small_confidence(inf.option_logits))
        return replace(local, fallback=True)
    return large_answer(ctx, out, density)


def _local_answer(ctx: PolicyContext, local: Inference, conf: float) -> Answer:
    return Answer(local.choice, "local", ctx.default_density, conf, score=conf)


def quickgrasp_fixed(density: int) -> Callable[[Query, PolicyContext], Policy]:
    """QuickGrasp's router with a fixed token density for offloaded queries."""

    def policy(q: Query, ctx: PolicyContext) -> Policy:
        tokens, local = yield from local_first(q, ctx)
        conf = ctx.calibration.small_confidence(local.option_logits)
        if conf >= ctx.tau_route:
            return _local_answer(ctx, local, conf)
        out = yield from offload_tokens(q, ctx, tokens, density, _local_answer(ctx, local, conf))
        return replace(out, score=conf)

    return policy


def quickgrasp_adaptive(q: Query, ctx: PolicyContext) -> Policy:
    """QuickGrasp proper (seed 000 SIII-C): route as quickgrasp_fixed; for an escalated query, the
    run's density agent picks the density from the context (frames, the small model's calibrated
    uncertainty, the Describe inputs), and learns from the large model's proxy reward (Eq. 12). If
    the edge does not answer, the device's answer stands (a fallback) and there is nothing to learn."""
    bandit = ctx.state.bandit
    if bandit is None:
        raise TestbedError("an adaptive-density policy needs its density agent in the run state (RunState.bandit)")
    tokens, local = yield from local_first(q, ctx)
    conf = ctx.calibration.small_confidence(local.option_logits)
    if conf >= ctx.tau_route:
        return _local_answer(ctx, local, conf)
    inputs = yield Describe(tokens, ctx.default_density, q.question)
    context = bandit.context(tokens.frames, local.option_logits, inputs)
    decision = bandit.choose(context, tokens.frames)
    payload = yield Compress(tokens, decision.action)
    out = yield from edge_answer(token_offload(payload, decision.action, q.question, q.options))
    if out is None:
        return replace(_local_answer(ctx, local, conf), fallback=True)
    bandit.learn(q.query_id, context, tokens.frames, decision, out.option_logits)
    return replace(large_answer(ctx, out, decision.action), score=conf)


def nosharing(q: Query, ctx: PolicyContext) -> Policy:
    """Ablation: no shared encoder; escalation uploads the video and the edge tokenizes again."""
    tokens, local = yield from local_first(q, ctx)
    conf = ctx.calibration.small_confidence(local.option_logits)
    if conf >= ctx.tau_route:
        return _local_answer(ctx, local, conf)
    out = yield from edge_answer(media_offload(q.media, q.question, q.options, ctx.default_density,
                                               KEYFRAME_SAMPLER, pipelined=True))
    if out is None:
        return replace(_local_answer(ctx, local, conf), fallback=True)
    return replace(large_answer(ctx, out, ctx.default_density), score=conf)
