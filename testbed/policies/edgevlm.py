"""edgeVLM (seed 001) and the stream baselines it is compared with: one generator per camera stream.

Every policy answers every frame. The small model runs on the device on each frame; a frame sent
to the large model (an Offload started with Submit, so the device never waits for it) has its
answer adopted if it is back by the frame's deadline (tau after capture; `Emit(..., better=...)`),
and is otherwise kept, by edgeVLM, as history for later frames:

- `svlm-only`: the small model with its own history.
- `lvlm-only`: every frame to the large model; a late answer is no answer (Fig. 6's ADAS).
- `distributed-vlm`: the large model's encoder on the device, its features up, the rest at the
  edge (Distributed VLM [16]); late answers as LVLM-only.
- `laecips-like`: a difficulty classifier (the small model's uncertainty on the previous frame)
  sends the hardest frames, about `target_lcr` of them (LAECIPS [9]).
- `adas-like`: latency-adaptive: sends frames while recent answers came back within tau, at
  most `target_lcr` of them (ADAS [10]).
- `edgevlm`: upload unless the newest LVLM call (or reply, `freshness`) is at most K_call frames
  old, or K_delay uploads are unanswered (Sec. 3.4); the newest large answer at most delta old
  replaces the small model's history (CRM, Sec. 3.2) and focuses its tokens (VFM, Sec. 3.3).

`<name>-lcr<band>` runs a policy with its knobs' defaults for a Table 2 call-ratio band
(20: 20-30%, 35: 35-45%, 50: 50-60%, 100: every frame, edgeVLM only); `edgevlm-ablation-<row>`
uploads every frame with Table 5's modules (`parallel`, `crm`, `crm-ggvr`, `crm-ggvr-grvr`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Literal

from testbed.config import help_field
from testbed.policies.base import Learned, PolicyContext
from testbed.policies.baselines import media_offload, token_offload
from testbed.policies.effects import (END_OF_STREAM, TIMED_OUT, Compress, Context, EdgeUnavailable, Emit,
                                      FrameAnswer, Future, Inference, Infer, Locate, NextFrame, Offload, Step,
                                      StreamDone, StreamPolicy, Submit, Tokenize, Tokens, WaitAny)
from testbed.query import Frame, Stream
from testbed.streams.labels import labels_of, uncertainty
from testbed.streams.specs import BANDS as TABLE2_BANDS
from testbed.tokenizer.sampling import DEFAULT_SAMPLER

BANDS = {int(lo): (lo + hi) / 200 for lo, hi in TABLE2_BANDS}
"""Table 2's call-ratio bands (their lower bound, %) and the target share the baselines aim at (the middle)."""


@dataclass(frozen=True)
class EdgeVLMKnobs:
    """edgeVLM's keyframe decision and context transfer (seed 001 Sec. 3.2-3.4)."""

    k_call: int = help_field(3, "skip a frame when the newest LVLM call (freshness) is at most this many frames old; "
                                "takes precedence over k_delay (seed 001 Table 1; 3 puts LCR in the 20-30% band)",
                             ge=0)
    k_delay: int = help_field(4, "skip a frame when this many uploaded frames are still unanswered (seed 001: 4)",
                              ge=1)
    delta_s: float = help_field(10.0, "staleness bound: a large-model answer older than this never replaces the "
                                      "history (seed 001 gives no value; assumed 10 s)", gt=0.0)
    freshness: Literal["call", "reply", "spacing"] = help_field(
        "call", "what k_call counts from: the newest frame sent ('call') or the newest answer received ('reply'), "
                "or k_call as the fewest frames between calls ('spacing': 1 never skips); Sec. 3.4 reads each "
                "way, 'call' puts K_call = 3 in Table 2's 20-30% band")
    context: bool = help_field(True, "context replacement (CRM): the newest large answer replaces the small model's "
                                     "history")
    ggvr: bool = help_field(True, "visual focus, GGVR (Eq. 6): the context frame's patches inside the large answer's "
                                  "regions (the largest per category) join the small model's input (needs context)")
    grvr: bool = help_field(True, "visual focus, GRVR (Eq. 7-11): the frame's tokens weighted by their similarity to "
                                  "each category's region on the context frame (needs context)")
    roi_scale: float = help_field(0.3, "side of a region the large model grounds, as a share of the frame's shorter "
                                       "side, for models that give a map rather than boxes (assumed)", gt=0.0, le=1.0)

    def __post_init__(self) -> None:
        if (self.ggvr or self.grvr) and not self.context:
            from testbed.errors import ConfigError

            raise ConfigError("ggvr" if self.ggvr else "grvr", "visual focus needs context = true")


def focus_parts(knobs: Any) -> tuple[str, ...]:
    """The parts of visual focus an edgeVLM's knobs turn on (`Infer.focus`)."""
    return tuple(p for p in ("ggvr", "grvr") if getattr(knobs, p))


@dataclass(frozen=True)
class LaecipsKnobs:
    """A difficulty classifier picks the frames to offload (LAECIPS-like)."""

    target_lcr: float = help_field(0.25, "share of frames to offload: the hardest by the classifier's score",
                                    gt=0.0, le=1.0)


