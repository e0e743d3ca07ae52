"""The effect vocabulary: what a policy may ask an interpreter to do, and what it gets back.

A policy is a generator: it yields an effect, an interpreter performs it (in SimPy time, or for
real) and sends the result back, or throws a `PolicyInterrupt` in (the edge is unreachable).
Policies never sleep, read clocks, touch sockets or do size arithmetic: effects name real things
(the media file, the question, a handle to real tokens or bytes that the sim leaves empty) and
interpreters work out what they cost.

Adding an effect means: a frozen dataclass here, a handler name in `HANDLERS`, where it may run
in `placement.ALLOWED`, and a method in every interpreter (`Interpreter` in driver.py makes a
missing one an error at start-up). Where later work goes: image queries are `ImageMeta` media;
a region of interest found by attention travels in `Inference.roi`.

Streams (seed 001): a stream policy is one generator per camera stream. `NextFrame` waits for the
next frame's capture and returns it (`END_OF_STREAM` after the last); `Emit` records that frame's
answer at the current time, optionally to be replaced by a large-model answer that arrives by the
frame's deadline; an `Infer` may carry a `Context` (an earlier frame's large-model answer as the
small model's history) and ask for visual focus on it. A stream policy returns `StreamDone`.

Crop retransmission (seed 003): `Crop` makes a JPEG view of the query's image on the device (the
global view, a crop of a box at full detail, or the original for tiling); an `Infer` with `locate`
also names a region of interest (`Inference.roi`, ViCrop's relative attention) when its answer's
min-entropy is above a threshold; a `Payload` marked `held` is already at the edge (the global view
of an earlier round of the same query) and costs no bytes; Tokenize steps that follow each other in
an Offload give the next Infer their views together (`Tokens.views`, in order).

Input-aware routing (seed 002): `Inspect` looks at the media on the device before any model runs
and returns its image-complexity signals (`InputSignals`); the sim reads them from the trace's
signal_* columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from collections.abc import Generator

import numpy as np

from testbed.crop import GLOBAL_SIDE
from testbed.errors import TestbedError
from testbed.query import ContextInputs, Frame, ImageMeta, InputSignals, Media, Stream, VideoMeta
from testbed.tokenizer.sampling import Sampler

Where = Literal["local", "edge"]
ModelName = Literal["small", "large"]


@dataclass(frozen=True, slots=True)
class Tokens:
    """Vision tokens of `frames` sampled frames (`decoded` physically decoded), made by `encoder`'s
    vision encoder on `where`; `per_frame` is the density they were merged to, 0 for the
    encoder's own output; `sampler` is the kind of sampler that chose the frames ("image" for an
    image). `data` holds the real (frames, tokens, dim) tensor; the sim leaves it None."""

    frames: int
    decoded: int
    per_frame: int
    where: Where
    encoder: ModelName = "small"
    sampler: str = ""
    data: Any = field(default=None, compare=False, repr=False)
    views: tuple[str, ...] = ()
    """Seed 003: the image views these tokens come from, in order ("global", "crop", "full"; the sim
    may say "crop-random" for a crop that is not the trace's attention box); () for anything else."""


@dataclass(frozen=True, slots=True)
class Payload:
    """Bytes that cross the link: a media file (`kind` video or image) or compressed tokens.

    `nbytes` is what travels; for tokens `raw_bytes` is their size before compression, and
    `frames`, `density`, `encoder` and `sampler` describe them. `data` holds the real bytes (None in
    the sim). A `held` payload is already at the edge (sent by an earlier Offload of the same query,
    seed 003's global view): it names the data but no bytes travel."""

    kind: Literal["video", "image", "tokens"]
    nbytes: int
    raw_bytes: int = 0
    frames: int = 0
    density: int = 0
    encoder: ModelName = "small"
    sampler: str = ""
    media: Media | None = None
    data: bytes | None = field(default=None, compare=False, repr=False)
    held: bool = False

    @staticmethod
    def of_media(media: Media) -> "Payload":
        """Upload the media file itself (EdgeHosted, NoSharing)."""
        return Payload(media.kind, media.file_bytes, media=media)


@dataclass(frozen=True, slots=True)
class Inference:
    """A model's option logits for one query; `choice` is the arg-max option. `roi` is a region
    of interest (x0, y0, x1, y1 in pixels of the original media) where a model reports one (seed
    003: the relative-attention box an Infer with `locate` asked for); `rois` one box per option
    the answer names, (option index, box) (seed 001's grounding, an Infer with `locate.labels`)."""

    model: ModelName
    option_logits: np.ndarray = field(compare=False)
    roi: tuple[int, int, int, int] | None = None
    rois: tuple[tuple[int, tuple[int, int, int, int]], ...] = ()

    @property
    def choice(self) -> int:
        z = self.option_logits
        return int(z.argmax()) if type(z) is np.ndarray else int(np.argmax(z))  # the method: no wrapper per call


@dataclass(frozen=True, slots=True)
class Tokenize:
    """Decode, preprocess and encode `media` with `encoder`'s vision encoder, sequentially or
    pipelined. At the edge (a step of an Offload) the media is the uploaded file."""

    media: Media
    sampler: Sampler
    pipelined: bool
    encoder: ModelName = "small"

    @property
    def views(self) -> tuple[str, ...]:
        """The seed 003 view the media is (what its Tokens carry), or none."""
        return (self.media.view,) if isinstance(self.media, ImageMeta) and self.media.view else ()


@dataclass(frozen=True, slots=True)
class Context:
    """History a stream frame's small model is prompted with in place of its own (context
    replacement, seed 001 Sec. 3.2): the large model's `answer` to frame `frame_index`, `lag`
    frames before the current one. `tokens` are that frame's small-model tokens, which visual
    focus matches the answer's region against (real runs keep them; the sim leaves them None)."""

    frame_index: int
    lag: int
    answer: Inference
    tokens: Tokens | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Locate:
    """Ask an edge Infer for a region of interest (seed 003): when the answer's min-entropy is above
    `above` (nats), the box of `scale` of the shorter side around the peak of the relative
    attention (`testbed.crop`), in pixels of the `width` x `height` original image. With `labels`
    (a stream task, seed 001's grounding) one such box per option the answer names, each around
    the peak of the model's map for that option, whatever the entropy."""

    above: float
    scale: float
    width: int
    height: int
    labels: str = ""


@dataclass(frozen=True, slots=True)
class Infer:
    """Run `model` on `tokens` merged to `density` per frame, prompted with the question and its
    options; returns the option logits. The large model on the small model's tokens is the
    shared-encoder hybrid (QuickGrasp's VLM7B-Encoder2B), on its own encoder's tokens the native
    large VLM. `tokens=None` inside an Offload means the tokens made by the step before it.

    Stream frames (options = the categories; a score > 0 means present for multi-label tasks):
    `context` replaces the small model's own history with a large-model answer, and `focus` names
    the parts of visual focus on that answer's regions (seed 001 Sec. 3.3): "ggvr" adds the
    context frame's region patches to the input (Eq. 6), "grvr" weights the frame's tokens by
    their similarity to each region (Eq. 7-11); focus needs a context."""

    model: ModelName
    tokens: Tokens | None
    density: int
    question: str
    options: tuple[str, ...]
    context: Context | None = None
    focus: tuple[str, ...] = ()
    locate: Locate | None = None

    def with_tokens(self, tokens: Tokens | None) -> "Infer":
        """This Infer on `tokens`: dataclasses.replace's result, without its per-call field walk (an
        Offload's Infer gets the tokens of the step before it on every escalated query)."""
        return Infer(self.model, tokens, self.density, self.question, self.options, self.context, self.focus,
                     self.locate)


@dataclass(frozen=True, slots=True)
class Crop:
    """On the device (seed 003): a JPEG view of the query's image `media`: "global" resized so its
    longer side is `side` (the encoder's input), "crop" the `box` (pixels of the original) at full
    detail, "full" the original file itself (the edge tiles it, LLaVA-1.5-HD). Returns an image
    Payload whose media is the view (`ImageMeta.view`, `.box`)."""

    media: ImageMeta
    view: Literal["global", "crop", "full"]
    box: tuple[int, int, int, int] | None = None
    side: int = GLOBAL_SIDE


@dataclass(frozen=True, slots=True)
class Compress:
    """Merge `tokens` to `density` per frame and compress them into a token Payload."""

    tokens: Tokens
    density: int


@dataclass(frozen=True, slots=True)
class Decompress:
    """At the edge: turn an uploaded token Payload back into Tokens."""

    payload: Payload


@dataclass(frozen=True, slots=True)
class Describe:
    """On the device, after the small model answered: the density bandit's context inputs for
    `tokens` as the small model saw them at `density`, and its `question` (seed 000 Eq. 6-10):
    pooled question and vision embeddings, clip relevance and spectral complexity. Returns
    ContextInputs; the sim reads them from the trace's context columns."""

    tokens: Tokens
    density: int
    question: str


@dataclass(frozen=True, slots=True)
class Inspect:
    """On the device, before any inference: INAR-VL's image-complexity signals of `media` (seed
    002; `testbed.router.signals`): an image's pixels, or up to INSPECT_FRAMES of the frames
    `sampler` picks from a video, decoded and measured. Returns InputSignals; the sim reads them
    from the trace's signal_* columns and charges the decoding."""

    media: Media
    sampler: Sampler


EdgeStep = Tokenize | Infer | Decompress


@dataclass(frozen=True, slots=True)
class Offload:
    """Upload `payloads` (and the prompts of its Infer steps), run `steps` in order at the edge,
    download the answer. The result is the last step's result (an Inference)."""

    payloads: tuple[Payload, ...]
    steps: tuple[EdgeStep, ...]


@dataclass(frozen=True, slots=True)
class Future:
    """Handle of work started with Submit."""

    id: int

    def started(self, futures: dict[int, Any], policy: str) -> Any:
        """The interpreter's handle of this work in a run's `futures`; a policy waiting on work it did
        not submit is a bug in the policy."""
        handle = futures.get(self.id)
        if handle is None:
            from testbed.errors import TestbedError

            raise TestbedError(f"{policy} waits on a future it did not submit")
        return handle


@dataclass(frozen=True, slots=True)
class Submit:
    """Start `effect` without waiting for it; returns a Future. Its work and bytes count to the
    query that started it, whether or not the policy ever waits for it."""

    effect: "Effect"


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait for `future` at most `timeout_s` (None: forever); returns its result or TIMED_OUT."""

    future: Future
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class WaitAny:
    """Wait until the first of `futures` finishes, at most `timeout_s`; returns (index, result) of
    the first to finish (the lowest index on a tie), or TIMED_OUT."""

    futures: tuple[Future, ...]
    timeout_s: float | None = None


class _TimedOut:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMED_OUT"


TIMED_OUT = _TimedOut()


@dataclass(frozen=True, slots=True)
class NextFrame:
    """Wait for the next frame of stream `stream_id` to be captured and return it (a `Frame`; at
    once if it already was, when the policy runs late), or `END_OF_STREAM` after the last."""

    stream_id: str


class _EndOfStream:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END_OF_STREAM"


END_OF_STREAM = _EndOfStream()


@dataclass(frozen=True, slots=True)
class FrameAnswer:
    """A frame's answer: the labels (category indices), which model gave them ("none": no
    answer), and the frame whose large-model answer the small model used as history (-1: none)."""

    labels: tuple[int, ...]
    source: Literal["small", "large", "none"]
    context_frame: int = -1


@dataclass(frozen=True, slots=True)
class Emit:
    """Record `answer` as frame `frame_index`'s answer now. With `better` (a Future of a
    large-model Inference), that answer replaces it if it finishes by the stream-clock time
    `until_s` (the frame's deadline): results within tau are adopted (seed 001 Sec. 3.1). An
    answer recorded after the stream ended is dropped. Returns None."""

    frame_index: int
    answer: FrameAnswer
    better: Future | None = None
    until_s: float | None = None


@dataclass(frozen=True, slots=True)
class StreamDone:
    """What a stream policy returns after END_OF_STREAM."""

    frames: int


class PolicyInterrupt(TestbedError):
    """Thrown into a policy at the effect it was waiting on; a policy may catch it and fall back."""


class EdgeUnavailable(PolicyInterrupt):
    """The edge did not answer (down, busy, too late, refused, gone): thrown into a policy at its
    Offload (it may fall back), raised by the live client to its caller. `reason` is one of "timeout"
    (down, unreachable or late), "busy", "deadline", "shutdown", "closed", "refused" (a CURVE
    handshake failed) or "unavailable" (any other)."""

    def __init__(self, message: str, reason: str = "unavailable") -> None:
        self.reason = reason
        super().__init__(message)


Effect = (Tokenize | Infer | Compress | Decompress | Describe | Inspect | Crop | Offload | Submit | Wait | WaitAny
          | NextFrame | Emit)

HANDLERS: dict[type, str] = {
    Tokenize: "tokenize", Infer: "infer", Compress: "compress", Decompress: "decompress", Describe: "describe",
    Inspect: "inspect", Crop: "crop", Offload: "offload", Submit: "submit", Wait: "wait", WaitAny: "wait_any",
    NextFrame: "next_frame", Emit: "emit",
}
"""The interpreter method that performs each effect (one method per effect, found by type)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What a policy returns: the chosen option, where it was decided, and whether the policy
    fell back to the device because the edge did not answer; `score` is the router's score the
    query was routed on (NaN for a policy without a router)."""

    choice: int
    served_by: Literal["local", "edge"]
    density: int = 0
    confidence: float = float("nan")
    fallback: bool = False
    score: float = float("nan")


Policy = Generator[Effect, Any, Answer]
StreamPolicy = Generator[Effect, Any, StreamDone]
Step = Generator[Effect, Any, Any]
"""A helper generator a policy delegates to with ``yield from`` (returns any value)."""

__all__ = ["Answer", "Compress", "Context", "ContextInputs", "Crop", "Decompress", "Describe", "EdgeStep",
           "EdgeUnavailable",
           "Effect", "Emit", "END_OF_STREAM", "Frame", "FrameAnswer", "Future", "HANDLERS", "ImageMeta", "Infer",
           "Inference", "InputSignals", "Inspect", "Locate", "ModelName", "NextFrame", "Offload", "Payload", "Policy",
           "PolicyInterrupt", "Step", "Stream", "StreamDone", "StreamPolicy", "Submit", "TIMED_OUT", "Tokenize",
           "Tokens", "VideoMeta", "Wait", "WaitAny", "Where"]
