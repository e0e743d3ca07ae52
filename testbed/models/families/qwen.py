"""Qwen2-VL and Qwen2.5-VL: a ViT whose patch merger folds each 2x2 window of patches into one LM token.

The testbed's vision tokens are the ViT's output before the merger, each merge window's four patch
vectors concatenated (width 4 x the ViT width): ToMe merges these, and the merger's MLP projects the
result, so the 3B and 7B models (same ViT, different mergers) share tokens. Every sampled frame is
encoded as an image (grid t = 1), so tokens stay per frame; in the LM the frames sit in one vision
span with M-RoPE positions (t = frame, h, w = the token's row and column), as Qwen's video path lays
them out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from testbed.models.checkpoint_vlm import Adapter, Piece, Vision, load_image_processor, resize_frames

FRAME_SIDE = 448
"""Frames are resized to 448 px squares (Qwen2.5-VL's video frames: 16 x 16 merge windows at patch 14, 256
tokens), or to the largest square the processor's `max_pixels` allows, in whole merge windows."""


def frame_side(factor: int, max_pixels: int | None) -> int:
    """The square frame side: FRAME_SIDE, capped by `max_pixels`, a multiple of the merge window `factor`."""
    cap = FRAME_SIDE if not max_pixels else min(FRAME_SIDE, int(max_pixels ** 0.5))
    return max(factor, cap // factor * factor)


class _Concat(nn.Module):
    """Stands in for the merger inside the ViT: each merge window's patches concatenated, nothing learned."""

    def __init__(self, unit: int) -> None:
        super().__init__()
        self.unit = unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, self.unit * x.shape[-1])


class QwenAdapter(Adapter):
    family = "qwen2_5_vl"

    def __init__(self, model: Any, folder: Path, tokenizer: Any) -> None:
        super().__init__(model, folder, tokenizer)
        self.family = str(model.config.model_type)
        vc = model.config.vision_config
        self.visual = model.model.visual
        self.merge = int(vc.spatial_merge_size)
        self.patch = int(vc.patch_size)
        unit = self.merge ** 2
        self.merger = self.visual.merger
        self.visual.merger = _Concat(unit)  # for good: the ViT now returns the pre-merger tokens, unmerged order
        vit = int(getattr(vc, "embed_dim", None) or vc.hidden_size)  # Qwen2-VL: embed_dim; Qwen2.5-VL: hidden_size
        self.vit_width, self.width = vit, vit * unit
        self.processor = load_image_processor(folder)
        factor = self.patch * self.merge
        self.side = frame_side(factor, max_pixels(self.processor))
        self.grid = (self.side // factor, self.side // factor)
        self.mean = tuple(self.processor.image_mean)  # type: ignore[assignment]
        self.std = tuple(self.processor.image_std)  # type: ignore[assignment]

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """The model's own image processor on square frames: (n, patches, C x T x P x P) flattened patches."""
        n = len(frames)
        out = self.processor(images=list(resize_frames(frames, self.side)), do_resize=False, return_tensors="pt")
        return out["pixel_values"].reshape(n, -1, out["pixel_values"].shape[-1])

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        n, patches, dim = pixels.shape
        side = self.side // self.patch
        grid = torch.tensor([[1, side, side]] * n, device=pixels.device)
        dtype = next(self.visual.parameters()).dtype
        out = self.visual(pixels.reshape(n * patches, dim).to(dtype), grid_thw=grid)
        tokens = out.pooler_output if hasattr(out, "pooler_output") else out
        return tokens.reshape(n, -1, self.width)

    def project(self, vision: torch.Tensor) -> torch.Tensor:
        return self.merger(vision.reshape(-1, self.vit_width))

    def positions(self, pieces: Sequence[Piece]) -> torch.Tensor:
        return mrope_positions(pieces, next(self.model.parameters()).device)


def max_pixels(processor: Any) -> int | None:
    """The processor's pixel budget per image (`max_pixels`; transformers 5 keeps it as size's longest_edge)."""
    value = getattr(processor, "max_pixels", None)
    if value is None:
        size = getattr(processor, "size", None)
        value = size.get("longest_edge") if isinstance(size, dict) else getattr(size, "longest_edge", None)
    return int(value) if value else None


def mrope_positions(pieces: Sequence[Piece], device: torch.device | str = "cpu") -> torch.Tensor:
    """(3, 1, L) M-RoPE position ids: text advances all three axes by one a token; a vision span of
    (frames, rows, cols) starts its t, h and w at the next position (t + frame, h + row, w + col), and
    the text after it continues from its largest position + 1 (Qwen2-VL's rule)."""
    out, cur = [], 0
    for p in pieces:
        if isinstance(p, Vision):
            f, r, c = p.grid
            t, h, w = torch.meshgrid(torch.arange(f), torch.arange(r), torch.arange(c), indexing="ij")
            pos = torch.stack([t, h, w]).reshape(3, -1) + cur
            cur = int(pos.max()) + 1
        else:
            n = len(p)
            pos = (torch.arange(n) + cur).expand(3, n)
            cur += n
        out.append(pos)
    return torch.cat(out, dim=1)[:, None].to(device)