@dataclass(frozen=True)
class AdasKnobs:
    """Latency-adaptive offloading (ADAS-like)."""

    target_lcr: float = help_field(0.25, "most frames to offload, as a share", gt=0.0, le=1.0)
    min_timely: float = help_field(0.2, "offload while the smoothed share of answers back within tau is at least "
                                        "this (assumed)", ge=0.0, le=1.0)
    smoothing: float = help_field(0.3, "weight of the newest answer in that share (exponential smoothing)",
                                   gt=0.0, le=1.0)
    recovery: float = help_field(0.05, "per frame with no answer to learn from, the share drifts this part of the "
                                       "way back to 1, so a policy that stopped offloading probes again (assumed)",
                                 ge=0.0, le=1.0)


ABLATIONS = {"parallel": {"context": False, "ggvr": False, "grvr": False},
             "crm": {"ggvr": False, "grvr": False}, "crm-ggvr": {"grvr": False}, "crm-ggvr-grvr": {}}
"""Seed 001 Table 5's rows: every frame uploaded, the modules added one by one (`edgevlm-ablation-<row>`)."""


def band_knobs(family: str, band: int) -> dict[str, Any]:
    """Knob defaults that put `family` in a Table 2 band on the calibrated workload."""
    if family == "edgevlm":
        return {20: {"k_call": 3}, 35: {"k_call": 2}, 50: {"k_call": 1}, 100: {"k_call": 0, "k_delay": 1000}}[band]
    if family == "adas-like":  # at higher budgets it must also call in worse conditions to spend them
        return {"target_lcr": BANDS[band], "min_timely": {20: 0.2, 35: 0.1, 50: 0.0}[band]}
    return {"target_lcr": BANDS[band]}


# -- shared steps ---------------------------------------------------------------------------------------

def upload(stream: Stream, frame: Frame, density: int, roi_scale: float = 0.0) -> Offload:
    """The frame as an image to the large model, which tokenizes it with its own encoder; with a
    `roi_scale`, it also grounds each category its answer names (a box per category, for focus)."""
    off = media_offload(frame.media, stream.question, stream.categories, density)
    if not roi_scale:
        return off
    locate = Locate(0.0, roi_scale, frame.media.width, frame.media.height, labels=stream.task)
    ground = Infer("large", None, density, stream.question, stream.categories, locate=locate)
    return Offload(off.payloads, (off.steps[0], ground))


def arrived(pending: dict[int, Future]) -> Step:
    """The large-model answers of `pending` uploads that are back by now, {frame index: Inference};
    they leave `pending`. An upload the edge could not serve is dropped."""
    got: dict[int, Inference] = {}
    while pending:
        order = list(pending)
        try:
            r = yield WaitAny(tuple(pending[i] for i in order), 0.0)
        except EdgeUnavailable:
            pending.clear()
            break
        if r is TIMED_OUT:
            break
        k, inf = r
        got[order[k]] = inf
        del pending[order[k]]
    return got


def small_answer(stream: Stream, frame: Frame, ctx: PolicyContext, context: Context | None = None,
                 focus: tuple[str, ...] = ()) -> Step:
    """Tokenize the frame and run the small model; returns (tokens, inference)."""
    tokens = yield Tokenize(frame.media, DEFAULT_SAMPLER, pipelined=False)
    inf = yield Infer("small", tokens, ctx.default_density, stream.question, stream.categories, context, focus)
    return tokens, inf


def _answer(stream: Stream, inf: Inference, context_frame: int = -1) -> FrameAnswer:
    return FrameAnswer(labels_of(stream.task, inf.option_logits), "small", context_frame)


NO_ANSWER = FrameAnswer((), "none")


# -- the policies ---------------------------------------------------------------------------------------

def svlm_only(stream: Stream, ctx: PolicyContext) -> StreamPolicy:
    n = 0
    while (frame := (yield NextFrame(stream.stream_id))) is not END_OF_STREAM:
        _, inf = yield from small_answer(stream, frame, ctx)
        yield Emit(frame.index, _answer(stream, inf))
        n += 1
    return StreamDone(n)


def lvlm_only(stream: Stream, ctx: PolicyContext) -> StreamPolicy:
    n = 0
    while (frame := (yield NextFrame(stream.stream_id))) is not END_OF_STREAM:
        fut = yield Submit(upload(stream, frame, ctx.default_density))
        yield Emit(frame.index, NO_ANSWER, fut, frame.deadline_s)
        n += 1
    return StreamDone(n)


def distributed_vlm(stream: Stream, ctx: PolicyContext) -> StreamPolicy:
    """The large model's encoder on the device; all its tokens of the frame go up compressed."""
    n = 0
    while (frame := (yield NextFrame(stream.stream_id))) is not END_OF_STREAM:
        tokens = yield Tokenize(frame.media, DEFAULT_SAMPLER, pipelined=False, encoder="large")
        payload = yield Compress(tokens, stream.vision_tokens)
        fut = yield Submit(token_offload(payload, stream.vision_tokens, stream.question, stream.categories))
        yield Emit(frame.index, NO_ANSWER, fut, frame.deadline_s)
        n += 1
    return StreamDone(n)


