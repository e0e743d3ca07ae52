"""Seed 003 (Song & Kim): entropy-triggered crop retransmission, and its baselines, on image QA.

`entropy-crop`: the device sends the global view (the image resized to the encoder's input, JPEG);
the edge's large VLM answers and, when the answer's min-entropy H_min = -log max_i p_i is above the
threshold, names a region of interest from ViCrop's relative attention (`Locate`); the device crops
that box from the original image at full detail and sends it; the edge answers from the global and
the local view together (the global view is still at the edge: it is not sent again). Two round
trips for uncertain queries, one for the rest; both show in the delay breakdown.

Baselines: `global-only` (never retransmits), `full-res` (always the original image, which the edge
tiles as LLaVA-1.5-HD does), `random-crop` (retransmits the share of queries `entropy-crop` would,
at its knobs on the profiling split, chosen at random, with a box of the same size at a random
place; its draws depend on the run's seed and the query only).

The threshold is data: `h_min_threshold`, or one picked on the profiling split for a target share
retransmitted or a target accuracy (`plan_crop`, RouteLLM's recipe with the global answer's max
probability exp(-H_min) as the score). If the edge does not answer the first round the device
answers (a fallback); if it does not answer the second, the global answer stands (a fallback).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from collections.abc import Sequence
from typing import Any

import numpy as np

from testbed.config import help_field
from testbed.crop import (GLOBAL_SIDE, CropError, clip_box, crop_side, max_probability, min_entropy, random_box,
                          unit_draw)
from testbed.errors import ConfigError, TestbedError
from testbed.artifacts import ArtifactRows
from testbed.policies.base import Learned, PolicyContext, RunState
from testbed.policies.baselines import device_native, edge_answer
from testbed.policies.effects import Answer, Crop, Inference, Infer, Locate, Offload, Payload, Policy, Step, Tokenize
from testbed.query import ImageMeta, Query, QueryRecord
from testbed.tokenizer.sampling import DEFAULT_SAMPLER


@dataclass(frozen=True)
class CropKnobs:
    """Knobs of seed 003's retransmission: the min-entropy threshold or a target it is picked for on
    the profiling split, the crop's size and the global view's."""

    h_min_threshold: float = help_field(0.5, "retransmit a crop when the global answer's min-entropy (nats, -log of "
                                             "its top probability) is above this; unused with a target",
                                             ge=0.0, le=20.0)
    target_retransmit_share: float = help_field(0.0, "pick the threshold on the profiling split so that this share "
                                                     "of queries is retransmitted (0: use h_min_threshold)",
                                                     ge=0.0, le=1.0)
    target_accuracy: float = help_field(0.0, "pick the threshold on the profiling split as the one retransmitting "
                                             "the fewest queries whose accuracy is at least this (a fraction; 0: "
                                             "use h_min_threshold)", ge=0.0, le=1.0)
    crop_scale: float = help_field(0.4, "the crop box's side as a fraction of the image's shorter side (assumed; "
                                        "ViCrop crops a fixed-size window around the attention)", gt=0.0, le=1.0)
    global_side: int = help_field(GLOBAL_SIDE, "the global view's longer side in pixels (LLaVA-1.5's encoder "
                                               "input, 336)", ge=8, le=4096)
    view_tokens: int = help_field(0, "vision tokens per view the edge's LM reads (0: models.default_density; "
                                     "LLaVA-1.5: 576); a real encoder's tokens are merged down to it, never up",
                                  ge=0, le=4096)

    def __post_init__(self) -> None:
        if self.target_retransmit_share > 0 and self.target_accuracy > 0:
            raise ConfigError("target_accuracy", "give target_retransmit_share or target_accuracy, not both")


@dataclass(frozen=True)
class CropPlan:
    """What the profiling split fixed for a run: retransmit when the global answer's top probability
    is below `tau` (H_min above -log tau), which retransmitted `share` of the profiling queries at
    `accuracy`; `target` says how tau was chosen; `seed` drives random-crop's draws."""

    tau: float
    share: float
    accuracy: float
    target: str
    seed: int
    n: int

    @property
    def h_min_above(self) -> float:
        return -math.log(self.tau) if self.tau > 0 else math.inf


def plan_crop(knobs: CropKnobs, records: Sequence[QueryRecord], seed: int) -> CropPlan:
    """The run's threshold from labelled profiling records with crop outcomes (`QueryRecord.views`):
    the knobs' fixed threshold, or the one meeting their target (testbed.router.threshold)."""
    from testbed.router.threshold import pick_threshold, routed, tau_for_share

    have = [r for r in records if r.views is not None]
    fixed = math.exp(-knobs.h_min_threshold)
    if not have:
        if knobs.target_retransmit_share > 0 or knobs.target_accuracy > 0:
            raise TestbedError("a crop threshold target is picked on the profiling split's crop outcomes, which "
                               "this workload lacks (give some queries split = 'profile', or set h_min_threshold)")
        return CropPlan(fixed, float("nan"), float("nan"), "fixed", seed, 0)
    scores = np.array([max_probability(r.views.global_logits) for r in have])  # type: ignore[union-attr]
    ok_global = np.array([int(np.argmax(r.views.global_logits)) == r.answer for r in have])  # type: ignore[union-attr]
    ok_crop = np.array([int(np.argmax(r.views.crop_logits)) == r.answer for r in have])  # type: ignore[union-attr]
    if knobs.target_retransmit_share > 0:
        tau, target = tau_for_share(scores, 1 - knobs.target_retransmit_share), "retransmit_share"
    elif knobs.target_accuracy > 0:
        tau, target = pick_threshold(scores, ok_global, ok_crop, target_accuracy=knobs.target_accuracy).tau, "accuracy"
    else:
        tau, target = fixed, "fixed"
    kept, acc = routed(scores, ok_global, ok_crop, tau)
    return CropPlan(tau, 1 - kept, acc, target, seed, len(have))


