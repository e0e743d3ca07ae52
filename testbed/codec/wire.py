"""Wire format for vision tokens: a versioned fixed header, raw little-endian array bytes
(optionally byte-shuffled), and the question as UTF-8, all in one zstd frame that records its
content size. No pickle. Decoding trusts nothing: sizes are checked before anything is allocated,
and every problem raises a CodecError subclass.

Layout of the decompressed content (little-endian):
  magic "VTOK" | version u8 | dtype u8 | flags u8 | reserved u8 (0) | frames u32 | density u32 |
  dim u32 | payload bytes u64 | text bytes u32 | crc32 u32 | payload | text
The crc32 covers every other byte (the header before it, the payload, the text), the zstd frame
carries its own content checksum, and decoded tokens must be finite. Version 1 (crc over payload
and text only, no zstd checksum) is refused with a version error.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import zstandard

try:  # zlib-ng's crc32 is the same CRC-32, over ten times faster (carry-less multiply); zlib's if absent
    from zlib_ng.zlib_ng import crc32 as _crc32
except ImportError:  # pragma: no cover - zlib-ng is a dependency
    from zlib import crc32 as _crc32

from testbed.codec.layout import FLAG_SHUFFLE, HEADER, HEADER_BYTES, MAGIC, VERSION
from testbed.errors import TestbedError

__all__ = ["FLAG_SHUFFLE", "HEADER", "HEADER_BYTES", "MAGIC", "VERSION", "CodecError", "NonFiniteError",
           "TokenMessage", "decode_message", "encode_message", "message_crc"]

DTYPES = {1: torch.float16, 2: torch.bfloat16, 3: torch.float32}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}
DEFAULT_MAX_BYTES = 512 * 2**20
MAX_SHAPE = (1 << 20, 1 << 16, 1 << 16)
"""The largest frames, density and dim a message may claim: a product of huge sizes with a zero among
them would pass the byte count and overflow a tensor's strides."""


class CodecError(TestbedError):
    """Base of every error a received message can cause."""


class FormatError(CodecError):
    """Not a token message: bad zstd frame, magic, dtype, flags or a truncated header."""


class VersionError(CodecError):
    """A wire-format version this testbed does not read."""


class OversizeError(CodecError):
    """The message claims more bytes than the receiver accepts."""


class LengthMismatchError(CodecError):
    """The header's shape and lengths disagree with each other or with the bytes present."""


class ChecksumError(CodecError):
    """The message does not match its checksum."""


class NonFiniteError(CodecError):
    """The tokens hold NaN or infinite values."""


def message_crc(header: bytes | memoryview, payload: bytes | memoryview, text: bytes | memoryview) -> int:
    """crc32 of the header up to its crc field, then the payload, then the text."""
    return _crc32(text, _crc32(payload, _crc32(header[:HEADER_BYTES - 4])))


@dataclass(frozen=True)
class TokenMessage:
    """Tokens (frames, density, dim) and the question they answer."""

    tokens: torch.Tensor
    question: str

    @property
    def density(self) -> int:
        return int(self.tokens.shape[1])


def shuffle_bytes(raw: bytes | np.ndarray, itemsize: int) -> bytes:
    """Group byte k of every element together (all low bytes, then all high bytes, ...):
    exponent bytes of floats sit side by side and compress better."""
    arr = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw
    return arr.reshape(-1, itemsize).T.tobytes() if itemsize > 1 else arr.tobytes()


def unshuffle_bytes(raw: bytes | memoryview | np.ndarray, itemsize: int) -> bytes:
    """Inverse of shuffle_bytes."""
    return _unshuffled(np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw,
                       itemsize).tobytes()


_UINT: dict[int, np.dtype[Any]] = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


def _unshuffled(arr: np.ndarray, itemsize: int) -> np.ndarray:
    """A new writable uint8 array: the inverse of shuffle_bytes. Elements of 2 or 4 bytes are rebuilt
    as little-endian integers from their byte planes (a strided byte transpose is ten times slower)."""
    if itemsize == 1:
        return arr.copy()
    planes = arr.reshape(itemsize, -1)
    uint = _UINT.get(itemsize)
    if uint is None:
        return np.ascontiguousarray(planes.T).reshape(-1)
    out = np.multiply(planes[itemsize - 1], 256, dtype=uint)
    for k in range(itemsize - 2, -1, -1):
        if k < itemsize - 2:
            out <<= 8
        np.add(out, planes[k], out=out, casting="unsafe")  # the low byte is 0: adding is or-ing
    return out.view(np.uint8)


_EXPONENT = {torch.float16: 0x7C00, torch.bfloat16: 0x7F80, torch.float32: 0x7F800000}
"""Exponent bits of each dtype: a value is NaN or infinite exactly when all of them are set."""


def _maybe_non_finite(raw: np.ndarray, dtype: torch.dtype, shuffled: bool) -> bool:
    """False when no value of the payload `raw` (uint8) can be NaN or infinite, from the exponent bits
    alone: in a shuffled payload from the top byte plane only (a superset test for bf16 and fp32, whose
    exponent spills into the next byte plane); True sends the caller to the exact check."""
    mask = _EXPONENT[dtype]
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if shuffled:
        top = raw.reshape(itemsize, -1)[itemsize - 1]
        byte = mask >> (8 * (itemsize - 1))
        return int(np.bitwise_or(top, 0xFF ^ byte).max()) == 0xFF  # (top & byte) == byte somewhere
    return bool(np.any((raw.view(_UINT[itemsize]) & mask) == mask))