DIFFICULTY: Learned[dict[str, list[float]]] = Learned("laecips-like difficulty")
"""laecips-like: the classifier scores seen so far in the run, sorted, per benchmark."""


def laecips_like(stream: Stream, ctx: PolicyContext) -> StreamPolicy:
    """Offload a frame when the classifier's score (the small model's uncertainty on the frame
    before) is in the top `target_lcr` of the scores seen so far in the run (its threshold is
    their quantile; the run's state carries them from stream to stream). A stream's first frame,
    with no score yet, counts as a median one."""
    target = ctx.knobs.target_lcr
    seen = DIFFICULTY.setdefault(ctx.state, {}).setdefault(stream.benchmark, [])  # kept sorted
    prev, n = None, 0
    while (frame := (yield NextFrame(stream.stream_id))) is not END_OF_STREAM:
        fut = None
        if _rank(seen, prev) >= 1 - target:
            fut = yield Submit(upload(stream, frame, ctx.default_density))
        _, inf = yield from small_answer(stream, frame, ctx)
        prev = uncertainty(stream.task, inf.option_logits)
        bisect.insort(seen, prev)
        yield Emit(frame.index, _answer(stream, inf), fut, frame.deadline_s if fut else None)
        n += 1
    return StreamDone(n)


def _rank(seen: list[float], x: float | None) -> float:
    """Share of the sorted `seen` below `x` (the empirical CDF at x); 0.5 for no score or nothing seen."""
    if x is None or not seen:
        return 0.5
    return bisect.bisect_left(seen, x) / len(seen)


def adas_like(stream: Stream, ctx: PolicyContext) -> StreamPolicy:
    """Offload while the cloud has been answering in time (the smoothed share of answers seen back
    within tau of their frame, at frame granularity, at least `min_timely`), within `target_lcr`
    calls per frame."""
    k = ctx.knobs
    window = max(1, int(round(stream.tau_s * stream.fps)))  # frames within tau
    timely, credit, n = 1.0, 0.0, 0
    pending: dict[int, Future] = {}
    while (frame := (yield NextFrame(stream.stream_id))) is not END_OF_STREAM:
        got = yield from arrived(pending)
        seen = list(got) + [j for j in pending if j < frame.index - window]
        for j in seen:
            back = 1.0 if j in got and frame.index - j <= window else 0.0
            timely = (1 - k.smoothing) * timely + k.smoothing * back
            pending.pop(j, None)
        if not seen:
            timely += k.recovery * (1 - timely)
        credit = min(credit + k.target_lcr, 4.0)  # a budget saved in bad spells is spent in good ones
        fut = None
        if credit >= 1.0 and timely >= k.min_timely:
            fut = yield Submit(upload(stream, frame, ctx.default_density))
            pending[frame.index] = fut
            credit -= 1.0
        _, inf = yield from small_answer(stream, frame, ctx)
        yield Emit(frame.index, _answer(stream, inf), fut, frame.deadline_s if fut else None)
        n += 1
    return StreamDone(n)


def edgevlm(stream: Stream, ctx: PolicyContext) -> StreamPolicy:
    k = ctx.knobs
    focus = focus_parts(k)
    max_lag = int(round(k.delta_s * stream.fps + 1e-9))
    pending: dict[int, Future] = {}
    answers: dict[int, Inference] = {}
    kept: dict[int, Tokens] = {}  # uploaded frames' small-model tokens, for visual focus
    newest, last_call, n = -1, -1, 0
    while (frame := (yield NextFrame(stream.stream_id))) is not END_OF_STREAM:
        got = yield from arrived(pending)
        answers.update(got)
        newest = max([newest, *got])
        context = None
        if k.context and newest >= 0 and frame.index - newest <= max_lag:  # Sec. 3.2: d <= delta
            context = Context(newest, frame.index - newest, answers[newest], kept.get(newest))
        fut = None
        if k.freshness == "spacing":  # Sec. 3.4, read as the fewest frames between calls
            fresh = last_call >= 0 and frame.index - last_call < k.k_call
        else:  # ... or as the newest call's (or reply's) age
            ref = last_call if k.freshness == "call" else newest
            fresh = ref >= 0 and frame.index - ref <= k.k_call
        if not fresh and len(pending) < k.k_delay:  # Sec. 3.4
            fut = yield Submit(upload(stream, frame, ctx.default_density, k.roi_scale if focus else 0.0))
            pending[frame.index] = fut
            last_call = frame.index
        tokens, inf = yield from small_answer(stream, frame, ctx, context, focus if context is not None else ())
        if fut is not None:
            kept[frame.index] = tokens
        for j in [j for j in kept if frame.index - j > max_lag]:  # too old to be history: forget
            kept.pop(j)
            answers.pop(j, None)
        yield Emit(frame.index, _answer(stream, inf, context.frame_index if context else -1), fut,
                   frame.deadline_s if fut else None)
        n += 1
    return StreamDone(n)
