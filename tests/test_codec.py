"""Token codec: merging, the wire format's round trip, and a decoder that survives any input."""

import zlib
from datetime import timedelta

import pytest
import torch
import zstandard
from hypothesis import HealthCheck, given, settings, strategies as st

from testbed.codec.merge import avg_pool_to_density, merge_to_density
from testbed.codec.size import TokenFormat, compression_ratio, wire_token_bytes
from testbed.codec.wire import (HEADER, HEADER_BYTES, MAGIC, VERSION, ChecksumError, CodecError, FormatError,
                                LengthMismatchError, NonFiniteError, OversizeError, VersionError, decode_message,
                                encode_message, message_crc, shuffle_bytes, unshuffle_bytes)

DTYPES = [torch.float16, torch.bfloat16, torch.float32]
INT_VIEW = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32}


def random_bits(shape, dtype, seed):
    """Tensors with arbitrary finite bit patterns (subnormals and -0 included; a NaN or infinity, which
    the decoder refuses, becomes +0)."""
    g = torch.Generator().manual_seed(seed)
    ints = torch.randint(-2**15, 2**15, shape, generator=g, dtype=torch.int32)
    if dtype == torch.float32:
        ints = ints * 65536 + torch.randint(0, 2**16, shape, generator=g, dtype=torch.int32)
        t = ints.view(torch.float32)
    else:
        t = ints.to(torch.int16).view(dtype)
    return torch.where(torch.isfinite(t), t, torch.zeros((), dtype=dtype))


def bits_equal(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(INT_VIEW[a.dtype]),
                                                                     b.view(INT_VIEW[b.dtype]))


# -- round trip -----------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(frames=st.integers(0, 6), density=st.integers(1, 9), dim=st.integers(1, 40), dtype=st.sampled_from(DTYPES),
       shuffle=st.booleans(), level=st.sampled_from([1, 3, 9]), question=st.text(max_size=60),
       seed=st.integers(0, 2**16))
def test_round_trip_is_bit_exact(frames, density, dim, dtype, shuffle, level, question, seed):
    t = random_bits((frames, density, dim), dtype, seed)
    msg = decode_message(encode_message(t, question, level=level, shuffle=shuffle))
    assert bits_equal(msg.tokens, t) and msg.question == question and msg.density == density


@given(st.binary(max_size=64), st.sampled_from([1, 2, 4]))
def test_shuffle_round_trip(raw, itemsize):
    raw = raw[: len(raw) - len(raw) % itemsize]
    assert unshuffle_bytes(shuffle_bytes(raw, itemsize), itemsize) == raw


def test_shuffle_groups_bytes_by_hand():
    assert shuffle_bytes(bytes([1, 2, 3, 4, 5, 6]), 2) == bytes([1, 3, 5, 2, 4, 6])


def test_frame_records_its_content_size():
    data = encode_message(torch.zeros(2, 3, 4, dtype=torch.float16), "q")
    assert zstandard.frame_content_size(data) == HEADER_BYTES + 2 * 3 * 4 * 2 + 1


# -- hostile input --------------------------------------------------------------------------------

VALID = encode_message(torch.randn(3, 4, 16).half(), "which option?")


def _decode_bounded(data: bytes):
    """Decode with a 1 MiB allocation limit: memory is bounded by max_bytes, a hang by the
    hypothesis deadline (seconds, for inputs that take microseconds)."""
    try:
        decode_message(data, max_bytes=1 << 20)
    except CodecError:
        pass


HANG_GUARD = timedelta(seconds=5)


@settings(max_examples=1000, deadline=HANG_GUARD, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_codec_errors(data):
    _decode_bounded(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(VALID) - 1))
def test_truncated_messages_raise_only_codec_errors(cut):
    with pytest.raises(CodecError):
        decode_message(VALID[:cut])


