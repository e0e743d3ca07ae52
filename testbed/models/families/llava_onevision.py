"""LLaVA-OneVision: SigLIP tokens at `vision_feature_layer` through a 2-layer MLP into a Qwen2 LM.

Frames take its video path: each frame resized to SigLIP's square input (no anyres tiles), its
patches at the feature layer are the testbed's vision tokens, and ToMe merging to the density stands
where the video path's 2x2 bilinear pooling stood. One `image_newline` embedding closes the frames,
as in `get_video_features`. The 0.5B and 7B models share SigLIP-so400m (width 1152), so they share tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from testbed.models.checkpoint_vlm import Adapter, Piece, Vision, token_grid


class LlavaOneVisionAdapter(Adapter):
    family = "llava_onevision"

    def __init__(self, model: Any, folder: Path, tokenizer: Any) -> None:
        super().__init__(model, folder, tokenizer)
        cfg = model.config
        vc = cfg.vision_config
        self.tower, self.projector = model.model.vision_tower, model.model.multi_modal_projector
        self.newline = model.model.image_newline
        self.layer = cfg.vision_feature_layer
        self.drop_first = cfg.vision_feature_select_strategy == "default"
        layers = len(self.layer) if isinstance(self.layer, (list, tuple)) else 1
        self.width = int(vc.hidden_size) * layers
        self.side = int(vc.image_size)
        n = self.side // int(vc.patch_size)
        self.grid = (n, n) if not self.drop_first else (1, n * n - 1)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        dtype = next(self.tower.parameters()).dtype
        out = self.tower(pixels.to(dtype), output_hidden_states=True, return_dict=True)
        layers = self.layer if isinstance(self.layer, (list, tuple)) else [self.layer]
        feats = torch.cat([out.hidden_states[i] for i in layers], dim=-1)
        return feats[:, 1:] if self.drop_first else feats

    def project(self, vision: torch.Tensor) -> torch.Tensor:
        return self.projector(vision)

    def media(self, projected: torch.Tensor) -> list[Piece]:
        f, a, h = projected.shape
        return [Vision(projected.reshape(f * a, h), (f, *token_grid(a, self.grid))), self.newline[None]]
