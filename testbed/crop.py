"""Seed 003's arithmetic (Song & Kim): the min-entropy trigger, ViCrop's relative-attention box, the
random baseline's box and decision, and LLaVA-1.5-HD's tiling. Pure functions over arrays and
boxes; no image library is imported here (`testbed.crop_image` does the pixels).

A box is (x0, y0, x1, y1) in pixels of the original image, half-open: it covers columns x0..x1-1
and rows y0..y1-1. Boxes the edge names are clipped to the image; a box handed to a crop is checked
(`check_box`) and a bad one is a one-line `CropError`.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from testbed.errors import TestbedError

Box = tuple[int, int, int, int]

GLOBAL_SIDE = 336
"""The global view's longer side in pixels: the encoder's input of LLaVA-1.5 (CLIP ViT-L/14 at 336 px),
the model of seed 003's Fig. 4 and 5."""
HD_GRID = 2
"""LLaVA-1.5-HD's largest tile grid per axis (2 x 2 tiles of the encoder's input, plus a global view)."""
GENERIC_PROMPT = "Write a general description of the image."
"""The question-free prompt ViCrop divides the question's attention by (relative attention)."""


class CropError(TestbedError):
    """A box outside the image, an empty crop, or a view that cannot be made or read."""


def min_entropy(logits: np.ndarray) -> float:
    """H_min = -log max_i p_i of the softmax of `logits` (K,), in nats: 0 when one option takes all
    the mass, log K when all are equal (seed 003's uncertainty measure)."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 1 or len(z) == 0 or not np.isfinite(z).all():
        raise CropError("min-entropy needs a non-empty vector of finite logits")
    z = z - z.max()
    return float(np.log(np.exp(z).sum()))


def max_probability(logits: np.ndarray) -> float:
    """max_i p_i = exp(-H_min): the score a threshold on the min-entropy compares (higher: surer)."""
    return float(np.exp(-min_entropy(logits)))


def relative_attention(att_question: np.ndarray, att_generic: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """ViCrop's relative attention: the attention to each image token under the question divided by
    the same under a generic prompt (each first normalised to sum 1), so that tokens every prompt
    attends to (attention sinks) do not win. Same shape as the inputs."""
    a = np.asarray(att_question, dtype=np.float64)
    g = np.asarray(att_generic, dtype=np.float64)
    if a.shape != g.shape or a.size == 0:
        raise CropError(f"attention maps of shapes {a.shape} and {g.shape}: they must match and be non-empty")
    a = a / max(a.sum(), eps)
    g = g / max(g.sum(), eps)
    return a / (g + eps)


def as_grid(values: np.ndarray) -> np.ndarray:
    """(n,) token values of a square token grid as (side, side), row-major (ViT patch order)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    side = int(round(math.sqrt(len(v))))
    if side * side != len(v) or side == 0:
        raise CropError(f"{len(v)} image tokens are not a square grid")
    return v.reshape(side, side)


def crop_side(width: int, height: int, scale: float) -> int:
    """Side of a square crop box: `scale` of the image's shorter side, at least one pixel."""
    return max(1, min(width, height, int(round(scale * min(width, height)))))


def box_around(cx: float, cy: float, side: int, width: int, height: int) -> Box:
    """The square box of `side` centred as near (cx, cy) as the image allows: shifted, never cut,
    to lie inside width x height (clipped only where the image is smaller than the box)."""
    side_x, side_y = min(side, width), min(side, height)
    x0 = int(min(max(round(cx - side_x / 2), 0), width - side_x))
    y0 = int(min(max(round(cy - side_y / 2), 0), height - side_y))
    return x0, y0, x0 + side_x, y0 + side_y


def peak_box(grid: np.ndarray, width: int, height: int, side: int) -> Box:
    """The box of `side` around the peak of a (gh, gw) map over the image (the first on a tie): the
    peak cell's centre mapped to pixels of the width x height image."""
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 2 or g.size == 0 or not np.isfinite(g).all():
        raise CropError("an attention map must be a non-empty 2-D grid of finite values")
    i, j = np.unravel_index(int(np.argmax(g)), g.shape)
    cx = (j + 0.5) * width / g.shape[1]
    cy = (i + 0.5) * height / g.shape[0]
    return box_around(cx, cy, side, width, height)


def clip_box(box: Box, width: int, height: int) -> Box:
    """`box` intersected with the image; a CropError if nothing is left."""
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        raise CropError(f"box {tuple(box)} does not overlap the {width}x{height} image")
    return x0, y0, x1, y1


def check_box(box: object, width: int, height: int) -> Box:
    """`box` as four ints if it is a non-empty box inside the width x height image, else a CropError
    saying what is wrong (what a device checks before it crops, and an edge before it reads one)."""
    if not isinstance(box, (tuple, list)) or len(box) != 4 or \
            not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in box):
        raise CropError(f"a box is four integers (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise CropError(f"empty crop: box {(x0, y0, x1, y1)} has no pixels")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise CropError(f"box {(x0, y0, x1, y1)} lies outside the {width}x{height} image")
    return x0, y0, x1, y1


def unit_draw(seed: int, key: str, salt: int) -> float:
    """A uniform number in [0, 1) from (seed, key, salt) alone: the random baseline's draws depend on
    the query, not on the order queries arrive in, so sim and real runs draw the same."""
    h = zlib.crc32(f"{seed}:{salt}:{key}".encode())
    return float(np.random.default_rng([seed, salt, h]).random())


def random_box(seed: int, key: str, width: int, height: int, side: int) -> Box:
    """A box of `side` (the attention box's size) placed uniformly at random inside the image."""
    side_x, side_y = min(side, width), min(side, height)
    x0 = int(unit_draw(seed, key, 1) * (width - side_x + 1))
    y0 = int(unit_draw(seed, key, 2) * (height - side_y + 1))
    return x0, y0, x0 + side_x, y0 + side_y


def view_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The size an image is resized to so that its longer side is `side` (never enlarged)."""
    longer = max(width, height)
    if longer <= side:
        return width, height
    f = side / longer
    return max(1, round(width * f)), max(1, round(height * f))


def hd_grid(width: int, height: int, side: int = GLOBAL_SIDE, max_grid: int = HD_GRID) -> tuple[int, int]:
    """LLaVA-1.5-HD's tile grid (columns, rows) for an image: enough tiles of the encoder's input to
    cover it, at most `max_grid` per axis."""
    return min(max_grid, max(1, math.ceil(width / side))), min(max_grid, max(1, math.ceil(height / side)))


def hd_frames(width: int, height: int, side: int = GLOBAL_SIDE) -> int:
    """Encoder passes of a full-resolution image in LLaVA-1.5-HD: each tile plus the global view."""
    cols, rows = hd_grid(width, height, side)
    return cols * rows + 1