def _image(q: Query, policy: str) -> ImageMeta:
    if not isinstance(q.media, ImageMeta):
        raise TestbedError(f"{policy} answers image queries; query {q.query_id} is a video")
    return q.media


CROP_PLAN: Learned[CropPlan] = Learned("crop plan")
"""The crop policies' plan, made on the profiling split by their router's warm-up (MIN_ENTROPY)."""


def _crop_plan_row(policy: str, state: RunState, _queries: Any) -> dict[str, Any] | None:
    """A crop policy's plan: how its min-entropy threshold was chosen, the threshold, and the share
    retransmitted and the accuracy it gave on the profiling split."""
    c = CROP_PLAN.get(state)
    if c is None:
        return None
    return {"policy": policy, "target": c.target, "h_min_threshold": c.h_min_above, "profile_queries": c.n,
            "profile_retransmit_share": c.share, "profile_accuracy": c.accuracy}


CROP_PLANS = ArtifactRows("crop_plans", _crop_plan_row)


def _plan(ctx: PolicyContext, policy: str) -> CropPlan:
    plan = CROP_PLAN.get(ctx.state)
    if plan is None:
        raise TestbedError(f"{policy} needs its crop plan in the run state (CROP_PLAN), made on the profiling split")
    return plan


def _tokens(ctx: PolicyContext) -> int:
    return ctx.knobs.view_tokens or ctx.default_density


def view_steps(views: Sequence[Payload], q: Query, tokens: int, locate: Locate | None = None) -> tuple:
    """An Offload's steps for image views: tokenize each with the large model's encoder, then one
    Infer over them together at `tokens` per view."""
    tokenize = (Tokenize(v.media, DEFAULT_SAMPLER, pipelined=False, encoder="large")  # type: ignore[arg-type]
                for v in views)
    return (*tokenize, Infer("large", None, tokens, q.question, q.options, locate=locate))


def _steps(views: Sequence[Payload], q: Query, ctx: PolicyContext, locate: Locate | None = None) -> tuple:
    return view_steps(views, q, _tokens(ctx), locate)


def _answer(ctx: PolicyContext, out: Inference, score: float, fallback: bool = False) -> Answer:
    return Answer(out.choice, "edge", _tokens(ctx), ctx.calibration.large_confidence(out.option_logits),
                  fallback, score)


def _round_one(q: Query, ctx: PolicyContext, media: ImageMeta, locate: Locate | None) -> Step:
    """Send the global view; (its payload, the edge's Inference), or (payload, None) if the edge is down."""
    g = yield Crop(media, "global", side=ctx.knobs.global_side)
    out = yield from edge_answer(Offload((g,), _steps((g,), q, ctx, locate)))
    return g, out


def _round_two(q: Query, ctx: PolicyContext, media: ImageMeta, g: Payload, first: Inference,
               box: tuple[int, int, int, int]) -> Policy:
    """Send the crop of `box`; the edge answers from the global view (held there) and the crop."""
    score = max_probability(first.option_logits)
    c = yield Crop(media, "crop", box)
    views = (replace(g, held=True), c)
    out = yield from edge_answer(Offload(views, _steps(views, q, ctx)))
    return _answer(ctx, first, score, fallback=True) if out is None else _answer(ctx, out, score)


def entropy_crop(q: Query, ctx: PolicyContext) -> Policy:
    media, plan = _image(q, "entropy-crop"), _plan(ctx, "entropy-crop")
    locate = Locate(plan.h_min_above, ctx.knobs.crop_scale, media.width, media.height)
    g, first = yield from _round_one(q, ctx, media, locate)
    if first is None:
        return (yield from device_native(q, ctx, fallback=True))
    if min_entropy(first.option_logits) <= plan.h_min_above or first.roi is None:
        return _answer(ctx, first, max_probability(first.option_logits))
    try:  # the edge clips its boxes; one from a faulty edge is clipped here, or the global answer stands
        box = clip_box(first.roi, media.width, media.height)
    except CropError:
        return _answer(ctx, first, max_probability(first.option_logits), fallback=True)
    return (yield from _round_two(q, ctx, media, g, first, box))


def random_crop(q: Query, ctx: PolicyContext) -> Policy:
    media, plan = _image(q, "random-crop"), _plan(ctx, "random-crop")
    if not plan.share >= 0:
        raise TestbedError("random-crop retransmits the share entropy-crop does on the profiling split, which this "
                           "workload lacks (give some queries split = 'profile')")
    g, first = yield from _round_one(q, ctx, media, None)
    if first is None:
        return (yield from device_native(q, ctx, fallback=True))
    if not unit_draw(plan.seed, q.query_id, 0) < plan.share:
        return _answer(ctx, first, max_probability(first.option_logits))
    box = random_box(plan.seed, q.query_id, media.width, media.height,
                     crop_side(media.width, media.height, ctx.knobs.crop_scale))
    return (yield from _round_two(q, ctx, media, g, first, box))


def global_only(q: Query, ctx: PolicyContext) -> Policy:
    media = _image(q, "global-only")
    _, out = yield from _round_one(q, ctx, media, None)
    if out is None:
        return (yield from device_native(q, ctx, fallback=True))
    return _answer(ctx, out, max_probability(out.option_logits))


def full_res(q: Query, ctx: PolicyContext) -> Policy:
    media = _image(q, "full-res")
    p = yield Crop(media, "full")
    out = yield from edge_answer(Offload((p,), _steps((p,), q, ctx)))
    if out is None:
        return (yield from device_native(q, ctx, fallback=True))
    return _answer(ctx, out, max_probability(out.option_logits))
