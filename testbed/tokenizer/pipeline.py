"""Tokenize a video: decode -> preprocess -> encode, sequentially or pipelined in chunks.

Pipelined, decode and preprocess run in their own threads and hand chunks on through bounded
queues while the caller's thread encodes, so the makespan approaches the slowest stage (seed 000
SIII-A, Fig. 5). The clock is passed in by the caller (the live interpreter, the CLI, a benchmark):
the core never reads time itself.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import numpy as np
import torch

from testbed.models.encoder import VisionEncoder
from testbed.query import VideoMeta
from testbed.tokenizer.decode import DECODE_WORKERS, iter_frames, only_keyframes, put_unless_stopped
from testbed.tokenizer.sampling import Sampler, decode_work, sample_indices
from testbed.tokenizer.video import probe

Clock = Callable[[], float]
_DONE = object()


@dataclass(frozen=True)
class TokenizeResult:
    """Tokens (frames, tokens per frame, dim) with what it took to make them."""

    tokens: torch.Tensor
    indices: np.ndarray
    decoded: int  # frames the decoder had to decode (reference frames included; model of decode_work)
    seeks: int
    keyframe_path: bool  # decoded with the PyAV keyframe-only path
    stage_s: dict[str, float]  # busy seconds per stage: decode, preprocess, encode
    wall_s: float
    pipelined: bool

    @property
    def frames(self) -> int:
        return int(len(self.indices))


def _timed(clock: Clock, totals: dict[str, float], stage: str, fn: Callable[[], Any]) -> Any:
    t0 = clock()
    out = fn()
    totals[stage] += clock() - t0
    return out


def _sequential(chunks: Iterator[np.ndarray], enc: VisionEncoder, chunk: int, clock: Clock,
                totals: dict[str, float]) -> list[torch.Tensor]:
    frames = _timed(clock, totals, "decode", lambda: list(chunks))
    if not frames:
        return []
    pixels = _timed(clock, totals, "preprocess",
                    lambda: enc.preprocess(np.concatenate(frames)))
    out = []
    for part in torch.split(pixels, chunk):
        out.append(_timed(clock, totals, "encode", lambda: enc.encode(part)))  # noqa: B023 (called at once)
    return out


def _stage(source: Callable[[], Any], fn: Callable[[Any], Any], out: "queue.Queue[Any]", stop: threading.Event,
           clock: Clock, totals: dict[str, float], name: str) -> None:
    """Run `fn` on each item from `source` into `out`; exceptions and the end travel as items."""

    def put(item: Any) -> None:
        put_unless_stopped(out, item, stop)

    try:
        while not stop.is_set():
            t0 = clock()
            item = source()
            if item is _DONE or isinstance(item, BaseException):
                put(item)
                return
            if name != "decode":  # decode's work is inside source(); the others' waiting is not work
                t0 = clock()
            result = fn(item)
            totals[name] += clock() - t0
            put(result)
    except BaseException as exc:  # handed to the consumer, which re-raises it
        put(exc)


def _get(q: "queue.Queue[Any]", stop: threading.Event) -> Any:
    """Next item, or the end once the consumer has stopped (so no stage waits forever)."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return _DONE


def _pipelined(chunks: Iterator[np.ndarray], enc: VisionEncoder, clock: Clock, totals: dict[str, float],
               pool: Executor, depth: int = 2) -> list[torch.Tensor]:
    decoded: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
    pixels: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
    stop = threading.Event()
    it = iter(chunks)
    stages = [
        pool.submit(_stage, lambda: next(it, _DONE), lambda x: x, decoded, stop, clock, totals, "decode"),
        pool.submit(_stage, lambda: _get(decoded, stop), enc.preprocess,
                    pixels, stop, clock, totals, "preprocess"),
    ]
    out: list[torch.Tensor] = []
    try:
        while True:
            item = _get(pixels, stop)
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            out.append(_timed(clock, totals, "encode", lambda: enc.encode(item)))
    finally:
        stop.set()
        for f in stages:
            f.result(timeout=30)
    return out


class Tokenizer:
    """Tokenizes videos with one encoder, reusing its two pipeline threads across calls (new
    threads per call would each bring an allocator arena and grow memory). A context manager.
    `threads`: decord's decoding threads; `decode_workers`: the keyframe path's decoders."""

    def __init__(self, encoder: VisionEncoder, clock: Clock, *, chunk_frames: int = 16, threads: int = 0,
                 decode_workers: int = DECODE_WORKERS) -> None:
        self.encoder, self.clock = encoder, clock
        self.chunk_frames, self.threads, self.decode_workers = chunk_frames, threads, decode_workers
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tokenizer")

    def __enter__(self) -> "Tokenizer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __call__(self, path: Path | str, sampler: Sampler, *, pipelined: bool = True,
                 meta: VideoMeta | None = None) -> TokenizeResult:
        """Sample frames from container metadata, decode, preprocess and encode them."""
        clock = self.clock
        t_start = clock()
        meta = meta or probe(path)
        idx = sample_indices(meta.n_frames, meta.fps, meta.keyframe_array, sampler)
        work = decode_work(idx, meta.keyframe_array)
        totals = {"decode": 0.0, "preprocess": 0.0, "encode": 0.0}
        chunks = iter_frames(path, meta, idx, self.chunk_frames, self.threads, self.decode_workers)
        enc = self.encoder
        parts = _pipelined(chunks, enc, clock, totals, self._pool) if pipelined else \
            _sequential(chunks, enc, self.chunk_frames, clock, totals)
        tokens = torch.cat(parts) if parts else torch.zeros(0, enc.tokens_per_frame, enc.dim)
        keyframe_path = only_keyframes(idx, meta)
        return TokenizeResult(tokens, idx, len(idx) if keyframe_path else work.decoded, work.seeks, keyframe_path,
                              totals, clock() - t_start, pipelined)


    def image(self, path: Path | str) -> TokenizeResult:
        """An image as one frame: decode, preprocess, encode (no sampler, nothing to pipeline)."""
        from testbed.tokenizer.image import load_image

        clock, enc = self.clock, self.encoder
        totals = {"decode": 0.0, "preprocess": 0.0, "encode": 0.0}
        t_start = clock()
        frame = _timed(clock, totals, "decode", lambda: load_image(path))
        pixels = _timed(clock, totals, "preprocess", lambda: enc.preprocess(frame))
        tokens = _timed(clock, totals, "encode", lambda: enc.encode(pixels))
        return TokenizeResult(tokens, np.zeros(1, np.int64), 1, 0, False, totals, clock() - t_start, False)


def tokenize(path: Path | str, sampler: Sampler, encoder: VisionEncoder, clock: Clock, *, pipelined: bool = True,
             chunk_frames: int = 16, threads: int = 0, decode_workers: int = DECODE_WORKERS,
             meta: VideoMeta | None = None) -> TokenizeResult:
    """One-off tokenization (a Tokenizer for one call); keep a Tokenizer to tokenize many videos."""
    with Tokenizer(encoder, clock, chunk_frames=chunk_frames, threads=threads, decode_workers=decode_workers) as tok:
        return tok(path, sampler, pipelined=pipelined, meta=meta)
