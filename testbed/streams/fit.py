"""Fit a stream spec's model parameters to seed 001's Table 2 calibration rows (SVLM-only,
LVLM-only and edgeVLM at the 20-30% band) with the reference policies, on the draws of one
seed; `testbed fit-streams` prints the result for pasting into testbed/streams/synthetic.py.

Nothing else of seed 001 is used: the other bands, the LAECIPS and ADAS rows and Table 1 are
held out (testbed/streams/paper.py compares against them).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from testbed.streams.paper import CALIBRATION_ROWS
from testbed.streams.synthetic import StreamSpec, draw, outcomes, reference_metrics

MULTI = ("small_a", "small_b", "large_a", "large_b", "beta", "frame_corr", "trust", "latency_median_s")
SINGLE = ("small_a", "large_a", "trust", "latency_median_s")
BOUNDS = {"small_a": (-4.0, 6.0), "small_b": (-8.0, 0.0), "large_a": (-4.0, 6.0), "large_b": (-8.0, 0.0),
          "beta": (0.0, 3.0), "frame_corr": (0.02, 0.98), "trust": (0.0, 1.0), "latency_median_s": (0.1, 6.0)}
SINGLE_BOUNDS = {"small_a": (0.01, 0.99), "large_a": (0.01, 0.99)}


def targets(spec: StreamSpec) -> list[tuple[str, str, float]]:
    """(policy, metric, value) the fit aims at."""
    metrics = ("micro_f1", "macro_f1", "em") if spec.task == "multi-label" else ("accuracy",)
    rows = CALIBRATION_ROWS[spec.name]
    return [(policy, m, rows[policy][m]) for policy in ("svlm-only", "lvlm-only", "edgevlm") for m in metrics]


def evaluate(spec: StreamSpec, seed: int) -> dict[str, dict[str, float]]:
    return reference_metrics(spec, outcomes(spec, draw(spec, seed)))


def fit_spec(spec: StreamSpec, seed: int = 1, max_nfev: int = 200) -> tuple[StreamSpec, list[dict[str, Any]]]:
    """The spec with its free parameters fitted on `seed`'s draws, and a table of target vs fitted."""
    names = MULTI if spec.task == "multi-label" else SINGLE
    bounds = {**BOUNDS, **(SINGLE_BOUNDS if spec.task == "single-label" else {})}
    d = draw(spec, seed)
    goal = targets(spec)

    def make(x: np.ndarray) -> StreamSpec:
        values: dict[str, Any] = {n: float(v) for n, v in zip(names, x)}
        return replace(spec, **values)

    def residuals(x: np.ndarray) -> np.ndarray:
        candidate = make(x)
        got = reference_metrics(candidate, outcomes(candidate, d))
        return np.array([(got[p][m] - v) / max(v, 5.0) for p, m, v in goal])

    x0 = np.array([getattr(spec, n) for n in names], dtype=float)
    lo = np.array([bounds[n][0] for n in names])
    hi = np.array([bounds[n][1] for n in names])
    res = least_squares(residuals, np.clip(x0, lo + 1e-6, hi - 1e-6), bounds=(lo, hi), diff_step=0.03,
                        max_nfev=max_nfev)
    fitted = make(res.x)
    got = reference_metrics(fitted, outcomes(fitted, d))
    table = [{"policy": p, "metric": m, "seed 001": v, "fitted": round(got[p][m], 2)} for p, m, v in goal]
    return fitted, table
