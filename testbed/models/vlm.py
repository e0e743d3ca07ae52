"""What every model pair is, whichever preset made it: `OptionModel` (one side: option logits for
vision tokens) and `VLMPair` (the two sides and their encoders). Implementations live beside it:
the tiny and real-size LM-backed pair (pair.py), the pocket heads (pocket.py), checkpoint folders
(checkpoint_vlm.py); `testbed.models.pair.make_pair` picks one by preset."""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from testbed.models.encoder import VisionEncoder

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class OptionModel(ABC):
    """One side of the pair: scores the options of a multiple-choice question about vision tokens."""

    @abstractmethod
    def option_logits(self, vision: torch.Tensor, question: str, options: tuple[str, ...] | list[str]) -> np.ndarray:
        """(K,) float64 logits of the K options, for (F, a, D) vision tokens of F frames."""

    @abstractmethod
    def text_tokens(self, question: str, options: tuple[str, ...] | list[str]) -> int:
        """Prompt tokens besides the vision tokens."""

    def parameters(self) -> int:
        """Trainable parameters besides the encoder's (0 if unknown)."""
        return 0

    @property
    def vision_width(self) -> int | None:
        """The vision token width this model's projector takes (None: any, or unknown)."""
        return None

    def image_attention(self, vision: torch.Tensor, question: str,
                        options: tuple[str, ...] | list[str]) -> np.ndarray | None:
        """(a,) how much the answer attends to each of the first frame's a vision tokens, from (F, a, D)
        tokens (seed 003's ViCrop map is this under the question over this under a generic prompt);
        None for a model with no attention over image tokens."""
        return None

    def roi_map(self, vision: torch.Tensor, question: str, options: tuple[str, ...] | list[str]) -> np.ndarray | None:
        """(a,) the map over the first frame's a vision tokens whose peak names the region of interest
        (seed 003): ViCrop's relative attention, the question's attention over a generic prompt's;
        None for a model without attention over image tokens."""
        from testbed.crop import GENERIC_PROMPT, relative_attention

        asked = self.image_attention(vision, question, options)
        generic = self.image_attention(vision, GENERIC_PROMPT, ())
        return None if asked is None or generic is None else relative_attention(asked, generic)

    def describe_inputs(self, vision: torch.Tensor, question: str) -> tuple[np.ndarray, np.ndarray]:
        """What the density agent's context features (seed 000 Eq. 6-10) are computed from: (N, H)
        embeddings of the (F, a, D) vision tokens and an (H,) embedding of the question, in one
        space. By default the tokens themselves and the mean of a fixed random vector per word
        (seeded by the word's CRC-32): a model with its own embeddings overrides this."""
        h = vision.reshape(-1, vision.shape[-1]).double().cpu().numpy()
        words = question.lower().split()
        if not words:
            return h, np.zeros(h.shape[1])
        vecs = [np.random.default_rng(zlib.crc32(w.encode())).standard_normal(h.shape[1]) for w in words]
        return h, np.mean(vecs, axis=0)


@dataclass
class VLMPair:
    """Encoders by the model whose encoder they are ("large" may be the same object as "small"),
    and the two VLMs."""

    encoders: dict[str, VisionEncoder]
    models: dict[str, OptionModel]
    preset: str
    random_weights: bool = False  # answers are noise: runs say so
    notes: tuple[str, ...] = ()  # what loading the pair wants the user told (one line each)

    def sharing_gap(self) -> str | None:
        """Why the large model cannot read the small model's vision tokens (QuickGrasp's token sharing),
        or None when it can: the small encoder's output width must be the width the large projector takes."""
        small = int(self.encoders["small"].dim)
        takes = self.models["large"].vision_width
        if takes is None or takes == small:
            return None
        return f"the small encoder's tokens are {small} wide and the large model's projector takes {takes}"

    def parameter_counts(self) -> dict[str, int]:
        """Each side's parameters: its encoder and its model (projector and LM, or head); a checkpoint's
        model counts its whole folder, encoder included."""
        def enc(name: str) -> int:
            if getattr(self.encoders[name], "model", None) is getattr(self.models[name], "model", False):
                return 0
            module = getattr(self.encoders[name], "model", None)
            return sum(p.numel() for p in module.parameters()) if isinstance(module, nn.Module) else 0
        return {name: enc(name) + m.parameters() for name, m in self.models.items()}
