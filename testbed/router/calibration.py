"""Temperature scaling over option logits (seed 000 Eq. 1-2) and expected calibration error.

Arrays: `logits` is (n, K) with NaN padding for queries that have fewer than K options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from testbed.query import QueryRecord


def option_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Constrained softmax over the valid options (Eq. 1/2); NaN-padded entries get probability 0."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.where(np.isnan(z), -np.inf, z)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def confidence(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Max option probability, kappa in Eq. 2."""
    return option_probs(logits, temperature).max(axis=-1)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true options under temperature scaling."""
    p = option_probs(logits, temperature)
    picked = p[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature T minimising NLL on a labelled profiling set (Guo et al. 2017)."""
    res = minimize_scalar(lambda t: nll(logits, labels, t), bounds=bounds, method="bounded",
                          options={"xatol": 1e-4})
    return float(res.x)


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width confidence bins (Guo et al. 2017)."""
    conf = np.asarray(conf, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.sum() * abs(correct[m].mean() - conf[m].mean())
    return float(total / max(1, len(conf)))


@dataclass(frozen=True, slots=True)
class Calibration:
    """Temperatures for the small and large models; T = 1 means uncalibrated."""

    small_t: float = 1.0
    large_t: float = 1.0

    def small_confidence(self, logits: np.ndarray) -> float:
        return float(confidence(np.asarray(logits)[None, :], self.small_t)[0])

    def large_confidence(self, logits: np.ndarray) -> float:
        return float(confidence(np.asarray(logits)[None, :], self.large_t)[0])


def padded_logits(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Stack per-query option logits of different lengths into (n, K), NaN-padded."""
    out = np.full((len(rows), max(len(r) for r in rows)), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def fit_calibration(records: Sequence[QueryRecord]) -> Calibration:
    """Temperatures for both models from labelled profiling queries (seed 000 SV-A); the large
    model's from its native logits."""
    if not records:
        return Calibration(1.0, 1.0)
    small = [r.small_logits for r in records]
    large = [r.large_native_logits for r in records]
    if any(x is None for x in small + large):
        raise ValueError("calibration needs both models' logits on every profiling query")
    labels = np.array([r.answer for r in records])
    return Calibration(fit_temperature(padded_logits(small), labels),  # type: ignore[arg-type]
                       fit_temperature(padded_logits(large), labels))  # type: ignore[arg-type]
