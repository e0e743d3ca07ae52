"""Frame samplers that pick indices from container metadata, without decoding.

Shared by the sim (to know how many frames are sampled and physically decoded) and by the
live tokenizer. Defaults follow VideoChat-Flash and seed 000 Alg. 1: N_min = 64, N_max = 512.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

SamplerKind = Literal["fps", "uniform", "keyframe"]

N_MIN = 64
"""Alg. 1 N_min (seed 000 footnote 2: VideoChat-Flash's default minimum frame count)."""
N_MAX = 512
"""Alg. 1 N_max (seed 000 footnote 2: VideoChat-Flash's default maximum frame count)."""


@dataclass(frozen=True, slots=True)
class Sampler:
    """How frames are chosen.

    kind: ``fps`` (fixed rate ``rate`` frames per second, clamped to [min_frames, max_frames],
    VideoChat-Flash's default at 1 FPS), ``uniform`` (``count`` frames spread evenly) or
    ``keyframe`` (seed 000 Alg. 1, falling back to ``fps`` with the same clamps).
    """

    kind: SamplerKind = "fps"
    rate: float = 1.0
    min_frames: int = N_MIN
    max_frames: int = N_MAX
    count: int = 16

    def __post_init__(self) -> None:
        if self.kind not in ("fps", "uniform", "keyframe"):
            raise ValueError(f"unknown sampler kind {self.kind!r}; allowed: fps, uniform, keyframe")
        if self.rate <= 0 or self.min_frames < 1 or self.max_frames < self.min_frames or self.count < 1:
            raise ValueError(f"invalid sampler parameters: {self}")


DEFAULT_SAMPLER = Sampler("fps")
"""The model's default tokenizer input: 1 FPS clamped to [64, 512] (VideoChat-Flash)."""
KEYFRAME_SAMPLER = Sampler("keyframe")
"""QuickGrasp's keyframe-aligned sampler (seed 000 Alg. 1)."""


def uniform_indices(n_frames: int, count: int) -> np.ndarray:
    """`count` indices spread evenly over [0, n_frames), each at the centre of its segment."""
    count = min(count, n_frames)
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    return ((np.arange(count) + 0.5) * n_frames / count).astype(np.int64)


def fps_indices(n_frames: int, fps: float, rate: float, min_frames: int, max_frames: int) -> np.ndarray:
    """Fixed-rate sampling: round(duration * rate) frames clamped to [min_frames, max_frames]."""
    duration = n_frames / fps
    count = min(max(round(duration * rate), min_frames), max_frames)  # np.clip's, on Python ints
    return uniform_indices(n_frames, count)


def keyframe_aligned_indices(
    n_frames: int, fps: float, keyframes: np.ndarray, sampler: Sampler = KEYFRAME_SAMPLER
) -> np.ndarray:
    """Seed 000 Alg. 1: all frames if few, keyframes if enough, N_max of them if too many,
    fixed-rate fallback if too few keyframes."""
    if n_frames < sampler.min_frames:
        return np.arange(n_frames, dtype=np.int64)
    keys = np.asarray(keyframes, dtype=np.int64)
    if len(keys) > sampler.max_frames:
        return keys[uniform_indices(len(keys), sampler.max_frames)]
    if len(keys) < sampler.min_frames:
        return fps_indices(n_frames, fps, sampler.rate, sampler.min_frames, sampler.max_frames)
    return keys


def sample_indices(n_frames: int, fps: float, keyframes: np.ndarray, sampler: Sampler) -> np.ndarray:
    """Frame indices chosen by `sampler`, sorted ascending."""
    if sampler.kind == "fps":
        return fps_indices(n_frames, fps, sampler.rate, sampler.min_frames, sampler.max_frames)
    if sampler.kind == "uniform":
        return uniform_indices(n_frames, sampler.count)
    return keyframe_aligned_indices(n_frames, fps, keyframes, sampler)


@dataclass(frozen=True, slots=True)
class DecodeWork:
    """What a sequential decoder must do to produce the sampled frames."""

    sampled: int
    decoded: int  # frames physically decoded, reference frames included
    seeks: int  # random accesses (jumps to a keyframe)


def decode_work(indices: np.ndarray, keyframes: np.ndarray) -> DecodeWork:
    """Frames decoded and seeks made by a decoder that moves forward from the last decoded frame
    when the target lies in the same GOP, and otherwise seeks to the target's keyframe.

    A frame that is not a keyframe costs every frame from its keyframe (or the decoder's position,
    if that is later in the same GOP) up to itself. This is why 1 FPS sampling of a 30 FPS video
    decodes almost every frame while keyframe-aligned sampling decodes one frame per sample.
    """
    idx = np.asarray(indices, dtype=np.int64)
    keys = np.asarray(keyframes, dtype=np.int64)
    if len(idx) == 0:
        return DecodeWork(0, 0, 0)
    if len(keys) == 0 or keys[0] != 0:
        keys = np.concatenate([[0], keys])
    gop_start = keys[np.searchsorted(keys, idx, side="right") - 1]
    prev = np.concatenate([[-1], idx[:-1]])  # the decoder sits on the previous target
    same = prev == idx
    onward = ~same & (gop_start <= prev) & (prev < idx)  # same GOP, ahead: keep decoding forward
    seek = ~same & ~onward  # otherwise jump to the target's keyframe
    decoded = int(np.sum(idx - prev, where=onward)) + int(np.sum(idx - gop_start + 1, where=seek))
    return DecodeWork(int(len(idx)), decoded, int(seek.sum()))


def gop_keyframes(n_frames: int, gop: int) -> np.ndarray:
    """Keyframe indices of a fixed-GOP encode (x264 ``-g gop -keyint_min gop -sc_threshold 0``)."""
    return np.arange(0, n_frames, max(1, gop), dtype=np.int64)


def pipeline_makespan(stage_s: tuple[float, ...] | list[float], chunks: int) -> float:
    """Makespan of `chunks` equal chunks flowing through stages that overlap (a linear pipeline):
    (sum + (chunks - 1) * max) / chunks. One chunk is the sequential sum; many chunks approach
    the slowest stage."""
    chunks = max(1, int(chunks))
    total = float(sum(stage_s))
    return (total + (chunks - 1) * float(max(stage_s, default=0.0))) / chunks


def n_chunks(frames: int, chunk_frames: int) -> int:
    """Number of pipeline chunks for `frames` frames processed `chunk_frames` at a time."""
    return max(1, math.ceil(frames / max(1, chunk_frames)))
