"""Values that describe a query as a policy sees it, and its hidden truth as a trace records it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DENSITIES = (2, 4, 8, 16, 32)
"""Candidate token densities (tokens per frame), seed 000 SV-A: A = {2, 4, 8, 16, 32}."""


@dataclass(frozen=True, slots=True)
class VideoMeta:
    """Container metadata: everything samplers and the size model need, nothing decoded."""

    duration_s: float
    fps: float
    n_frames: int
    width: int
    height: int
    file_bytes: int
    keyframes: tuple[int, ...]

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    @property
    def keyframe_array(self) -> np.ndarray:
        return np.asarray(self.keyframes, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Query:
    """What a policy may look at: the video's metadata, the question and its options."""

    query_id: str
    benchmark: str
    video: VideoMeta
    question: str
    options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Hindsight:
    """Correctness of every model variant on one query; only the Oracle policy is given it."""

    small_correct: bool
    large_native_correct: bool
    large_correct: dict[int, bool]


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """One trace row: the query, its ground truth, every model variant's option logits, and
    stage times recorded by a live run (empty for synthetic traces)."""

    query: Query
    answer: int
    split: str
    small_logits: np.ndarray
    large_native_logits: np.ndarray
    large_logits: dict[int, np.ndarray]
    recorded_s: dict[str, float] = field(default_factory=dict)

    def hindsight(self) -> Hindsight:
        return Hindsight(
            small_correct=int(np.argmax(self.small_logits)) == self.answer,
            large_native_correct=int(np.argmax(self.large_native_logits)) == self.answer,
            large_correct={a: int(np.argmax(v)) == self.answer for a, v in self.large_logits.items()},
        )