@settings(max_examples=1000, deadline=HANG_GUARD)
@given(st.integers(0, len(VALID) * 8 - 1))
def test_bit_flips_raise_only_codec_errors(bit):
    data = bytearray(VALID)
    data[bit // 8] ^= 1 << (bit % 8)
    _decode_bounded(bytes(data))


def _frame(content: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=1).compress(content)


def _header(body: bytes = bytes(8), **kw):
    """A header for `body` (the payload, no question) with its crc, then any field overridden."""
    fields = dict(magic=MAGIC, version=VERSION, dtype=1, flags=0, res=0, frames=1, density=2, dim=2, n_payload=8,
                  n_text=0, crc=0)
    fields.update({k: v for k, v in kw.items() if k != "crc"})
    fields["crc"] = kw.get("crc", message_crc(HEADER.pack(*fields.values()), body, b""))
    return HEADER.pack(*fields.values())


def test_specific_errors():
    body = bytes(8)
    assert decode_message(_frame(_header() + body)).tokens.shape == (1, 2, 2)
    with pytest.raises(VersionError):
        decode_message(_frame(_header(version=9) + body))
    with pytest.raises(FormatError, match="magic"):
        decode_message(_frame(_header(magic=b"NOPE") + body))
    with pytest.raises(FormatError, match="dtype"):
        decode_message(_frame(_header(dtype=7) + body))
    with pytest.raises(LengthMismatchError):
        decode_message(_frame(_header(frames=10**6) + body))  # claims far more than present
    with pytest.raises(LengthMismatchError):
        decode_message(_frame(_header() + body + b"extra"))
    with pytest.raises(ChecksumError):
        decode_message(_frame(_header(crc=1) + body))
    with pytest.raises(FormatError, match="content size"):
        c = zstandard.ZstdCompressor(write_content_size=False).compressobj()
        decode_message(c.compress(_header() + body) + c.flush())
    with pytest.raises(FormatError):
        decode_message(VALID + b"trailing")
    with pytest.raises(FormatError, match="past the largest"):  # 0 bytes claimed, but strides would overflow
        decode_message(_frame(_header(b"", frames=2**32 - 1, density=2**32 - 1, dim=0, n_payload=0)))


def test_every_bit_of_the_content_and_of_the_frame_is_covered():
    """Each single bit flip in the decompressed content (header, reserved byte and crc included; the
    frame rebuilt around it) is refused, and so is each in the zstd frame as sent, but for the one bit
    zstd's format leaves unused (bit 4 of the frame header descriptor, byte 4), which changes nothing:
    none decodes to other tokens."""
    content = zstandard.ZstdDecompressor().decompress(VALID)
    for bit in range(len(content) * 8):
        flipped = bytearray(content)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CodecError):
            decode_message(_frame(bytes(flipped)))
    want = decode_message(VALID)
    for bit in range(len(VALID) * 8):
        flipped = bytearray(VALID)
        flipped[bit // 8] ^= 1 << (bit % 8)
        if bit == 4 * 8 + 4:
            got = decode_message(bytes(flipped))
            assert torch.equal(got.tokens, want.tokens) and got.question == want.question
            continue
        with pytest.raises(CodecError):
            decode_message(bytes(flipped))


def test_a_version_1_message_gets_a_version_error():
    body = bytes(8)
    with pytest.raises(VersionError, match="version 1; this testbed reads 2"):
        decode_message(_frame(_header(body, version=1, crc=zlib.crc32(body)) + body))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_tokens_are_refused(bad):
    tokens = torch.zeros(2, 3, 4).half()
    tokens[1, 2, 3] = bad
    with pytest.raises(NonFiniteError, match="1 of 24"):
        decode_message(encode_message(tokens))


def test_oversize_claim_is_refused_before_allocating(monkeypatch):
    bomb = _frame(bytes(300_000_000))  # 300 MB of zeros in a few kB
    assert len(bomb) < 100_000

    def no_decompressor(*a, **k):
        raise AssertionError("decompression started before the size check")

    monkeypatch.setattr(zstandard, "ZstdDecompressor", no_decompressor)
    with pytest.raises(OversizeError):
        decode_message(bomb, max_bytes=64 * 2**20)


# -- merging --------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(frames=st.integers(1, 4), n=st.integers(1, 80), dim=st.integers(1, 24), data=st.data())
def test_merge_gives_exactly_density_tokens_and_keeps_the_weighted_mean(frames, n, dim, data):
    density = data.draw(st.integers(1, n))
    x = torch.randn(frames, n, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(n * 31 + dim))
    y, sizes = merge_to_density(x, density)
    assert y.shape == (frames, density, dim) and sizes.shape == (frames, density)
    assert torch.allclose(sizes.sum(1), torch.full((frames,), float(n), dtype=sizes.dtype))
    weighted = (y * sizes[..., None]).sum(1) / sizes.sum(1, keepdim=True)
    assert torch.allclose(weighted, x.mean(1), atol=1e-9)


def test_merge_by_hand_joins_duplicates():
    v, w = [1.0, 0.0], [0.0, 1.0]
    y, sizes = merge_to_density(torch.tensor([[v, v, w, w]]), 2)
    assert y.tolist() == [[v, w]] and sizes.tolist() == [[2.0, 2.0]]


def _reference_step(x, sizes, r, normalise_first=False):
    """merge.py's bipartite step before it was rewritten for speed (issue 24), kept as the reference:
    verbatim with `normalise_first` (ToMe's form: the keys normalised, then their matmul), else with the
    cosine scaled after the matmul as merge.py now computes it."""
    f, n, d = x.shape
    a, b = x[:, ::2], x[:, 1::2]
    sa, sb = sizes[:, ::2], sizes[:, 1::2]
    if normalise_first:
        metric = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        scores = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)
        best, best_idx = scores.max(dim=-1)
    else:
        norm = x.norm(dim=-1).clamp_min(1e-12)
        best, best_idx = ((a @ b.transpose(1, 2)) / norm[:, None, 1::2]).max(dim=-1)
        best = best / norm[:, ::2]
    order = torch.argsort(best, dim=-1, descending=True, stable=True)
    src, keep = order[:, :r], order[:, r:]
    dst = best_idx.gather(1, src)
    w_src = sa.gather(1, src)
    b_sum = (b * sb[..., None]).scatter_add(1, dst[..., None].expand(-1, -1, d),
                                            a.gather(1, src[..., None].expand(-1, -1, d)) * w_src[..., None])
    sb_new = sb.scatter_add(1, dst, w_src)
    b_new = b_sum / sb_new[..., None]
    keep_sorted, _ = keep.sort(dim=-1)
    a_keep = a.gather(1, keep_sorted[..., None].expand(-1, -1, d))
    return torch.cat([a_keep, b_new], dim=1), torch.cat([sa.gather(1, keep_sorted), sb_new], dim=1)


