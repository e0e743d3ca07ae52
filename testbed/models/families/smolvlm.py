"""SmolVLM and Idefics3: SigLIP, a pixel shuffle that folds each s x s block of patches into one token
(a reshape), then the connector's linear projection into a Llama-style LM.

The testbed's vision tokens are the shuffled tokens (width s^2 x the SigLIP width), so ToMe merges
before the only learned connector layer. Each frame is one global image, as SmolVLM's video path
feeds frames (no tiles), wrapped in `<fake_token_around_image><global-img> ... <fake_token_around_image>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from testbed.models.checkpoint_vlm import Adapter, Piece, Vision, token_grid

WRAP = ("<fake_token_around_image>", "<global-img>")


class SmolVLMAdapter(Adapter):
    family = "smolvlm"

    def __init__(self, model: Any, folder: Path, tokenizer: Any) -> None:
        super().__init__(model, folder, tokenizer)
        cfg = model.config
        vc = cfg.vision_config
        self.vision, self.connector = model.model.vision_model, model.model.connector
        self.scale = int(cfg.scale_factor)
        self.side = int(vc.image_size)
        n = self.side // int(vc.patch_size) // self.scale
        self.grid = (n, n)
        self.width = int(vc.hidden_size) * self.scale ** 2
        ids = [tokenizer.convert_tokens_to_ids(t) for t in WRAP]
        known = all(isinstance(i, int) and i != tokenizer.unk_token_id for i in ids)
        self.fake: int | None = ids[0] if known else None
        self.global_img: int | None = ids[1] if known else None

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        dtype = next(self.vision.parameters()).dtype
        out = self.vision(pixel_values=pixels.to(dtype), return_dict=True).last_hidden_state
        return self.connector.pixel_shuffle(out, self.scale)

    def project(self, vision: torch.Tensor) -> torch.Tensor:
        return self.connector.modality_projection(vision)

    def media(self, projected: torch.Tensor) -> list[Piece]:
        f, a, _ = projected.shape
        grid = token_grid(a, self.grid)
        if self.fake is None or self.global_img is None:
            return [Vision(projected[i], (1, *grid), i == 0) for i in range(f)]
        out: list[Piece] = []
        for i in range(f):
            out += [[self.fake, self.global_img], Vision(projected[i], (1, *grid), i == 0), [self.fake]]
        return out
