"""Frames to encoder input: resize to the encoder's square input and normalise, batched in torch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def preprocess(frames: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float],
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n, H, W, 3) uint8 RGB -> (n, 3, size, size) normalised, antialiased bilinear resize."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (n, H, W, 3) RGB frames, got shape {frames.shape}")
    x = torch.from_numpy(np.require(frames, requirements=("C", "W"))).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - m) / s).to(dtype)
