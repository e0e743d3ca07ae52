"""Visual focus (seed 001 Sec. 3.3, Eq. 6-11) on real tokens, as pure functions.

- GGVR (Eq. 6): of the context frame T - d, only the patches that overlap a region of interest
  (the largest one per category the large answer names) reach the small model, not all N: the
  history costs |P_ROI| tokens instead of N.
- GRVR (Eq. 7-11): each category's mean feature on frame T - d (Eq. 7), its cosine similarity to
  every patch of frame T (Eq. 8), averaged over categories (Eq. 9), gives the weight
  W_s = mu sigmoid(s) + b with 0.5 mu + b = 1 (Eq. 10: a patch with s = 0 keeps its token), and
  the gated update t <- alpha t + (1 - alpha) W_s t (Eq. 11).

Patches are row-major over a cols x rows grid laid on the image. torch is imported only where
tensors are handled.
"""

from __future__ import annotations

import functools
import math
from typing import Any
from collections.abc import Iterable, Sequence

ALPHA = 0.7
MU = 1.0
"""Seed 001 Sec. 4.2: (alpha, mu) = (0.7, 1.0)."""
PARTS = ("ggvr", "grvr")
"""The two halves of visual focus, as `Infer.focus` names them."""

Box = tuple[int, int, int, int]


@functools.lru_cache(maxsize=64)  # called per frame by the sim: a stream's grid is found once
def patch_grid(tokens: int, width: int, height: int) -> tuple[int, int]:
    """(cols, rows) of a frame's `tokens` patches laid on a width x height image: the split whose
    aspect is nearest the image's (1824 tokens of a 1600 x 900 frame: 57 x 32, Qwen2.5-VL's
    28-pixel merged patches; 49 of a square image: 7 x 7)."""
    if tokens < 1 or width < 1 or height < 1:
        raise ValueError(f"a patch grid needs tokens, width and height >= 1, got {tokens}, {width}, {height}")
    best = (1, tokens)
    for cols in range(1, tokens + 1):
        if tokens % cols == 0:
            rows = tokens // cols
            if abs(math.log(cols * height / (rows * width))) < abs(math.log(best[0] * height / (best[1] * width))):
                best = (cols, rows)
    return best


def roi_patches(roi: Box, width: int, height: int, grid: int | tuple[int, int]) -> list[int]:
    """Indices (row-major) of the patches of a width x height image cut into `grid` (an int: square;
    else (cols, rows)) that overlap the box roi = (x0, y0, x1, y1) in pixels: Eq. 6's p with
    p intersecting the ROI (touching an edge is no overlap)."""
    cols, rows = (grid, grid) if isinstance(grid, int) else grid
    x0, y0, x1, y1 = roi
    if x1 <= x0 or y1 <= y0:
        return []
    pw, ph = width / cols, height / rows
    c0, c1 = max(0, math.floor(x0 / pw)), min(cols - 1, math.ceil(x1 / pw) - 1)
    r0, r1 = max(0, math.floor(y0 / ph)), min(rows - 1, math.ceil(y1 / ph) - 1)
    return [r * cols + c for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]


def largest_per_category(rois: Iterable[tuple[int, Box]]) -> dict[int, Box]:
    """{category: its largest box} (seed 001 Sec. 3.3.1: "the largest ROI is selected for each
    target category"); the first of equal areas."""
    out: dict[int, Box] = {}
    for c, box in rois:
        if c not in out or _area(box) > _area(out[c]):
            out[c] = box
    return out


def _area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def category_patches(rois: Iterable[tuple[int, Box]], width: int, height: int,
                     grid: int | tuple[int, int]) -> dict[int, list[int]]:
    """{category: the patches its largest box overlaps} (P^(c) of Eq. 7)."""
    return {c: roi_patches(b, width, height, grid) for c, b in sorted(largest_per_category(rois).items())}


def ggvr_patches(rois: Iterable[tuple[int, Box]], width: int, height: int, grid: int | tuple[int, int]) -> list[int]:
    """P_ROI of Eq. 6: the sorted patches that overlap any category's largest box."""
    return sorted({p for ps in category_patches(rois, width, height, grid).values() for p in ps})


def focus_weights(now: Any, then: Any, patches: Sequence[Sequence[int]], mu: float = MU) -> Any:
    """W_s (N,) for the current frame's (N, D) tokens `now`, from the categories' patch sets on
    the earlier frame's tokens `then` (Eq. 7-10); all ones with no category."""
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
    """GRVR: the gated update of Eq. 11 on (N, D) tokens."""
    w = focus_weights(now, then, patches, mu)
    return alpha * now + (1 - alpha) * w[:, None] * now


def ggvr_tokens(then: Any, patches: Sequence[int]) -> Any:
    """GGVR: the (|P_ROI|, D) tokens of the context frame's (N, D) `then` that Eq. 6 keeps."""
    return then[list(patches)]
