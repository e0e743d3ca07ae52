"""INAR-VL's input-aware router (seed 002): from the cheap input signals alone, before any model
runs, the probability that the device's small model answers correctly.

A logistic regression (scikit-learn, imported only when one is trained) on standardised features
(`testbed.router.signals.FEATURES`), fitted on the profiling split: label 1 where the small model
was right. Scoring is numpy over the saved parameters, so a run, a file and a test all score the
same way; the router is saved as JSON of its parameters, never pickled. Like every router here it
returns a score; the policy applies the threshold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from testbed.errors import TestbedError
from testbed.jsonfile import read_json
from testbed.query import QueryRecord
from testbed.router.signals import FEATURES, feature_vector

FORMAT = "testbed-input-aware-router"
VERSION = 1


class RouterError(TestbedError):
    """The router cannot be trained (no signals, one class only) or its file is bad."""


@dataclass(frozen=True)
class InputAwareRouter:
    """A fitted logistic regression over standardised features: score = sigmoid(w . (x - mean) /
    scale + b). `train_accuracy` is P(small right) on the queries it was fitted on."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    n: int = 0
    train_accuracy: float = float("nan")

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(n,) P(small model right) of feature rows (n, len(features))."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if x.shape[1] != len(self.features):
            raise RouterError(f"the router reads {len(self.features)} features, got {x.shape[1]}")
        if not np.isfinite(x).all():
            raise RouterError("input-aware routing needs every signal; a query lacks some (a trace without "
                              "signal_* columns: record it with `testbed record`, or regenerate it)")
        z = ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def score(self, x: np.ndarray) -> float:
        return float(self.scores(x)[0])

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "features": list(self.features), "mean": list(self.mean),
                "scale": list(self.scale), "coef": list(self.coef), "intercept": self.intercept, "n": self.n,
                "train_accuracy": self.train_accuracy}

    @classmethod
    def from_json(cls, data: Any, name: str = "router") -> InputAwareRouter:
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise RouterError(f"{name}: not an input-aware router file (format {FORMAT} v{VERSION})")
        try:
            feats = tuple(str(f) for f in data["features"])
            mean, scale, coef = (tuple(float(v) for v in data[k]) for k in ("mean", "scale", "coef"))
            out = cls(feats, mean, scale, coef, float(data["intercept"]), int(data.get("n", 0)),
                      float(data.get("train_accuracy", float("nan"))))
        except (KeyError, TypeError, ValueError) as exc:
            raise RouterError(f"{name}: malformed router file ({exc})") from None
        if not all(len(a) == len(feats) for a in (mean, scale, coef)) or min(out.scale, default=1.0) <= 0:
            raise RouterError(f"{name}: malformed router file (lengths or scales)")
        return out


def save_router(router: InputAwareRouter, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(router.to_json(), indent=2) + "\n")


def load_router(path: Path) -> InputAwareRouter:
    data = read_json(path, RouterError, "router file")
    return InputAwareRouter.from_json(data, str(path))


def record_features(records: Sequence[QueryRecord]) -> np.ndarray:
    """(n, len(FEATURES)) the router's inputs for `records` (their signals, question and options)."""
    if not records:
        return np.zeros((0, len(FEATURES)))
    return np.stack([feature_vector(r.signals, r.query.question, r.query.options) for r in records])


def small_correct(records: Sequence[QueryRecord]) -> np.ndarray:
    """(n,) whether the small model's answer was right on each record (its logits must be known)."""
    if any(r.small_logits is None for r in records):
        raise RouterError("training the input-aware router needs the small model's answer on every profiling query")
    return np.array([int(np.argmax(r.small_logits)) == r.answer for r in records])  # type: ignore[arg-type]


def train_router(x: np.ndarray, y: np.ndarray, seed: int = 0, c: float = 1.0) -> InputAwareRouter:
    """Fit the logistic regression (L2, C = `c`, lbfgs; deterministic) on features `x` (n, d) and
    labels `y` (n,): 1 where the small model was right."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(int)
    if len(x) < 2 or not np.isfinite(x).all():
        raise RouterError("the input-aware router is trained on the profiling split, which needs at least 2 "
                          "queries with every signal (trace signal_* columns, or a real run's Inspect)")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a constant feature carries nothing: leave it unscaled
    if len(np.unique(y)) < 2:  # the small model always (or never) right: the score is that rate
        p = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
        return InputAwareRouter(FEATURES, tuple(mean), tuple(scale), (0.0,) * x.shape[1],
                                float(np.log(p / (1 - p))), len(y), float(y.mean()))
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=1000, random_state=seed)
    model.fit((x - mean) / scale, y)
    return InputAwareRouter(FEATURES, tuple(float(v) for v in mean), tuple(float(v) for v in scale),
                            tuple(float(v) for v in model.coef_[0]), float(model.intercept_[0]), len(y),
                            float(y.mean()))


def fit_router(records: Sequence[QueryRecord], seed: int = 0) -> InputAwareRouter:
    """The router trained on labelled profiling records (signals and the small model's answers)."""
    return train_router(record_features(records), small_correct(records), seed)
