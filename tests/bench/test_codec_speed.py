"""Codec figures (`make bench`): zstd ratio and throughput by level and byte-shuffle, on tokens
from the tiny encoder over the test videos and on random-normal tokens (which barely compress);
decode_message against plain zstd on the same bytes; token merging against its own similarity
matmuls and against average pooling, from 784 tokens at dim 1024. Ratios within one run are asserted."""

from __future__ import annotations

import time
from contextlib import contextmanager
from collections.abc import Callable, Iterator

import pytest
import torch
import zstandard

from testbed.codec.merge import avg_pool_to_density, merge_steps, merge_to_density
from testbed.codec.wire import decode_message, encode_message
from testbed.models.encoder import tiny_encoder
from testbed.tokenizer.pipeline import tokenize
from testbed.tokenizer.sampling import KEYFRAME_SAMPLER
from tests.bench.conftest import CPU


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


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread, so this thread's CPU time (the CPU clock) is all the work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.benchmark(group="codec")
def test_zstd_levels_and_shuffle(benchmark, record_ratio, compare_speed, videos):
    enc = tiny_encoder()
    video_tokens = torch.cat([tokenize(videos[v], KEYFRAME_SAMPLER, enc, time.perf_counter).tokens
                              for v in ("long", "medium", "bikes")]).half()
    random_tokens = torch.randn(256, 16, 1024, generator=torch.Generator().manual_seed(0)).half()
    real = _table("tiny-encoder tokens", video_tokens)
    rand = _table("random-normal tokens", random_tokens)
    shuffle_gain = rand[(3, False)][0] / rand[(3, True)][0]
    record_ratio("zstd_shuffle_size_gain_random_fp16", shuffle_gain,
                 "random-normal fp16 tokens, zstd level 3: compressed size without / with byte shuffle")
    record_ratio("zstd_shuffle_size_gain_encoder_fp16", real[(3, False)][0] / real[(3, True)][0],
                 "tiny-encoder fp16 tokens, zstd level 3: compressed size without / with byte shuffle")
    speed = compare_speed("zstd_level1_over_level9_compress_speed",
                          "random-normal fp16 tokens, shuffled: encode time at zstd level 9 / at level 1 (CPU time)",
                          lambda: encode_message(random_tokens, level=9, shuffle=True),
                          lambda: encode_message(random_tokens, level=1, shuffle=True), rounds=5, clock=CPU)
    assert shuffle_gain > 1.0  # grouping exponent bytes helps even random fp16
    assert speed.value > 1.0
    assert rand[(3, True)][0] > 0.8  # random tokens barely compress


@pytest.mark.benchmark(group="codec")
def test_decode_message_vs_plain_zstd(benchmark, compare_speed):
    """decode_message (zstd, CRC-32 over all, unshuffle, finite check) within 2x of zstd alone on its bytes."""
    tokens = torch.randn(256, 16, 1024, generator=torch.Generator().manual_seed(0)).half()
    data = encode_message(tokens, "which colour?", level=3, shuffle=True)
    assert torch.equal(decode_message(data).tokens, tokens)
    plain = zstandard.ZstdDecompressor()
    compare_speed("zstd_decompress_over_decode_message_fp16",
                  "8 MB of random-normal fp16 tokens, shuffled, level 3: plain zstd decompression time / "
                  "decode_message time (CPU time; gate >= 0.5: decoding within 2x of zstd)",
                  lambda: plain.decompress(data), lambda: decode_message(data), rounds=15, clock=CPU,
                  at_least=0.5)


def _floor(x: torch.Tensor, density: int) -> Callable[[], object]:
    """The merge's own similarity matmuls: one bmm of normalized keys per bipartite step, at its shapes."""
    f, n, d = x.shape
    g = torch.Generator().manual_seed(7)
    keys = []
    for r in merge_steps(n, density):
        a, b = torch.randn(f, (n + 1) // 2, d, generator=g), torch.randn(f, n // 2, d, generator=g)
        keys.append((a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)))
        n -= r
    return lambda: [a @ b.transpose(1, 2) for a, b in keys]


@pytest.mark.benchmark(group="codec")
@pytest.mark.parametrize("density", [2, 16, 32])
def test_merge_vs_its_matmul_floor(benchmark, compare_speed, density):
    x = torch.randn(8, 784, 1024, generator=torch.Generator().manual_seed(1))
    with one_torch_thread():
        compare_speed(f"matmul_floor_over_tome_merge_a{density}",
                      f"8 frames of 784 tokens at dim 1024 merged to {density}: time of the merge's own "
                      "similarity matmuls / ToMe merge time (CPU time, one thread; gate >= 0.5: merge within 2x)",
                      _floor(x, density), lambda: merge_to_density(x, density), rounds=7, clock=CPU, at_least=0.5)


@pytest.mark.benchmark(group="codec")
@pytest.mark.parametrize("density", [2, 4, 8, 16, 32])
def test_merge_time_per_frame(benchmark, compare_speed, density):
    x = torch.randn(8, 784, 1024, generator=torch.Generator().manual_seed(1))
    with one_torch_thread():
        m = compare_speed(f"tome_speed_vs_avgpool_a{density}",
                          f"8 frames of 784 tokens at dim 1024 to {density}: average pooling time / ToMe merge time "
                          "(CPU time, one thread)",
                          lambda: avg_pool_to_density(x, density), lambda: merge_to_density(x, density), rounds=5,
                          clock=CPU)
    tome_s = benchmark.stats.stats.min
    print(f"  merge 784 -> {density} at dim 1024: {tome_s / 8 * 1e3:.2f} ms/frame (ToMe, wall time of one call)")
    benchmark.extra_info["ms_per_frame"] = tome_s / 8 * 1e3
    assert m.value < 1.0  # matching costs more than pooling
