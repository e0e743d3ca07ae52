"""From a model's per-category scores to a frame's labels (numpy only, so policies can use it):
every category scoring > 0 for multi-label recognition, the arg-max for single-label tasks."""

from __future__ import annotations

import numpy as np


def predicted(task: str, scores: np.ndarray) -> np.ndarray:
    """Bool mask (..., C) of the labels `scores` (..., C) predict."""
    if task == "multi-label":
        return np.asarray(scores) > 0
    scores = np.asarray(scores)
    out = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(out, np.argmax(scores, axis=-1)[..., None], True, axis=-1)
    return out


def labels_of(task: str, scores: np.ndarray) -> tuple[int, ...]:
    """The category indices one frame's scores (C,) predict."""
    return tuple(int(i) for i in np.flatnonzero(predicted(task, scores)))


def uncertainty(task: str, scores: np.ndarray) -> float:
    """How unsure a model was on one frame, in [0, 1]: the mean binary entropy (bits) of the
    categories' sigmoid probabilities (multi-label), or 1 minus the softmax's top probability."""
    s = np.asarray(scores, dtype=np.float64)
    if task == "multi-label":
        p = np.clip(1 / (1 + np.exp(-s)), 1e-9, 1 - 1e-9)
        return float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))
    e = np.exp(s - s.max())
    return float(1 - e.max() / e.sum())
