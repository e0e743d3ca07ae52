"""Tokenizer speed as ratios within one run (`make bench`); seed 000 SIII-A."""

from __future__ import annotations

import time

import av
import pytest

from testbed.models.encoder import tiny_encoder
from testbed.tokenizer.decode import decode
from testbed.tokenizer.pipeline import Tokenizer
from testbed.tokenizer.sampling import DEFAULT_SAMPLER, KEYFRAME_SAMPLER
from testbed.tokenizer.video import probe

ROUNDS = 5


def best(fn, rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


@pytest.fixture(scope="module")
def tok():
    with Tokenizer(tiny_encoder(), time.perf_counter) as t:
        yield t


@pytest.mark.benchmark(group="tokenizer")
def test_accelerated_vs_default_tokenizer(benchmark, record_ratio, videos, tok):
    """Keyframe-aligned + pipelined vs 1 FPS sequential on the 10-minute GOP-150 video (seed 000: ~3x)."""
    path = videos["long"]
    fast = lambda: tok(path, KEYFRAME_SAMPLER, pipelined=True)  # noqa: E731
    slow = lambda: tok(path, DEFAULT_SAMPLER, pipelined=False)  # noqa: E731
    benchmark.pedantic(fast, rounds=ROUNDS, iterations=1)
    ratio = best(slow) / benchmark.stats.stats.min
    record_ratio("accelerated_over_default_tokenizer", ratio)
    assert ratio >= 3.0


@pytest.mark.benchmark(group="tokenizer")
def test_keyframe_decoding_vs_physical_limit(benchmark, record_ratio, videos):
    """Our keyframe decode against decoding the keyframes and nothing else (PyAV skip_frame=NONKEY)."""
    path = videos["long"]
    meta = probe(path)

    def limit():
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.codec_context.skip_frame = "NONKEY"
            return [f.to_ndarray(format="rgb24") for f in c.decode(s)]

    assert len(limit()) == len(meta.keyframes)
    benchmark.pedantic(lambda: decode(path, meta, meta.keyframes), rounds=15, iterations=1)
    ratio = best(limit, 15) / benchmark.stats.stats.min  # > 1: faster than the limit's loop
    record_ratio("keyframe_decode_speed_vs_physical_limit", ratio)
    assert ratio >= 1 / 1.3


@pytest.mark.benchmark(group="tokenizer")
@pytest.mark.parametrize("video,sampler,name", [
    ("medium", DEFAULT_SAMPLER, "pipelined_over_sequential"),  # 1 FPS, decord (multi-threaded decode)
    ("long", KEYFRAME_SAMPLER, "pipelined_over_sequential_keyframes"),  # PyAV decodes in one thread
])
def test_pipelined_vs_sequential(benchmark, record_ratio, videos, tok, video, sampler, name):
    """The same frames overlapped in chunks vs one stage after another, tiny encoder."""
    path = videos[video]
    meta = probe(path)
    run = lambda p: tok(path, sampler, pipelined=p, meta=meta)  # noqa: E731
    benchmark.pedantic(lambda: run(True), rounds=ROUNDS, iterations=1)
    ratio = best(lambda: run(False)) / benchmark.stats.stats.min
    record_ratio(name, ratio)
    assert ratio >= 0.95  # not slower (5% for timing noise)


@pytest.mark.benchmark(group="tokenizer")
def test_probe_pyav_vs_decord(benchmark, record_ratio, videos):
    """Reading keyframe indices: our PyAV packet-flag probe vs opening a decord reader and asking
    get_key_indices (both give the same indices: tests/test_tokenizer.py)."""
    import decord

    path = str(videos["long"])
    benchmark.pedantic(lambda: probe(path), rounds=ROUNDS, iterations=1)
    t_decord = best(lambda: decord.VideoReader(path).get_key_indices())
    ratio = t_decord / benchmark.stats.stats.min
    record_ratio("probe_pyav_speed_vs_decord", ratio)
    assert ratio > 0.25  # the same order of magnitude; PyAV is kept for its error handling
