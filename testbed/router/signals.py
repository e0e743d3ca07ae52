"""INAR-VL's cheap input signals (seed 002): image and text complexity, computed before any model
runs, the same way everywhere: the sim reads what these functions gave into a trace's signal_*
columns, a real run calls them on the real pixels and question.

Image complexity, per frame of luma Y (ITU-R BT.601 weights, 0-255) and RGB, averaged over the
frames looked at (one for an image; up to INSPECT_FRAMES of a video's keyframes):

- spatial information: the standard deviation of the Sobel gradient magnitude of Y (ITU-T P.910's
  SI, taken per frame and averaged instead of P.910's maximum over time);
- edge density: the share of pixels whose Sobel magnitude exceeds EDGE_THRESHOLD;
- colourfulness: Hasler and Suesstrunk's M = sigma_rgyb + 0.3 mu_rgyb (2003);
- compressed bytes per pixel: the file's bytes over the pixels it holds (every frame of a video),
  from the media's metadata.

Text complexity: the question's length in words, its option count, and its type (yes/no, colour,
counting, other "what/which" questions, anything else), read off its first words.

Pure functions of arrays and strings; frames are (F, H, W, 3) uint8.
"""

from __future__ import annotations

import re

import numpy as np

from testbed.query import InputSignals, Media

INSPECT_FRAMES = 8
"""Frames of a video the signals look at: up to this many of its keyframe-aligned sample, evenly
spread (seed 002 routes images; for video this keeps the look before inference cheap)."""
EDGE_THRESHOLD = 100.0
"""Sobel magnitude (on 0-255 luma; the largest possible is about 1443) above which a pixel counts
as an edge. Assumed: a step of about 25 grey levels across the 3x3 kernel."""
QUESTION_TYPES = ("yes/no", "colour", "count", "what", "other")
_YES_NO = {"is", "are", "does", "do", "did", "can", "could", "was", "were", "has", "have", "had", "will", "would",
           "should", "am"}
IMAGE_SIGNALS = ("spatial_info", "edge_density", "colourfulness", "bytes_per_pixel")
FEATURES = (*IMAGE_SIGNALS, "question_words", "option_count", *(f"type_{t}" for t in QUESTION_TYPES))
"""The input-aware router's feature vector, in this order."""


def _luma(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float64)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def sobel_magnitude(y: np.ndarray) -> np.ndarray:
    """(F, H-2, W-2) Sobel gradient magnitude of luma (F, H, W), over the interior pixels."""
    gx = (y[:, :-2, 2:] + 2 * y[:, 1:-1, 2:] + y[:, 2:, 2:]) - (y[:, :-2, :-2] + 2 * y[:, 1:-1, :-2] + y[:, 2:, :-2])
    gy = (y[:, 2:, :-2] + 2 * y[:, 2:, 1:-1] + y[:, 2:, 2:]) - (y[:, :-2, :-2] + 2 * y[:, :-2, 1:-1] + y[:, :-2, 2:])
    return np.hypot(gx, gy)


def colourfulness(frames: np.ndarray) -> np.ndarray:
    """(F,) Hasler and Suesstrunk's colourfulness of RGB frames (F, H, W, 3)."""
    f = frames.astype(np.float64)
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    axes = (1, 2)
    sigma = np.sqrt(rg.std(axis=axes) ** 2 + yb.std(axis=axes) ** 2)
    mu = np.sqrt(rg.mean(axis=axes) ** 2 + yb.mean(axis=axes) ** 2)
    return sigma + 0.3 * mu


def bytes_per_pixel(media: Media) -> float:
    """Compressed bytes per pixel of the media file: its bytes over the pixels of every frame it holds."""
    frames = getattr(media, "n_frames", 1)
    pixels = max(1, media.width * media.height * max(1, frames))
    return float(media.file_bytes) / pixels


def image_signals(frames: np.ndarray, media: Media) -> InputSignals:
    """The image-complexity signals of `frames` (F, H, W, 3) uint8 from `media` (its bytes per pixel
    from the metadata), averaged over the frames."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (F, H, W, 3), got {frames.shape}")
    if frames.shape[1] >= 3 and frames.shape[2] >= 3:
        mag = sobel_magnitude(_luma(frames))
        si = float(mag.std(axis=(1, 2)).mean())
        edges = float((mag > EDGE_THRESHOLD).mean())
    else:  # too small for a 3x3 kernel: no structure to measure
        si, edges = 0.0, 0.0
    return InputSignals(si, edges, float(colourfulness(frames).mean()), bytes_per_pixel(media))


def inspect_indices(sampled: np.ndarray, limit: int = INSPECT_FRAMES) -> np.ndarray:
    """Up to `limit` of a video's sampled frame indices, evenly spread (first and last included)."""
    sampled = np.asarray(sampled, dtype=np.int64)
    if len(sampled) <= limit:
        return sampled
    return sampled[np.round(np.linspace(0, len(sampled) - 1, limit)).astype(np.int64)]


def question_type(question: str) -> str:
    """The question's type, one of QUESTION_TYPES, from its first words."""
    words = re.findall(r"[a-z]+", question.lower())
    words = [w for w in words if w != "synthetic"]
    if not words:
        return "other"
    head = " ".join(words[:4])
    if "how many" in head or "number of" in head:
        return "count"
    if "colour" in words[:4] or "color" in words[:4]:
        return "colour"
    if words[0] in _YES_NO:
        return "yes/no"
    if words[0] in ("what", "which", "who", "where", "when", "why", "how"):
        return "what"
    return "other"


def text_features(question: str, options: tuple[str, ...]) -> np.ndarray:
    """(2 + len(QUESTION_TYPES),): question length in words, option count, one-hot question type."""
    kind = question_type(question)
    words = len(re.findall(r"\w+", question))
    return np.array([words, len(options), *(float(kind == t) for t in QUESTION_TYPES)], dtype=np.float64)


def feature_vector(signals: InputSignals, question: str, options: tuple[str, ...]) -> np.ndarray:
    """(len(FEATURES),) the router's input: image signals, then text features. An image signal a
    trace lacks is NaN (the router refuses it)."""
    image = [np.nan if v is None else float(v) for v in (signals.spatial_info, signals.edge_density,
                                                           signals.colourfulness, signals.bytes_per_pixel)]
    return np.concatenate([np.asarray(image, dtype=np.float64), text_features(question, options)])


def media_frames(media: Media, sampler: object) -> np.ndarray:
    """The frames the signals look at, decoded from the media file: an image, or up to
    INSPECT_FRAMES of the frames `sampler` (a `testbed.tokenizer.sampling.Sampler`) picks from a
    video. A bad file is an ImageError or VideoError naming it."""
    from testbed.query import ImageMeta

    if isinstance(media, ImageMeta):
        from testbed.tokenizer.image import load_image

        return load_image(media.path)
    from testbed.tokenizer.decode import decode
    from testbed.tokenizer.sampling import sample_indices

    sampled = sample_indices(media.n_frames, media.fps, media.keyframe_array, sampler)  # type: ignore[arg-type]
    idx = inspect_indices(sampled)
    return decode(media.path, media, idx)


def media_signals(media: Media, sampler: object) -> InputSignals:
    """`image_signals` of the frames `media_frames` decodes: what a real run's Inspect returns and
    what `testbed record` writes into a trace's signal_* columns."""
    return image_signals(media_frames(media, sampler), media)
