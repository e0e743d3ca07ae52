"""Any other `AutoModelForImageTextToText` family that follows the standard processor and chat-template API.

Its vision tokens are what `get_image_features(pixel_values)` returns: the projector is already
applied, so density merging happens in the LM's input space and the projector step is the identity.
Frames are resized to the processor's square input and normalised with its mean and std. Token
sharing needs the two LMs' widths to agree (rare across sizes), so a mixed pair runs without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from testbed.errors import ConfigError
from testbed.models.checkpoint_vlm import Adapter, processor_config


def _side(pre: dict, vision: Any) -> int:
    size = pre.get("crop_size") or pre.get("size") or {}
    if isinstance(size, dict):
        for key in ("height", "shortest_edge", "longest_edge"):
            if isinstance(size.get(key), int):
                return int(size[key])
    if isinstance(size, int):
        return size
    return int(getattr(vision, "image_size", 224))


class GenericAdapter(Adapter):
    family = "generic"

    def __init__(self, model: Any, folder: Path, tokenizer: Any) -> None:
        super().__init__(model, folder, tokenizer)
        if not hasattr(model, "get_image_features"):
            raise ConfigError("models", f"{folder}: {type(model).__name__} has no get_image_features; the generic "
                                        "path needs it")
        self.side = _side(processor_config(folder), getattr(model.config, "vision_config", None))
        with torch.inference_mode():
            probe = self.encode(self.preprocess(torch.zeros(1, self.side, self.side, 3, dtype=torch.uint8).numpy()))
        n = int(probe.shape[1])
        rows = int(n ** 0.5)
        self.grid = (rows, n // rows) if rows * (n // rows) == n else (1, n)
        self.width = int(probe.shape[-1])

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        out = self.model.get_image_features(pixel_values=pixels.to(dtype))
        feats = getattr(out, "pooler_output", out)
        if isinstance(feats, (list, tuple)):
            feats = torch.stack(list(feats))
        if feats.dim() == 2:
            feats = feats.reshape(len(pixels), -1, feats.shape[-1])
        return feats

    def project(self, vision: torch.Tensor) -> torch.Tensor:
        return vision
