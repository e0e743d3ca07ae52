"""Tokenizer speed as ratios within one run (`make bench`); seed 000 SIII-A. Ratios that need the
machine's second core (pipelining, the pool of keyframe decoders) gate only when it was free; the
single-decoder ones are in process CPU time (a best-of over rounds of unequal length favours the
shorter one under load: wall time made one of them swing from 1.9 to 3.2 between runs)."""

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


@pytest.fixture(scope="module")
def tok():
    with Tokenizer(tiny_encoder(), time.perf_counter) as t:
        yield t


@pytest.mark.benchmark(group="tokenizer")
def test_accelerated_vs_default_tokenizer(benchmark, compare_speed, videos, tok):
    """Keyframe-aligned + pipelined vs 1 FPS sequential on the 10-minute GOP-150 video (seed 000: ~3x)."""
    path = videos["long"]
    compare_speed("accelerated_over_default_tokenizer",
                  "10-minute GOP-150 video, tiny encoder: 1 FPS sequential tokenize time / keyframes pipelined",
                  lambda: tok(path, DEFAULT_SAMPLER, pipelined=False),
                  lambda: tok(path, KEYFRAME_SAMPLER, pipelined=True),
                  rounds=ROUNDS, needs_idle_core=True, at_least=3.0)


@pytest.mark.benchmark(group="tokenizer")
def test_keyframe_decoding_vs_physical_limit(benchmark, compare_speed, videos):
    """Our keyframe decode (one decoder) against decoding the keyframes and nothing else (PyAV skip_frame=NONKEY)."""
    path = videos["long"]
    meta = probe(path)

    def limit():
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.codec_context.skip_frame = "NONKEY"
            return [f.to_ndarray(format="rgb24") for f in c.decode(s)]

    assert len(limit()) == len(meta.keyframes)
    compare_speed("keyframe_decode_speed_vs_physical_limit",
                  "120 keyframes of the 10-minute video: PyAV decoding only keyframes / our keyframe path, one decoder "
                  "(process CPU time)",
                  limit, lambda: decode(path, meta, meta.keyframes, workers=1), rounds=15, clock=time.process_time,
                  at_least=1 / 1.3)


@pytest.mark.benchmark(group="tokenizer")
def test_keyframe_decoding_over_two_decoders(benchmark, compare_speed, videos):
    """The keyframe path over two decoders (this thread and one more, sharing the packets) against one
    (issue 24 item 5; PyAV releases the GIL while decoding). The issue asked for 1.7x, from a probe made
    when each frame's RGB conversion built its own scaler (0.5 ms a keyframe, 73 ms serial, 50 ms on two);
    with one scaler per decoder a keyframe costs 0.2 ms (32 ms serial, 20 ms on two), and the file's
    demux (9 ms, in one thread) caps the ratio at 1.56-1.67 on this idle 2-core machine. Gated at 1.5,
    only when the machine's other core was free."""
    path = videos["long"]
    meta = probe(path)
    compare_speed("keyframe_decode_parallel_over_serial",
                  "120 keyframes of the 10-minute video: keyframe path time with one decoder / with two",
                  lambda: decode(path, meta, meta.keyframes, workers=1),
                  lambda: decode(path, meta, meta.keyframes, workers=2), rounds=15, needs_idle_core=True,
                  at_least=1.5)


@pytest.mark.benchmark(group="tokenizer")
@pytest.mark.parametrize("video,sampler,name", [
    ("medium", DEFAULT_SAMPLER, "pipelined_over_sequential"),  # 1 FPS, decord (multi-threaded decode)
    ("long", KEYFRAME_SAMPLER, "pipelined_over_sequential_keyframes"),  # PyAV decoder pool
])
def test_pipelined_vs_sequential(benchmark, compare_speed, videos, tok, video, sampler, name):
    """The same frames overlapped in chunks vs one stage after another, tiny encoder."""
    path = videos[video]
    meta = probe(path)
    run = lambda p: tok(path, sampler, pipelined=p, meta=meta)  # noqa: E731
    compare_speed(name, f"{video} video, {sampler.kind} sampler, tiny encoder: sequential stages time / pipelined",
                  lambda: run(False), lambda: run(True), rounds=ROUNDS, needs_idle_core=True,
                  at_least=0.95)  # not slower (5% for timing noise)


@pytest.mark.benchmark(group="tokenizer")
def test_probe_pyav_vs_decord(benchmark, compare_speed, videos):
    """Reading keyframe indices: our PyAV packet-flag probe vs opening a decord reader and asking
    get_key_indices (both give the same indices: tests/test_tokenizer.py)."""
    import decord

    path = str(videos["long"])
    compare_speed("probe_pyav_speed_vs_decord",
                  "10-minute video's keyframe indices: decord reader + get_key_indices time / our PyAV probe "
                  "(process CPU time)",
                  lambda: decord.VideoReader(path).get_key_indices(), lambda: probe(path), rounds=ROUNDS,
                  clock=time.process_time, at_least=0.25)  # the same order of magnitude; PyAV kept for its errors