def _reference_merge(x, density, sizes=None, normalise_first=False):
    work = x if x.dtype == torch.float64 else x.float()
    s = torch.ones(x.shape[:2], dtype=work.dtype) if sizes is None else sizes.to(work.dtype)
    while work.shape[1] > density:
        cur = work.shape[1]
        work, s = _reference_step(work, s, min(cur - density, (cur + 1) // 2), normalise_first)
    return work.to(x.dtype), s


@pytest.mark.parametrize("shape,density", [((8, 784, 1024), 16), ((8, 784, 1024), 2), ((3, 577, 64), 32),
                                           ((2, 31, 4), 1), ((1, 9, 2), 9)])
def test_merge_equals_the_reference_bit_for_bit(shape, density):
    """The rewritten merge gives the reference's tokens and sizes exactly: random tokens, random sizes,
    small integers (many exact ties), half and double precision."""
    g = torch.Generator().manual_seed(shape[1] + density)
    cases = [(torch.randn(*shape, generator=g), None),
             (torch.randn(*shape, generator=g), torch.randint(1, 6, shape[:2], generator=g).float()),
             (torch.randint(-2, 3, shape, generator=g).float(), None),
             (torch.randn(*shape, generator=g).half(), None),
             (torch.randn(*shape, generator=g, dtype=torch.float64), torch.randint(1, 4, shape[:2], generator=g))]
    for x, sizes in cases:
        want, got = _reference_merge(x, density, sizes), merge_to_density(x, density, sizes)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        if density < shape[1]:  # a new tensor each call, not a view of the merge's reused workspace
            assert got[0].data_ptr() != merge_to_density(x, density, sizes)[0].data_ptr()


@pytest.mark.parametrize("shape,density", [((8, 784, 1024), 16), ((3, 577, 64), 32), ((2, 31, 4), 1)])
def test_merge_equals_tomes_normalise_first_form_on_random_tokens(shape, density):
    """Scaling the cosine after the matmul merges as ToMe's form (normalise the keys, then their
    matmul) does, bit for bit, where no two candidates tie to within rounding: random tokens and sizes."""
    g = torch.Generator().manual_seed(shape[1] * density)
    for sizes in (None, torch.randint(1, 6, shape[:2], generator=g).float()):
        x = torch.randn(*shape, generator=g)
        want, got = _reference_merge(x, density, sizes, normalise_first=True), merge_to_density(x, density, sizes)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@settings(max_examples=80, deadline=None)
@given(frames=st.integers(1, 3), n=st.integers(1, 90), dim=st.integers(1, 12), seed=st.integers(0, 2**16),
       data=st.data())
def test_merge_equals_the_reference_on_any_shape(frames, n, dim, seed, data):
    density = data.draw(st.integers(1, n))
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-3, 4, (frames, n, dim), generator=g).float() if seed % 2 else torch.randn(frames, n, dim,
                                                                                                  generator=g)
    sizes = torch.randint(1, 5, (frames, n), generator=g).float() if seed % 3 == 0 else None
    want, got = _reference_merge(x, density, sizes), merge_to_density(x, density, sizes)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_merge_is_deterministic_and_checks_density():
    x = torch.randn(3, 784, 32)
    assert torch.equal(merge_to_density(x, 16)[0], merge_to_density(x, 16)[0])
    assert merge_to_density(x.half(), 8)[0].dtype == torch.float16
    with pytest.raises(ValueError):
        merge_to_density(x, 785)
    with pytest.raises(ValueError):
        avg_pool_to_density(x, 0)


def test_avg_pool_by_hand():
    x = torch.arange(8, dtype=torch.float32).view(1, 4, 2)  # tokens (0,1) (2,3) (4,5) (6,7)
    assert avg_pool_to_density(x, 2).tolist() == [[[1.0, 2.0], [5.0, 6.0]]]


# -- size model -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,name", [(torch.float16, "fp16"), (torch.float32, "fp32")])
def test_size_model_predicts_the_codec(dtype, name):
    tokens = torch.randn(64, 16, 256).to(dtype)
    ratio = compression_ratio(tokens)
    fmt = TokenFormat(dim=256, dtype=name, compression_ratio=ratio)
    actual = len(encode_message(tokens))
    assert wire_token_bytes(64, 16, fmt) == pytest.approx(actual, abs=1)
    other = torch.randn(64, 16, 256, generator=torch.Generator().manual_seed(5)).to(dtype)
    assert wire_token_bytes(64, 16, fmt) == pytest.approx(len(encode_message(other)), rel=0.01)
