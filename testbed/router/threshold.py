"""Picking a router's threshold for a target, and sweeping it (RouteLLM's recipe).

A router gives each query a score (higher: the device's answer is more likely right); one rule
turns score and threshold into a choice: answer locally when `score >= tau`, else escalate. So a
target is met by choosing tau on labelled profiling queries, as RouteLLM calibrates its threshold
to a share of strong-model calls:

- a target local share s: tau is the score that s of the profiling queries reach (the (1 - s)
  quantile, taken between order statistics so that ties cannot overshoot);
- a target accuracy A: the largest local share whose routed accuracy on the profiling queries (the
  device's correctness where local, the edge's where escalated) is at least A; if none reaches it,
  everything escalates (tau above every score).

Pure functions of arrays: scores (n,), local_ok and edge_ok (n,) booleans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ABOVE_ALL = float(np.nextafter(1.0, 2.0))
"""A threshold no score in [0, 1] reaches: everything escalates."""


@dataclass(frozen=True, slots=True)
class ThresholdPick:
    """A picked threshold and what it gave on the profiling queries it was picked on."""

    tau: float
    target: str  # "local_share", "accuracy" or "fixed"
    goal: float
    profile_share: float
    profile_accuracy: float
    n: int


def routed(scores: np.ndarray, local_ok: np.ndarray, edge_ok: np.ndarray, tau: float) -> tuple[float, float]:
    """(local share, accuracy) of routing at `tau`."""
    s = np.asarray(scores, dtype=np.float64)
    local = s >= tau
    ok = np.where(local, np.asarray(local_ok, bool), np.asarray(edge_ok, bool))
    return (float(local.mean()), float(ok.mean())) if len(s) else (float("nan"), float("nan"))


def candidate_taus(scores: np.ndarray) -> np.ndarray:
    """Every distinct routing of `scores`: thresholds between consecutive distinct scores, from
    everything local (the lowest score) to nothing local (ABOVE_ALL), in increasing order."""
    u = np.unique(np.asarray(scores, dtype=np.float64))
    if len(u) == 0:
        return np.array([ABOVE_ALL])
    mids = (u[:-1] + u[1:]) / 2
    return np.concatenate([[u[0]], mids, [max(ABOVE_ALL, float(np.nextafter(u[-1], np.inf)))]])


def tau_for_share(scores: np.ndarray, share: float) -> float:
    """The threshold that keeps `share` of these scores local: halfway between the order statistics
    on either side of the cut, so a score distribution like this one splits at the same share. A
    share of 1 is every score (0), of 0 none (ABOVE_ALL: scores are probabilities)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    n = len(s)
    if share >= 1:
        return 0.0
    k = int(round(share * n))  # queries kept local
    if share <= 0 or n == 0 or k <= 0:
        return ABOVE_ALL
    if k >= n:
        return 0.0
    return float((s[k - 1] + s[k]) / 2) if s[k - 1] > s[k] else float(s[k - 1])


def pick_threshold(scores: np.ndarray, local_ok: np.ndarray, edge_ok: np.ndarray, *,
                   target_local_share: float = 0.0, target_accuracy: float = 0.0,
                   fixed_tau: float = 0.6) -> ThresholdPick:
    """The threshold for one target (at most one of them > 0; neither: `fixed_tau`), with the share
    and accuracy it gives on these profiling queries."""
    if target_local_share > 0 and target_accuracy > 0:
        raise ValueError("give a target local share or a target accuracy, not both")
    scores = np.asarray(scores, dtype=np.float64)
    if target_local_share > 0:
        tau, target, goal = tau_for_share(scores, target_local_share), "local_share", target_local_share
    elif target_accuracy > 0:
        taus = candidate_taus(scores)
        ok = [routed(scores, local_ok, edge_ok, t)[1] >= target_accuracy - 1e-12 for t in taus]
        tau = float(taus[int(np.argmax(ok))]) if any(ok) else float(taus[-1])  # lowest tau: most local
        target, goal = "accuracy", target_accuracy
    else:
        tau, target, goal = fixed_tau, "fixed", fixed_tau
    share, acc = routed(scores, local_ok, edge_ok, tau)
    return ThresholdPick(tau, target, goal, share, acc, len(scores))


def sweep(scores: np.ndarray, local_ok: np.ndarray, edge_ok: np.ndarray, local_s: np.ndarray,
          edge_s: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """(len(taus), 3): local share, accuracy and mean delay of routing at each tau, where a query
    answered locally takes `local_s` and an escalated one `edge_s` (per-query seconds, e.g. from
    a run of each path)."""
    s = np.asarray(scores, dtype=np.float64)
    out = np.empty((len(taus), 3))
    for i, t in enumerate(taus):
        local = s >= t
        out[i] = (local.mean(), np.where(local, local_ok, edge_ok).mean(), np.where(local, local_s, edge_s).mean())
    return out
