"""Seed 003's views of a real image (Pillow, imported when called): the global view (resized so its
longer side is the encoder's input, JPEG), a crop of a box at full detail (JPEG), and LLaVA-1.5-HD's
tiles of the full-resolution image. Every failure is a one-line CropError or ImageError.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from testbed.crop import GLOBAL_SIDE, Box, CropError, check_box, hd_grid, view_size

JPEG_QUALITY = 90
"""JPEG quality of the views the device makes (assumed: a high quality, so crops keep their detail)."""


def jpeg(pixels: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """(H, W, 3) uint8 RGB as JPEG bytes."""
    from PIL import Image

    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise CropError(f"cannot encode an image of shape {pixels.shape} (an empty crop?)")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 resized to height x width (Lanczos, as a camera pipeline would downscale)."""
    from PIL import Image

    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.LANCZOS))


def global_view(pixels: np.ndarray, side: int = GLOBAL_SIDE) -> np.ndarray:
    """The image resized so its longer side is `side` (never enlarged)."""
    w, h = view_size(pixels.shape[1], pixels.shape[0], side)
    return resize(pixels, w, h)


def crop(pixels: np.ndarray, box: object) -> np.ndarray:
    """The pixels of `box` (checked: inside the image, not empty) at full detail."""
    x0, y0, x1, y1 = check_box(box, pixels.shape[1], pixels.shape[0])
    return pixels[y0:y1, x0:x1]


def hd_tiles(pixels: np.ndarray, side: int = GLOBAL_SIDE) -> np.ndarray:
    """(n, side, side, 3): LLaVA-1.5-HD's view of a full-resolution image: the global view, then the
    image resized to its tile grid (at most 2 x 2 tiles of `side`) cut into tiles, row by row."""
    cols, rows = hd_grid(pixels.shape[1], pixels.shape[0], side)
    big = resize(pixels, cols * side, rows * side)
    tiles = [big[r * side:(r + 1) * side, c * side:(c + 1) * side] for r in range(rows) for c in range(cols)]
    return np.stack([resize(pixels, side, side), *tiles])


def make_view(path: Path | str, view: str, box: Box | None = None, side: int = GLOBAL_SIDE,
              quality: int = JPEG_QUALITY) -> tuple[bytes, int, int]:
    """(bytes, width, height) of one view of the image file: "global" or "crop" as JPEG; "full" is the
    file itself, untouched."""
    from testbed.tokenizer.image import load_image, probe_image

    if view == "full":
        meta = probe_image(path)
        return Path(path).read_bytes(), meta.width, meta.height
    pixels = load_image(path)[0]
    if view == "global":
        out = global_view(pixels, side)
    elif view == "crop":
        if box is None:
            raise CropError("a crop needs a box")
        out = crop(pixels, box)
    else:
        raise CropError(f"unknown view {view!r}; views: global, crop, full")
    return jpeg(out, quality), out.shape[1], out.shape[0]