def _le_array(t: torch.Tensor) -> np.ndarray:
    """The tensor's little-endian bytes as a uint8 array (no copy on little-endian hosts)."""
    if t.numel() == 0:  # (an empty tensor's strides may be anything)
        return np.empty(0, dtype=np.uint8)
    arr = t.detach().contiguous().cpu().view(torch.uint8).numpy().reshape(-1)
    if sys.byteorder != "little" and t.element_size() > 1:  # pragma: no cover - big-endian hosts
        arr = arr.reshape(-1, t.element_size())[:, ::-1].reshape(-1).copy()
    return arr


def encode_message(tokens: torch.Tensor, question: str = "", *, level: int = 3, shuffle: bool = True) -> bytes:
    """Serialise (frames, density, dim) tokens of dtype fp16, bf16 or fp32 and a question."""
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be (frames, density, dim), got shape {tuple(tokens.shape)}")
    if tokens.dtype not in DTYPE_CODES:
        raise ValueError(f"dtype {tokens.dtype} not one of fp16, bf16, fp32")
    arr = _le_array(tokens)
    payload = memoryview(shuffle_bytes(arr, tokens.element_size())) if shuffle else memoryview(arr.data)
    text = question.encode("utf-8")
    frames, density, dim = tokens.shape
    fields = (MAGIC, VERSION, DTYPE_CODES[tokens.dtype], FLAG_SHUFFLE if shuffle else 0, 0, frames, density, dim,
              arr.nbytes, len(text))
    header = HEADER.pack(*fields, message_crc(HEADER.pack(*fields, 0), payload, text))
    cobj = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=True).compressobj(
        size=len(header) + arr.nbytes + len(text))
    return b"".join((cobj.compress(header), cobj.compress(payload), cobj.compress(text), cobj.flush()))


def decode_message(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> TokenMessage:
    """Parse a message from an untrusted peer, allocating at most `max_bytes` for its content."""
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise FormatError(f"not a zstd frame ({exc})") from None
    if size < 0 or size in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
        raise FormatError("the zstd frame does not record its content size")
    if size > max_bytes:
        raise OversizeError(f"message claims {size} bytes; the limit is {max_bytes}")
    if size < HEADER_BYTES:
        raise FormatError(f"message of {size} bytes is shorter than the {HEADER_BYTES}-byte header")
    try:
        content = zstandard.ZstdDecompressor().decompress(data, max_output_size=max_bytes, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise FormatError(f"corrupt zstd frame ({exc})") from None
    if len(content) != size:
        raise LengthMismatchError(f"frame declared {size} bytes but held {len(content)}")
    magic, version, code, flags, reserved, frames, density, dim, n_payload, n_text, crc = \
        HEADER.unpack_from(content)
    if magic != MAGIC:
        raise FormatError("bad magic: not a token message")
    if version != VERSION:
        raise VersionError(f"wire format version {version}; this testbed reads {VERSION}")
    if code not in DTYPES:
        raise FormatError(f"unknown dtype code {code}")
    if flags & ~FLAG_SHUFFLE:
        raise FormatError(f"unknown flags {flags:#x}")
    if reserved:
        raise FormatError(f"reserved byte is {reserved:#x}, not 0")
    if frames > MAX_SHAPE[0] or density > MAX_SHAPE[1] or dim > MAX_SHAPE[2]:
        largest = "x".join(map(str, MAX_SHAPE))
        raise FormatError(f"shape {frames}x{density}x{dim} is past the largest this reads, {largest}")
    dtype = DTYPES[code]
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if frames * density * dim * itemsize != n_payload:
        raise LengthMismatchError(f"shape {frames}x{density}x{dim} of {dtype} needs "
                                  f"{frames * density * dim * itemsize} bytes, header says {n_payload}")
    if HEADER_BYTES + n_payload + n_text != len(content):
        raise LengthMismatchError(f"header promises {HEADER_BYTES + n_payload + n_text} bytes, "
                                  f"message holds {len(content)}")
    view = memoryview(content)
    payload = view[HEADER_BYTES:HEADER_BYTES + n_payload]
    text = view[HEADER_BYTES + n_payload:]
    shuffled = bool(flags & FLAG_SHUFFLE)
    raw = np.frombuffer(payload, dtype=np.uint8)
    suspect = n_payload > 0 and _maybe_non_finite(raw, dtype, shuffled)  # first: zstd wrote the top plane last
    if message_crc(view, payload, text) != crc:
        raise ChecksumError("checksum mismatch (header, payload or question changed in transit)")
    try:
        question = bytes(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"question is not UTF-8 ({exc})") from None
    if n_payload == 0:
        return TokenMessage(torch.zeros((frames, density, dim), dtype=dtype), question)
    arr = _unshuffled(raw, itemsize) if shuffled else raw.copy()
    if sys.byteorder != "little" and itemsize > 1:  # pragma: no cover - big-endian hosts
        arr = arr.reshape(-1, itemsize)[:, ::-1].reshape(-1).copy()
    flat = torch.from_numpy(arr).view(dtype)
    if suspect and not bool(torch.isfinite(flat).all()):
        raise NonFiniteError(f"{int((~torch.isfinite(flat)).sum())} of {flat.numel()} token values are NaN or "
                             "infinite")
    return TokenMessage(flat.reshape(frames, density, dim), question)
