"""Size model for what crosses the link, shared by the sim and the live interpreter.

Token message bytes = zstd frame overhead + (wire header + frames x density x dim x dtype bytes)
x compression ratio, where the ratio is measured on real tokens with `compression_ratio`.
"""

from __future__ import annotations

import functools
import math
from typing import Any
from dataclasses import dataclass

from testbed.codec.layout import HEADER_BYTES

DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
ZSTD_FRAME_BYTES = 22
"""Upper bound of a zstd frame header with content size (magic 4, descriptor 1-2, window 1,
content size up to 8), the last block header (3 bytes) and the content checksum (4)."""
REPLY_BYTES = 256
"""An answer message: option letter, option logits and timings, as UTF-8/float32 fields."""


@dataclass(frozen=True, slots=True)
class TokenFormat:
    """How vision tokens are represented on the wire."""

    dim: int = 1024  # UMT-L feature width, VideoChat-Flash's vision encoder (seed 000 SII-A)
    dtype: str = "fp16"
    compression_ratio: float = 0.85  # zstd level 3 + byte-shuffle on fp16 tokens (make bench, codec group)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype {self.dtype!r} not one of {sorted(DTYPE_BYTES)}")
        if self.dim < 1 or not 0 < self.compression_ratio <= 1.5:
            raise ValueError(f"invalid token format {self}")


def raw_token_bytes(frames: int, density: int, fmt: TokenFormat) -> int:
    """Uncompressed bytes of `frames` x `density` tokens of width fmt.dim."""
    return frames * density * fmt.dim * DTYPE_BYTES[fmt.dtype]


def wire_token_bytes(frames: int, density: int, fmt: TokenFormat) -> int:
    """Bytes of a token message (testbed.codec.wire) for merged tokens, question excluded."""
    return ZSTD_FRAME_BYTES + math.ceil((HEADER_BYTES + raw_token_bytes(frames, density, fmt)) * fmt.compression_ratio)


def compression_ratio(tokens: Any, level: int = 3, shuffle: bool = True) -> float:
    """Measured compressed/raw ratio of real tokens (a torch tensor) in the wire format."""
    from testbed.codec.wire import encode_message  # torch: only when measuring real tokens

    raw = HEADER_BYTES + tokens.numel() * tokens.element_size()
    return (len(encode_message(tokens, level=level, shuffle=shuffle)) - ZSTD_FRAME_BYTES) / raw


def text_bytes(question: str, options: tuple[str, ...] | list[str]) -> int:
    """UTF-8 bytes of the question and its options (sent raw, not pre-tokenized: seed 000 SIV)."""
    if type(options) is tuple:
        return _text_bytes(question, options)
    return len(question.encode()) + sum(len(o.encode()) + 1 for o in options)


@functools.lru_cache(maxsize=1 << 16)
def _text_bytes(question: str, options: tuple[str, ...]) -> int:
    """`text_bytes` memoized (the sim asks it of the same prompts for every policy and Offload)."""
    return len(question.encode()) + sum(len(o.encode()) + 1 for o in options)


def text_tokens(question: str, options: tuple[str, ...] | list[str], prompt_overhead: int = 64) -> int:
    """LM text tokens for a multiple-choice prompt: a fixed system prompt plus ~4 chars per token."""
    return prompt_overhead + math.ceil(text_bytes(question, options) / 4)
