"""Visual focus (seed 001 Sec. 3.3, Eq. 6-11) on real tokens: the patches a large-model region of
interest covers on an earlier frame, their mean feature per category, its cosine similarity to
every patch of the current frame, and the gated token update t <- alpha t + (1 - alpha) W_s t
with W_s = mu sigmoid(s) + b, 0.5 mu + b = 1 (so a patch with no similarity either way, s = 0,
keeps its token). Pure functions of tensors; torch is imported by the caller's tensors only.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

ALPHA = 0.7
MU = 1.0
"""Seed 001 Sec. 4.2: (alpha, mu) = (0.7, 1.0)."""


def roi_patches(roi: tuple[int, int, int, int], width: int, height: int, grid: int) -> list[int]:
    """Indices (row-major) of the grid x grid patches of a width x height image that overlap the
    box roi = (x0, y0, x1, y1) in pixels (Eq. 6: p intersects the ROI)."""
    x0, y0, x1, y1 = roi
    if x1 <= x0 or y1 <= y0:
        return []
    pw, ph = width / grid, height / grid
    c0, c1 = max(0, math.floor(x0 / pw)), min(grid - 1, math.ceil(x1 / pw) - 1)
    r0, r1 = max(0, math.floor(y0 / ph)), min(grid - 1, math.ceil(y1 / ph) - 1)
    return [r * grid + c for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]


def focus_weights(now: Any, then: Any, patches: Sequence[Sequence[int]], mu: float = MU) -> Any:
    """W_s (N,) for the current frame's (N, D) tokens `now`, from the categories' patch sets on
    the earlier frame's tokens `then` (Eq. 7-10)."""
    import torch

    sims = []
    for p in patches:
        if len(p):
            f = then[list(p)].mean(dim=0)  # Eq. 7
            sims.append(torch.nn.functional.cosine_similarity(now, f[None, :], dim=-1))  # Eq. 8
    if not sims:
        return torch.ones(now.shape[0], dtype=now.dtype)
    s = torch.stack(sims).mean(dim=0)  # Eq. 9
    b = 1 - 0.5 * mu
    return mu * torch.sigmoid(s) + b  # Eq. 10


def focus_tokens(now: Any, then: Any, patches: Sequence[Sequence[int]], alpha: float = ALPHA, mu: float = MU) -> Any:
    """The gated update of Eq. 11 on (N, D) tokens."""
    w = focus_weights(now, then, patches, mu)
    return alpha * now + (1 - alpha) * w[:, None] * now
