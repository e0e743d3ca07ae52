"""Decision logs and off-policy evaluation (OPE) of a density agent from them.

A log holds, per decision i: the context c_i (p,), frames n_i, the density chosen a_i, its reward
r_i (Eq. 11 or 12), the propensity p_i with which the logging agent chose a_i, and optionally
every density's reward where it is known (traces record each density's outcome), NaN elsewhere.

Estimators of a target policy pi's value V = E[sum_a pi(a|c) r(c, a)], given pi(.|c_i) for every
logged context as (N, K) probabilities (`target_probs`):

- IPS: mean of w_i r_i with w_i = pi(a_i|c_i) / p_i (Horvitz-Thompson);
- doubly robust: mean of sum_a pi(a|c_i) q(c_i, a) + w_i (r_i - q(c_i, a_i)), with a reward model
  q; by default a ridge regression per density on the standardised context, cross-fitted on two
  folds so no decision's own reward enters its q (Chernozhukov et al. 2018).

Both come with a 95% normal interval from the per-decision terms' standard error (the terms are
independent given a fixed target and logging propensities). Saved as .npz plus a JSON card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np

from testbed.bandit._files import card_loader, read_npz_card, require, write_npz_card
from testbed.bandit.agents import Agent, Decision
from testbed.bandit.errors import CorruptFileError

FORMAT = "testbed.bandit.decision_log"
VERSION = 1
Z95 = 1.959963984540054


@dataclass(frozen=True)
class DecisionLog:
    """Shapes: contexts (N, p); n_frames, actions (densities), rewards, propensities (N,);
    all_rewards (N, K) with NaN where a density's reward is unknown."""

    densities: tuple[int, ...]
    contexts: np.ndarray
    n_frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    all_rewards: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def action_index(self) -> np.ndarray:
        lookup = {d: i for i, d in enumerate(self.densities)}
        return np.array([lookup[int(a)] for a in self.actions], dtype=np.int64)


class DecisionLogger:
    """Appends decisions during a run; `log()` freezes them into a DecisionLog."""

    def __init__(self, densities: Sequence[int], meta: dict[str, Any] | None = None) -> None:
        self.densities = tuple(int(d) for d in densities)
        self.meta = dict(meta or {})
        self._rows: list[tuple[np.ndarray, float, int, float, float, np.ndarray]] = []

    def append(self, context: np.ndarray, n_frames: float, decision: Decision, reward: float,
               all_rewards: Sequence[float] | None = None) -> None:
        k = len(self.densities)
        every = np.full(k, np.nan) if all_rewards is None else np.asarray(all_rewards, dtype=np.float64)
        if every.shape != (k,):
            raise ValueError(f"all_rewards needs one value per density ({k}), got shape {every.shape}")
        self._rows.append((np.asarray(context, dtype=np.float64), float(n_frames), int(decision.action),
                           float(reward), float(decision.propensity), every))

    def log(self) -> DecisionLog:
        if not self._rows:
            raise ValueError("no decisions logged")
        c, n, a, r, p, every = zip(*self._rows)
        return DecisionLog(self.densities, np.stack(c), np.array(n), np.array(a, dtype=np.int64), np.array(r),
                           np.array(p), np.stack(every), dict(self.meta))


def save_log(log: DecisionLog, path: Path | str) -> None:
    arrays = {"contexts": log.contexts, "n_frames": log.n_frames, "actions": log.actions, "rewards": log.rewards,
              "propensities": log.propensities, "all_rewards": log.all_rewards}
    write_npz_card(path, arrays, {"format": FORMAT, "version": VERSION, "densities": list(log.densities),
                                  "meta": log.meta})


