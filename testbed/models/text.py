"""Text tokenizers behind one small interface: text in, token ids out.

`ByteTokenizer` maps UTF-8 bytes to ids 0-255 (plus a few specials): it needs no files, so tiny
and real-size models built from a config use it (as nanochat's tests use a byte tokenizer). A
local checkpoint brings its own tokenizer, loaded with transformers from the folder, offline.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from testbed.errors import ConfigError


class TextTokenizer(ABC):
    """Text to ids; `bos_id` (or None) starts a prompt."""

    vocab_size: int
    bos_id: int | None

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of `text`, without special tokens."""

    def single_id(self, text: str) -> int:
        """The one id of `text` (an option letter); an error if it takes several tokens."""
        ids = self.encode(text)
        if len(ids) != 1:
            raise ConfigError("models", f"the tokenizer splits {text!r} into {len(ids)} tokens; option letters "
                                        "must be single tokens")
        return ids[0]


class ByteTokenizer(TextTokenizer):
    """UTF-8 bytes as ids 0-255; 256 pads, 257 begins a prompt."""

    PAD, BOS = 256, 257

    def __init__(self) -> None:
        self.vocab_size = 258
        self.bos_id = self.BOS

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


class HFTokenizer(TextTokenizer):
    """A transformers tokenizer loaded from a local folder (never downloaded)."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok
        self.vocab_size = len(tok)
        self.bos_id = tok.bos_token_id

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    @classmethod
    def load(cls, folder: Path) -> "HFTokenizer":
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(folder, local_files_only=True))


BYTES_MARKER = "byte_tokenizer.json"
"""A model folder with this file uses ByteTokenizer instead of a transformers tokenizer."""


def load_tokenizer(folder: Path) -> TextTokenizer:
    """The tokenizer saved next to a model: bytes if the marker is there, else transformers'."""
    if (folder / BYTES_MARKER).is_file():
        return ByteTokenizer()
    return HFTokenizer.load(folder)


def save_tokenizer(tok: TextTokenizer, folder: Path) -> None:
    if isinstance(tok, ByteTokenizer):
        (folder / BYTES_MARKER).write_text('{"kind": "bytes", "pad": 256, "bos": 257}\n')
    elif isinstance(tok, HFTokenizer):
        tok.tok.save_pretrained(folder)
    else:  # pragma: no cover - only the two kinds exist
        raise TypeError(f"cannot save {type(tok).__name__}")
