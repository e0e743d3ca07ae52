"""The effect vocabulary: what a policy may ask an interpreter to do, and what it gets back.

A policy is a generator: it yields an effect, the interpreter performs it (in SimPy time or for
real) and sends the result back. Policies never sleep, read clocks or touch sockets. Adding an
effect means adding it to both interpreters (sim/interpreter.py, live/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator, Literal, Union

import numpy as np

from testbed.query import VideoMeta
from testbed.tokenizer.sampling import Sampler

Where = Literal["local", "edge"]
ModelName = Literal["small", "large"]


@dataclass(frozen=True, slots=True)
class Tokens:
    """Vision tokens of `frames` sampled frames (`decoded` physically decoded); `per_frame` is the
    density they were merged to, 0 for the encoder's unmerged output."""

    frames: int
    decoded: int
    per_frame: int
    where: Where
    stage_s: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Payload:
    """Bytes that cross the link. kind: video (the file), tokens (merged, compressed), text."""

    kind: Literal["video", "tokens", "text"]
    nbytes: int
    raw_bytes: int = 0  # bytes before compression, for Decompress
    frames: int = 0
    density: int = 0


@dataclass(frozen=True, slots=True)
class Inference:
    """A model's option logits for one query; `choice` is the arg-max option."""

    model: ModelName
    option_logits: np.ndarray = field(compare=False)

    @property
    def choice(self) -> int:
        return int(np.argmax(self.option_logits))


@dataclass(frozen=True, slots=True)
class Tokenize:
    """Decode, preprocess and encode `video` on `where`, sequentially or pipelined."""

    video: VideoMeta
    sampler: Sampler
    pipelined: bool
    where: Where = "local"


@dataclass(frozen=True, slots=True)
class Infer:
    """Run `model` on `tokens` merged to `density` per frame plus `text_tokens` of prompt.

    For the large model, `shared_encoder` says whether the tokens come from the small model's
    encoder (QuickGrasp's hybrid VLM7B-Encoder2B) or from its own (VideoChat-Flash-7B).
    `tokens=None` inside an Offload means the tokens made by the step before it at the edge."""

    model: ModelName
    tokens: Tokens | None
    density: int
    text_tokens: int
    where: Where = "local"
    shared_encoder: bool = False


@dataclass(frozen=True, slots=True)
class Compress:
    """Merge `tokens` to `density` per frame and compress them into a Payload (local)."""

    tokens: Tokens
    density: int


@dataclass(frozen=True, slots=True)
class Decompress:
    """Undo Compress at the edge."""

    payload: Payload


EdgeStep = Union[Tokenize, Infer, Decompress]


@dataclass(frozen=True, slots=True)
class Offload:
    """Upload `payloads`, run `steps` in order at the edge, download `reply_bytes`.

    The result is the last step's result. Tokens referred to by later steps are those produced
    at the edge by an earlier Tokenize step, or the uploaded ones."""

    payloads: tuple[Payload, ...]
    steps: tuple[EdgeStep, ...]
    reply_bytes: int


@dataclass(frozen=True, slots=True)
class Future:
    """Handle of work started with Submit."""

    id: int


@dataclass(frozen=True, slots=True)
class Submit:
    """Start `effect` without waiting for it; returns a Future."""

    effect: "Effect"


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait for `future` at most `timeout_s` (None: forever); returns its result or TIMED_OUT."""

    future: Future
    timeout_s: float | None = None


class _TimedOut:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMED_OUT"


TIMED_OUT = _TimedOut()

Effect = Union[Tokenize, Infer, Compress, Decompress, Offload, Submit, Wait]


@dataclass(frozen=True, slots=True)
class Answer:
    """What a policy returns: the chosen option and where it was decided."""

    choice: int
    served_by: Literal["local", "edge"]
    density: int = 0
    confidence: float = float("nan")


Policy = Generator[Effect, Any, Answer]
Step = Generator[Effect, Any, Any]
"""A helper generator a policy delegates to with ``yield from`` (returns any value)."""
