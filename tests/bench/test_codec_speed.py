"""Codec figures (`make bench`): zstd ratio and throughput by level and byte-shuffle, on tokens
from the tiny encoder over the test videos and on random-normal tokens (which barely compress),
and token-merge time per frame from 784 tokens at dim 1024. Ratios within one run are asserted."""

from __future__ import annotations

import time

import pytest
import torch

from testbed.codec.merge import avg_pool_to_density, merge_to_density
from testbed.codec.wire import decode_message, encode_message
from testbed.models.encoder import tiny_encoder
from testbed.tokenizer.pipeline import tokenize
from testbed.tokenizer.sampling import KEYFRAME_SAMPLER


def _best(fn, rounds=5):
    out, best = None, float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def _table(name: str, tokens: torch.Tensor) -> dict[tuple[int, bool], tuple[float, float, float]]:
    """(level, shuffle) -> (compressed/raw, compress MB/s, decompress MB/s)."""
    raw = tokens.numel() * tokens.element_size()
    rows = {}
    for level in (1, 3, 9):
        for shuffle in (False, True):
            data, t_c = _best(lambda: encode_message(tokens, level=level, shuffle=shuffle))
            _, t_d = _best(lambda: decode_message(data))
            rows[(level, shuffle)] = (len(data) / raw, raw / t_c / 1e6, raw / t_d / 1e6)
    print(f"\n{name} {tuple(tokens.shape)} {tokens.dtype}: level shuffle ratio compress-MB/s decompress-MB/s")
    for (level, shuffle), (r, c, d) in rows.items():
        print(f"  {level} {'yes' if shuffle else 'no ':3} {r:.3f} {c:8.0f} {d:8.0f}")
    return rows


@pytest.mark.benchmark(group="codec")
def test_zstd_levels_and_shuffle(benchmark, record_ratio, videos):
    enc = tiny_encoder()
    video_tokens = torch.cat([tokenize(videos[v], KEYFRAME_SAMPLER, enc, time.perf_counter).tokens
                              for v in ("long", "medium", "bikes")]).half()
    random_tokens = torch.randn(256, 16, 1024, generator=torch.Generator().manual_seed(0)).half()
    real = _table("tiny-encoder tokens", video_tokens)
    rand = _table("random-normal tokens", random_tokens)
    benchmark.pedantic(lambda: encode_message(random_tokens, level=3, shuffle=True), rounds=5, iterations=1)
    shuffle_gain = rand[(3, False)][0] / rand[(3, True)][0]
    speed_gain = rand[(1, True)][1] / rand[(9, True)][1]
    record_ratio("zstd_shuffle_size_gain_random_fp16", shuffle_gain)
    record_ratio("zstd_level1_over_level9_compress_speed", speed_gain)
    record_ratio("zstd_shuffle_size_gain_encoder_fp16", real[(3, False)][0] / real[(3, True)][0])
    assert shuffle_gain > 1.0  # grouping exponent bytes helps even random fp16
    assert speed_gain > 1.0
    assert rand[(3, True)][0] > 0.8  # random tokens barely compress


@pytest.mark.benchmark(group="codec")
@pytest.mark.parametrize("density", [2, 4, 8, 16, 32])
def test_merge_time_per_frame(benchmark, record_ratio, density):
    x = torch.randn(8, 784, 1024, generator=torch.Generator().manual_seed(1))
    benchmark.pedantic(lambda: merge_to_density(x, density), rounds=3, iterations=1)
    tome_s = benchmark.stats.stats.min
    _, pool_s = _best(lambda: avg_pool_to_density(x, density))
    print(f"\nmerge 784 -> {density} at dim 1024: {tome_s / 8 * 1e3:.2f} ms/frame (ToMe), "
          f"{pool_s / 8 * 1e3:.3f} ms/frame (average pooling)")
    benchmark.extra_info["ms_per_frame"] = tome_s / 8 * 1e3
    record_ratio(f"tome_speed_vs_avgpool_a{density}", pool_s / tome_s)
    assert tome_s / pool_s > 1.0  # matching costs more than pooling
