"""Size model for what crosses the link, shared by the sim and the live interpreter.

Token payload bytes = frames x tokens/frame x dim x dtype bytes x compression ratio + header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
HEADER_BYTES = 64
"""Fixed wire header (magic, version, dtype, shape, density, frames, lengths, checksum)."""
REPLY_BYTES = 256
"""An answer message: option letter, option logits and timings, as UTF-8/float32 fields."""


@dataclass(frozen=True, slots=True)
class TokenFormat:
    """How vision tokens are represented on the wire."""

    dim: int = 1024  # UMT-L feature width, VideoChat-Flash's vision encoder (seed 000 SII-A)
    dtype: str = "fp16"
    compression_ratio: float = 0.92  # zstd on fp16 features; assumed until the codec issue measures it

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype {self.dtype!r} not one of {sorted(DTYPE_BYTES)}")
        if self.dim < 1 or not 0 < self.compression_ratio <= 1.5:
            raise ValueError(f"invalid token format {self}")


def raw_token_bytes(frames: int, density: int, fmt: TokenFormat) -> int:
    """Uncompressed bytes of `frames` x `density` tokens of width fmt.dim."""
    return frames * density * fmt.dim * DTYPE_BYTES[fmt.dtype]


def wire_token_bytes(frames: int, density: int, fmt: TokenFormat) -> int:
    """Bytes sent for merged tokens after zstd, header included."""
    return HEADER_BYTES + math.ceil(raw_token_bytes(frames, density, fmt) * fmt.compression_ratio)


def text_bytes(question: str, options: tuple[str, ...] | list[str]) -> int:
    """UTF-8 bytes of the question and its options (sent raw, not pre-tokenized: seed 000 SIV)."""
    return len(question.encode()) + sum(len(o.encode()) + 1 for o in options)


def text_tokens(question: str, options: tuple[str, ...] | list[str], prompt_overhead: int = 64) -> int:
    """LM text tokens for a multiple-choice prompt: a fixed system prompt plus ~4 chars per token."""
    return prompt_overhead + math.ceil(text_bytes(question, options) / 4)
