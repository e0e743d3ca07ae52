"""Stage durations from a hardware profile: what each effect costs in simulated seconds.

Pure functions of sizes; the interpreter prefers a query's recorded stage time when the trace has
one (keys from `testbed.ledger.stage_key`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.codec.size import TokenFormat, raw_token_bytes
from testbed.crop import hd_frames
from testbed.policies.effects import Tokenize
from testbed.profiles import DeviceProfile
from testbed.query import ImageMeta, Media, VideoMeta
from testbed.ledger import tokenize_key
from testbed.tokenizer.sampling import DecodeWork, Sampler, decode_work, n_chunks, pipeline_makespan, sample_indices


@dataclass(frozen=True, slots=True)
class TokenizeCost:
    """Frames sampled and decoded, the three stage times, and the makespan (pipelined or not)."""

    frames: int
    decoded: int
    decode_s: float
    preprocess_s: float
    encode_s: float
    total_s: float


_WORK: dict[tuple[int, Sampler], tuple[VideoMeta, DecodeWork]] = {}
_KEYS: dict[int, tuple[VideoMeta, np.ndarray]] = {}
_TOKENIZE: dict[tuple[int, int, Sampler, bool, str, int], tuple[DeviceProfile, Media, TokenizeCost, str]] = {}


def forget_work() -> None:
    """Start a run with no memoized decode work or tokenize costs (`run_scenario` calls it, so a run's
    speed never depends on the runs before it)."""
    _WORK.clear()
    _KEYS.clear()
    _TOKENIZE.clear()


def _work(media: VideoMeta, sampler: Sampler) -> DecodeWork:
    """What decoding `media` with `sampler` takes; memoized per media object within a run (every
    policy tokenizes the same queries, and sampling and the GOP walk are a large part of the sim's
    time)."""
    hit = _WORK.get((id(media), sampler))
    if hit is not None and hit[0] is media:
        return hit[1]
    keys = _keyframes(media)
    work = decode_work(sample_indices(media.n_frames, media.fps, keys, sampler), keys)
    if len(_WORK) >= 200_000:
        _WORK.clear()
    _WORK[(id(media), sampler)] = (media, work)
    return work


def _keyframes(media: VideoMeta) -> np.ndarray:
    """`media.keyframe_array`, converted once per media object within a run (each sampler asks for it)."""
    hit = _KEYS.get(id(media))
    if hit is not None and hit[0] is media:
        return hit[1]
    if len(_KEYS) >= 200_000:
        _KEYS.clear()
    keys = media.keyframe_array
    _KEYS[id(media)] = (media, keys)
    return keys


def tokenize_cost(dev: DeviceProfile, media: Media, sampler: Sampler, pipelined: bool,
                  chunk_frames: int) -> TokenizeCost:
    """Decode (frames physically decoded x megapixels, plus seeks), preprocess and encode; a
    pipelined tokenizer overlaps them in chunks of `chunk_frames`. An image is one frame; a
    full-resolution view (seed 003) is LLaVA-1.5-HD's tiles and global view, one frame each."""
    if isinstance(media, ImageMeta):
        n = hd_frames(media.width, media.height) if media.view == "full" else 1
        dec, pre, enc = dev.seconds("decode", media.megapixels), dev.seconds("preprocess", n), dev.seconds("encode", n)
        return TokenizeCost(n, 1, dec, pre, enc, dec + pre + enc)
    work = _work(media, sampler)
    dec = dev.seconds("decode", work.decoded * media.megapixels) + dev.seconds("seek", work.seeks)
    pre = dev.seconds("preprocess", work.sampled)
    enc = dev.seconds("encode", work.sampled)
    stages = (dec, pre, enc)
    total = pipelined_s(dev, stages, n_chunks(work.sampled, chunk_frames)) if pipelined else sum(stages)
    return TokenizeCost(work.sampled, work.decoded, dec, pre, enc, total)


def tokenize_cost_key(dev: DeviceProfile, eff: Tokenize, site: str, chunk_frames: int) -> tuple[TokenizeCost, str]:
    """`tokenize_cost` of a Tokenize effect on `site` and its stage key, memoized per device profile and
    media object within a run (every policy tokenizes the same queries, mostly with the same profile)."""
    media, sampler, pipelined = eff.media, eff.sampler, eff.pipelined
    memo = (id(dev), id(media), sampler, pipelined, site, chunk_frames)
    hit = _TOKENIZE.get(memo)
    if hit is not None and hit[0] is dev and hit[1] is media:
        return hit[2], hit[3]
    cost, key = tokenize_cost(dev, media, sampler, pipelined, chunk_frames), tokenize_key(site, eff)
    if len(_TOKENIZE) >= 200_000:
        _TOKENIZE.clear()
    _TOKENIZE[memo] = (dev, media, cost, key)
    return cost, key


def pipelined_s(dev: DeviceProfile, stages: tuple[float, ...], chunks: int) -> float:
    """The pipelined tokenizer's makespan: stages overlapping in chunks, unless the device's measured
    pipeline ratio says they do not (CPU only: the measured ratio x their sum)."""
    if dev.pipeline_ratio is not None and dev.pipeline_ratio >= 1.0:
        return dev.pipeline_ratio * sum(stages)
    return pipeline_makespan(stages, chunks)


def inspect_cost(dev: DeviceProfile, media: Media, sampler: Sampler) -> float:
    """Seed 002's look before inference: decode the image, or up to INSPECT_FRAMES of the frames the
    sampler picks (their decoding and seeks); the arithmetic over the pixels is a few numpy passes,
    negligible next to decoding."""
    if isinstance(media, ImageMeta):
        return dev.seconds("decode", media.megapixels)
    from testbed.router.signals import inspect_indices

    idx = inspect_indices(sample_indices(media.n_frames, media.fps, media.keyframe_array, sampler))
    work = decode_work(idx, media.keyframe_array)
    return dev.seconds("decode", work.decoded * media.megapixels) + dev.seconds("seek", work.seeks)


def infer_cost(dev: DeviceProfile, frames: int, density: int, text_tokens: int, output_tokens: int = 1) -> float:
    """Prefill over vision + text tokens, then one generated option letter."""
    return dev.seconds("prefill", frames * density + text_tokens) + dev.seconds("generate", output_tokens)


def merge_cost(dev: DeviceProfile, frames: int) -> float:
    """Merge each frame's tokens to the target density (ToMe)."""
    return dev.seconds("merge", frames)


def zstd_cost(dev: DeviceProfile, frames: int, density: int, fmt: TokenFormat) -> float:
    """zstd over the merged tokens' raw bytes."""
    return dev.seconds("compress", raw_token_bytes(frames, density, fmt))


def decompress_cost(dev: DeviceProfile, raw_bytes: int) -> float:
    return dev.seconds("decompress", raw_bytes)
