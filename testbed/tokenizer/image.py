"""Images as one-frame media (image QA): read the size from the header, decode to RGB.

Every failure is an ImageError naming the file, so a bad image is one line, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from testbed.errors import TestbedError
from testbed.query import ImageMeta


class ImageError(TestbedError):
    """An image that cannot be used: missing, empty, unreadable or of zero size."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _open(p: Path):  # type: ignore[no-untyped-def]
    from PIL import Image, UnidentifiedImageError

    if p.is_dir():
        raise ImageError(p, "is a folder, not an image file")
    if not p.is_file():
        raise ImageError(p, "no such file")
    if p.stat().st_size == 0:
        raise ImageError(p, "file is empty")
    _check_png_size(p)
    try:
        return Image.open(p)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(p, f"not a readable image ({exc})") from None


_PNG = b"\x89PNG\r\n\x1a\n"


def _check_png_size(p: Path) -> None:
    """A PNG declares its size in its header; Pillow will not open one that declares zero pixels, so
    say what is wrong with it here."""
    with open(p, "rb") as fh:
        head = fh.read(24)
    if head[:8] == _PNG and head[12:16] == b"IHDR":
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        if width < 1 or height < 1:
            raise ImageError(p, f"zero-size image ({width}x{height})")


def probe_image(path: Path | str) -> ImageMeta:
    """Width, height and bytes of an image, from its header (nothing decoded)."""
    p = Path(path)
    with _open(p) as im:
        width, height = im.size
    if width < 1 or height < 1:
        raise ImageError(p, f"zero-size image ({width}x{height})")
    return ImageMeta(int(width), int(height), p.stat().st_size, str(p))


def load_image(path: Path | str) -> np.ndarray:
    """The image as one RGB frame, (1, H, W, 3) uint8."""
    p = Path(path)
    try:
        with _open(p) as im:
            return np.asarray(im.convert("RGB"))[None]
    except ImageError:
        raise
    except (OSError, ValueError) as exc:  # truncated data shows up when decoding
        raise ImageError(p, f"not a readable image ({exc})") from None
