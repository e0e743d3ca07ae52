"""The keyframe path over a pool of decoders gives the serial path's frames, bit for bit, in the same
chunks; a file cut short fails the same way; a consumer that stops early leaves no decoder running."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

import testbed.tokenizer.decode as dec
from testbed.models.encoder import tiny_encoder
from testbed.tokenizer.decode import DECODE_WORKERS, iter_keyframes
from testbed.tokenizer.pipeline import tokenize
from testbed.tokenizer.sampling import KEYFRAME_SAMPLER
from testbed.tokenizer.video import VideoError, probe
from tests.videos import cut, encode


def _chunks(path, meta, indices, chunk, workers) -> list[np.ndarray]:
    return list(iter_keyframes(path, meta, indices, chunk, workers))


def _decoders_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("keyframe-decoder")]


@pytest.mark.parametrize("name", ["long", "medium", "bikes"])
def test_parallel_keyframes_equal_serial_bit_for_bit(videos, name, monkeypatch):
    m = probe(videos[name])
    rng = np.random.default_rng(0)
    subsets = [list(m.keyframes), list(m.keyframes[::3]),
               sorted(rng.choice(m.keyframes, size=max(2, len(m.keyframes) // 2), replace=False).tolist())]
    started = []
    real = dec._decoder
    monkeypatch.setattr(dec, "_decoder", lambda *a: (started.append(threading.current_thread().name), real(*a)))
    for indices in subsets:
        serial = _chunks(videos[name], m, indices, 7, 1)
        assert not started  # one worker: no decoder threads
        assert sum(len(c) for c in serial) == len(indices)
        for workers in (2, 3, 5):
            started.clear()
            par = _chunks(videos[name], m, indices, 7, workers)
            assert len(started) == min(workers, len(indices))
            assert [c.shape for c in par] == [c.shape for c in serial]
            assert all(np.array_equal(a, b) for a, b in zip(par, serial))
        started.clear()
    assert not _decoders_alive()


def test_default_workers_and_tokens_unchanged(videos):
    import os

    assert DECODE_WORKERS == min(2, os.cpu_count() or 1)
    enc = tiny_encoder()
    one = tokenize(videos["long"], KEYFRAME_SAMPLER, enc, time.perf_counter, decode_workers=1, chunk_frames=16)
    two = tokenize(videos["long"], KEYFRAME_SAMPLER, enc, time.perf_counter, decode_workers=2, chunk_frames=16)
    assert one.keyframe_path and two.keyframe_path and one.frames == two.frames == 120
    assert torch.equal(one.tokens, two.tokens)


@pytest.fixture(scope="module")
def cut_file(tmp_path_factory):
    """A faststart MP4 with 8 keyframes, cut after about half its bytes, and the whole file's metadata."""
    d = tmp_path_factory.mktemp("cut")
    full = encode(d / "full.mp4", 8, fps=25, size="160x90", gop=25, container_args=("-movflags", "+faststart"))
    return cut(full, d / "half.mp4", 0.5), probe(full)


def _until_error(path, meta, workers) -> tuple[list[np.ndarray], str]:
    got: list[np.ndarray] = []
    with pytest.raises(VideoError) as err:
        for c in iter_keyframes(path, meta, meta.keyframes, 2, workers):
            got.append(c)
    return got, err.value.reason


def test_a_cut_file_fails_alike(cut_file):
    path, meta = cut_file
    assert len(meta.keyframes) == 8
    serial, why_serial = _until_error(path, meta, 1)
    par, why_par = _until_error(path, meta, 2)
    assert why_par == why_serial and "truncated or corrupt" in why_serial
    assert 0 < sum(len(c) for c in serial) < 8
    assert [c.shape for c in par] == [c.shape for c in serial]
    assert all(np.array_equal(a, b) for a, b in zip(par, serial))
    assert not _decoders_alive()


def test_a_consumer_that_stops_early_leaves_no_decoder(videos):
    m = probe(videos["long"])
    it = iter_keyframes(videos["long"], m, m.keyframes, 4, 2)
    first = next(it)
    assert first.shape[0] == 4 and _decoders_alive()
    it.close()
    assert not _decoders_alive()


@pytest.mark.parametrize("name", ["long", "bikes"])
def test_one_array_from_the_pool_equals_the_serial_path(videos, name):
    """decode() over several decoders, each writing its rows of one array, gives the chunked serial
    path's frames; and the reused scaler gives PyAV's own to_ndarray pixels."""
    import av

    from testbed.tokenizer.decode import decode

    m = probe(videos[name])
    subset = list(m.keyframes[1::2]) or list(m.keyframes)
    serial = np.concatenate(_chunks(videos[name], m, subset, 5, 1))
    for workers in (1, 2, 3):
        assert np.array_equal(decode(videos[name], m, subset, workers=workers), serial)
    with av.open(str(videos[name])) as c:
        frames = [f for _, f in zip(range(3), c.decode(video=0))]
    to_rgb = dec._ToRGB()
    assert all(np.array_equal(to_rgb(f), f.to_ndarray(format="rgb24")) for f in frames)
    assert not _decoders_alive()


def test_one_array_from_a_cut_file_fails_as_the_serial_path(cut_file):
    from testbed.tokenizer.decode import decode

    path, meta = cut_file
    reasons = set()
    for workers in (1, 2):
        with pytest.raises(VideoError) as err:
            decode(path, meta, meta.keyframes, workers=workers)
        reasons.add(err.value.reason.split(":")[0])
    assert reasons == {"truncated or corrupt"}
    assert not _decoders_alive()