@card_loader
def load_log(path: Path | str) -> DecisionLog:
    arrays, card = read_npz_card(path, FORMAT, VERSION)
    dens = tuple(int(d) for d in card.get("densities", ()))
    ctx = arrays.get("contexts")
    if ctx is None or ctx.ndim != 2:
        raise CorruptFileError(path, "contexts must be a (decisions, features) array")
    n, p = ctx.shape
    require(path, arrays, {"contexts": (n, p), "n_frames": (n,), "actions": (n,), "rewards": (n,),
                           "propensities": (n,), "all_rewards": (n, len(dens))}, may_be_nan=("all_rewards",))
    if not set(np.unique(arrays["actions"]).tolist()) <= set(dens):
        raise CorruptFileError(path, f"actions outside the densities {list(dens)}")
    if not ((arrays["propensities"] > 0) & (arrays["propensities"] <= 1)).all():
        raise CorruptFileError(path, "propensities must lie in (0, 1]")
    return DecisionLog(dens, arrays["contexts"], arrays["n_frames"], arrays["actions"], arrays["rewards"],
                       arrays["propensities"], arrays["all_rewards"], dict(card.get("meta", {})))


# --- estimators -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Estimate:
    """A policy value estimate with its standard error and 95% interval."""

    value: float
    se: float
    low: float
    high: float
    n: int

    @classmethod
    def of_terms(cls, terms: np.ndarray) -> Estimate:
        n = len(terms)
        mean = float(terms.mean())
        se = float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
        return cls(mean, se, mean - Z95 * se, mean + Z95 * se, n)

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


def target_probs(agent: Agent, log: DecisionLog, rng: np.random.Generator, draws: int = 1000) -> np.ndarray:
    """(N, K) the target agent's action probabilities at each logged context, in its current
    (frozen) state; Monte Carlo with `draws` samples where they are not known exactly."""
    if tuple(agent.densities) != log.densities:
        raise ValueError(f"the agent's densities {agent.densities} differ from the log's {log.densities}")
    return np.stack([agent.action_probs(c, n, rng, draws=draws) for c, n in zip(log.contexts, log.n_frames)])


def _check(log: DecisionLog, probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(log), len(log.densities)):
        raise ValueError(f"target probabilities have shape {probs.shape}, expected ({len(log)}, "
                         f"{len(log.densities)})")
    return probs


def ips(log: DecisionLog, probs: np.ndarray) -> Estimate:
    """Inverse propensity scoring estimate of the target's value."""
    probs = _check(log, probs)
    w = probs[np.arange(len(log)), log.action_index] / log.propensities
    return Estimate.of_terms(w * log.rewards)


def reward_model(log: DecisionLog, folds: int = 2, ridge: float = 1.0, seed: int = 0) -> np.ndarray:
    """(N, K) cross-fitted predictions q(c_i, a): per density a ridge regression on
    [1, standardised c, n] fitted on the other folds' decisions that chose a (0 where a fold has
    none)."""
    n, k = len(log), len(log.densities)
    c = np.column_stack([log.contexts, log.n_frames])
    std = c.std(axis=0)
    x = np.column_stack([np.ones(n), (c - c.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)])
    fold = np.random.default_rng(seed).permutation(n) % folds
    a = log.action_index
    q = np.zeros((n, k))
    reg = ridge * np.eye(x.shape[1])
    reg[0, 0] = 0.0  # no shrinkage of the intercept
    for f in range(folds):
        train, test = fold != f, fold == f
        for j in range(k):
            m = train & (a == j)
            if m.sum() == 0:
                continue
            beta = np.linalg.lstsq(x[m].T @ x[m] + reg, x[m].T @ log.rewards[m], rcond=None)[0]
            q[test, j] = x[test] @ beta
    return q


def doubly_robust(log: DecisionLog, probs: np.ndarray, q: np.ndarray | None = None) -> Estimate:
    """Doubly robust estimate of the target's value with reward model q (N, K) (default:
    `reward_model(log)`)."""
    probs = _check(log, probs)
    q = reward_model(log) if q is None else np.asarray(q, dtype=np.float64)
    rows = np.arange(len(log))
    a = log.action_index
    w = probs[rows, a] / log.propensities
    return Estimate.of_terms((probs * q).sum(axis=1) + w * (log.rewards - q[rows, a]))


def hindsight_value(log: DecisionLog, probs: np.ndarray) -> float:
    """The target's value on the logged queries computed from every density's known reward (no
    estimation); NaN if some reward the target could choose is unknown."""
    probs = _check(log, probs)
    r = np.where(probs > 0, log.all_rewards, 0.0)
    if np.isnan(r).any():
        return float("nan")
    return float((probs * r).sum(axis=1).mean())
