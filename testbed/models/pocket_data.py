"""easy-VQA (the `easy-vqa` package: 4,000 train and 1,000 test 64 x 64 images, 13 answers) as the
pocket pair's data: questions with their candidate answers as options, each image's shape and
colour, and the encoder's features cached on disk.

Options: a yes/no question has the options (yes, no); a colour question the 8 colours; a shape
question the 3 shapes, so an option's logit is the model's logit for that answer. Features are
cached as plain .npy files (float16, loaded with allow_pickle=False) keyed by split, encoder and
image count, under the cache folder the caller gives.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import numpy as np

from testbed.cache import atomic_file
from testbed.errors import TestbedError

COLORS = ("red", "green", "blue", "gray", "teal", "black", "yellow", "brown")
SHAPES = ("circle", "rectangle", "triangle")
YES_NO = ("yes", "no")
ANSWERS = YES_NO + COLORS + SHAPES
"""Every answer the pocket heads score: their output vocabulary, in this order."""
SPLITS = ("train", "test")
FEATURES_VERSION = 1


class DataMissing(TestbedError):
    """easy-VQA is not installed."""


def data_root() -> Path:
    try:
        import easy_vqa
    except ImportError:
        raise DataMissing("the pocket pair's data needs the easy-vqa package: run `make venv` "
                          "(or pip install easy-vqa)") from None
    return Path(easy_vqa.__file__).parent / "data"


def options_for(answer: str) -> tuple[str, ...]:
    """The candidate answers of a question whose answer is `answer`."""
    if answer in YES_NO:
        return YES_NO
    if answer in COLORS:
        return COLORS
    if answer in SHAPES:
        return SHAPES
    raise ValueError(f"not an easy-VQA answer: {answer!r}")


@dataclass(frozen=True)
class Split:
    """One easy-VQA split: questions (in the package's order) over its images."""

    name: str
    questions: tuple[str, ...]
    answers: tuple[str, ...]
    image_ids: np.ndarray  # (n_questions,) index into `images`
    images: tuple[Path, ...]  # image i is images[i] (the package names them i.png)

    def __len__(self) -> int:
        return len(self.questions)

    def options(self, i: int) -> tuple[str, ...]:
        return options_for(self.answers[i])


def load_split(name: str, limit_images: int | None = None) -> Split:
    """A split's questions and image paths; `limit_images` keeps the first N images and their questions."""
    if name not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    root = data_root() / name
    rows = json.loads((root / "questions.json").read_text())
    n_images = sum(1 for p in (root / "images").iterdir() if p.suffix == ".png")
    if limit_images is not None:
        n_images = min(n_images, limit_images)
        rows = [r for r in rows if int(r[2]) < n_images]
    images = tuple(root / "images" / f"{i}.png" for i in range(n_images))
    return Split(name, tuple(str(r[0]) for r in rows), tuple(str(r[1]) for r in rows),
                 np.array([int(r[2]) for r in rows], dtype=np.int64), images)


_COLOR = "|".join(COLORS)
_SHAPE = "|".join(SHAPES)


def image_labels(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Each image's shape and colour (indices into SHAPES and COLORS; -1 where its questions do not
    tell), read off its questions: easy-VQA shows one shape of one colour per image."""
    shape = np.full(len(split.images), -1, dtype=np.int64)
    color = np.full(len(split.images), -1, dtype=np.int64)
    for q, a, i in zip(split.questions, split.answers, split.image_ids):
        if a in SHAPES:
            shape[i] = SHAPES.index(a)
            m = re.search(rf"\b({_COLOR})\b", q)
            if m:
                color[i] = COLORS.index(m.group(1))
        elif a in COLORS:
            color[i] = COLORS.index(a)
            m = re.search(rf"\b({_SHAPE})\b", q)
            if m:
                shape[i] = SHAPES.index(m.group(1))
        else:
            positive = (a == "yes") != bool(re.search(r"\b(not|no)\b", q.replace("is no ", "is not ")))
            if positive:
                m = re.search(rf"\b({_COLOR})\b", q)
                if m:
                    color[i] = COLORS.index(m.group(1))
                m = re.search(rf"\b({_SHAPE})\b", q)
                if m:
                    shape[i] = SHAPES.index(m.group(1))
    return shape, color


def features_path(cache: Path, split: str, n_images: int) -> Path:
    return cache / "pocket" / f"easyvqa-{split}-{n_images}-effnet-lite0-v{FEATURES_VERSION}.npy"


def cached_array(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """`compute()` once, kept as a plain .npy file at `path` (no pickle); a corrupt file is recomputed."""
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            pass
    arr = compute()
    with atomic_file(path) as f:
        np.save(f, arr, allow_pickle=False)
    return arr


def mosaic(paths: "list[Path] | tuple[Path, ...]") -> np.ndarray:
    """Four images as one 2 x 2 frame (1, 2H, 2W, 3) uint8, in reading order."""
    from testbed.tokenizer.image import load_image

    a, b, c, d = (load_image(p)[0] for p in paths)
    return np.concatenate([np.concatenate([a, b], 1), np.concatenate([c, d], 1)], 0)[None]


def image_features(split: Split, encoder: "object", cache: Path, batch: int = 32,
                   progress: Callable[[int], None] | None = None, mosaics: np.ndarray | None = None,
                   key: str = "") -> np.ndarray:
    """(n, 49, 1280) float16 encoder tokens of every image of `split` (or of each 2 x 2 mosaic of its
    images, rows of `mosaics` (n, 4), cached under `key`), computed once with the tokenizer's own
    image path (decode, preprocess, encode) and cached in `cache`."""
    import torch

    from testbed.models.encoder import VisionEncoder
    from testbed.tokenizer.image import load_image
    from testbed.tokenizer.preprocess import preprocess

    assert isinstance(encoder, VisionEncoder)
    n = len(split.images) if mosaics is None else len(mosaics)
    path = features_path(cache, split.name + (f"-mosaic-{key}" if mosaics is not None else ""), n)
    if path.is_file():
        try:
            feats = np.load(path, allow_pickle=False, mmap_mode="r")
            if feats.shape == (n, encoder.tokens_per_frame, encoder.dim):
                return np.asarray(feats)
        except (OSError, ValueError):
            pass  # a partial or corrupt cache file: compute it again
    out = np.empty((n, encoder.tokens_per_frame, encoder.dim), dtype=np.float16)
    for start in range(0, n, batch):
        if mosaics is None:
            frames = np.concatenate([load_image(p) for p in split.images[start:start + batch]])
        else:
            frames = np.concatenate([mosaic([split.images[i] for i in row]) for row in mosaics[start:start + batch]])
        pixels = preprocess(frames, encoder.image_size, encoder.mean, encoder.std)
        with torch.inference_mode():
            out[start:start + len(frames)] = encoder.encode(pixels).float().numpy().astype(np.float16)
        if progress:
            progress(len(frames))
    with atomic_file(path) as f:
        np.save(f, out, allow_pickle=False)
    return out
