"""INAR-VL (seed 002): input-aware routing before any inference.

The device looks at the input (`Inspect`: image complexity from its pixels; for a video, from up to
eight of its keyframe-aligned frames) and reads the question (length, option count, type); the
run's router, a logistic regression trained on the profiling split, turns these into P(the small
model answers correctly). At or above the threshold (`tau_route`, or one picked for a target share
or accuracy) the device tokenizes and its small VLM answers; below it, the media file goes to the
edge, whose large VLM tokenizes it and answers (seed 002's cloud tier, as EdgeHosted). If the edge
does not answer, the device answers (a fallback). Terms: INAR-VL's "edge" is this testbed's
device (`local`), its "cloud" this testbed's `edge`.
"""

from __future__ import annotations

from dataclasses import replace

from testbed.errors import TestbedError
from testbed.policies.base import PolicyContext
from testbed.policies.baselines import edge_answer, large_answer, media_offload
from testbed.policies.routers import INPUT_AWARE_ROUTER
from testbed.policies.effects import Answer, Infer, Inspect, Policy, Tokenize
from testbed.query import Query
from testbed.router.signals import feature_vector
from testbed.tokenizer.sampling import KEYFRAME_SAMPLER


def input_aware(q: Query, ctx: PolicyContext) -> Policy:
    router = INPUT_AWARE_ROUTER.get(ctx.state)
    if router is None:
        raise TestbedError("input-aware needs its router in the run state (INPUT_AWARE_ROUTER), trained on the "
                           "profiling split")
    signals = yield Inspect(q.media, KEYFRAME_SAMPLER)
    score = router.score(feature_vector(signals, q.question, q.options))
    if score >= ctx.tau_route:
        local = yield from _on_device(q, ctx)
        return replace(local, score=score)
    out = yield from edge_answer(media_offload(q.media, q.question, q.options, ctx.default_density))
    if out is None:
        local = yield from _on_device(q, ctx)
        return replace(local, score=score, fallback=True)
    return replace(large_answer(ctx, out, ctx.default_density), score=score)


def _on_device(q: Query, ctx: PolicyContext) -> Policy:
    tokens = yield Tokenize(q.media, KEYFRAME_SAMPLER, pipelined=True)
    out = yield Infer("small", tokens, ctx.default_density, q.question, q.options)
    return Answer(out.choice, "local", ctx.default_density, ctx.calibration.small_confidence(out.option_logits))
