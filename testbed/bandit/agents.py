"""Density agents: one interface, several strategies (seed 000 Eq. 11-16 for the Thompson one).

Every agent chooses a density a in `densities` for a query from its context c (see `features`)
and its frame count n, by maximising estimated success minus the known token cost:

    score(a) = p_hat(a) - lambda * n * a,   lambda = weight / (max_frames * max(densities))

so the largest token volume costs `weight` (1 by default, Eq. 16). Since the cost is known
exactly, agents learn only the success probability: `update(c, a, success)` takes the outcome
1{correct} offline or the proxy 1{kappa_L > tau_proxy} online (Eq. 12, `proxy_success`); the
reward of Eq. 11/12 is `CostModel.reward(success, n, a)`.

Rules: every random choice draws from the numpy Generator the caller passes (the same seed gives
the same choices); the linear posteriors are updated by rank-1 (Sherman-Morrison) steps, never a
fresh inverse per query; an agent's learned state is plain arrays (`state_arrays`) plus the
configuration that must match for it to be restored (`state_config`, see `persist`).

Agents are mutable learners, one per run, owned by whoever drives the run; they hold no
reference to a clock or a file.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol
from collections.abc import Mapping

import numpy as np

from testbed.query import DENSITIES
from testbed.router.calibration import confidence

TAU_PROXY = 0.6
"""tau_proxy: the large model's calibrated confidence above which its answer counts as correct."""
LAMBDA0 = 0.1
"""lambda_0: the prior precision of every per-density Bayesian linear regression (Eq. 13)."""
ALPHA = 0.05
"""alpha: the scale of the Thompson-sampling posterior, beta ~ N(A^-1 b, alpha^2 A^-1)."""
MAX_FRAMES = 512
"""The most frames a sampler takes (the keyframe sampler's cap), for normalising lambda."""
PROPENSITY_DRAWS = 200
"""Monte Carlo draws for a Thompson decision's propensity (conditional Monte Carlo, see
`win_probability`: its error at 200 draws is far below plain counting's at 1,000)."""


def proxy_success(large_logits: np.ndarray, temperature: float = 1.0, tau_proxy: float = TAU_PROXY) -> float:
    """1{kappa_L > tau_proxy} (Eq. 12) from the large model's option logits (K,) and its
    calibrated temperature."""
    return float(confidence(np.asarray(large_logits, dtype=np.float64)[None, :], temperature)[0] > tau_proxy)


@dataclass(frozen=True, slots=True)
class CostModel:
    """The token-volume penalty lambda * n * a of Eq. 11 and 16."""

    densities: tuple[int, ...] = DENSITIES
    max_frames: int = MAX_FRAMES
    weight: float = 1.0

    @property
    def lam(self) -> float:
        return self.weight / (self.max_frames * max(self.densities))

    def costs(self, n_frames: float) -> np.ndarray:
        """(K,) the cost of each density for a query of n frames."""
        return self.lam * float(n_frames) * np.asarray(self.densities, dtype=np.float64)

    def reward(self, success: float, n_frames: float, density: int) -> float:
        """Eq. 11 (success = 1{correct}) or Eq. 12 (success = proxy)."""
        return float(success) - self.lam * float(n_frames) * density


def instant_regret(hindsight: Mapping[int, float], n_frames: float, density: int, cost: CostModel) -> float:
    """Exact regret of choosing `density` when every density's outcome (density -> 1{correct}) is
    known: the best reward in hindsight minus the chosen one."""
    best = max(float(hindsight[a]) - cost.lam * n_frames * a for a in cost.densities)
    return best - cost.reward(hindsight[density], n_frames, density)


@dataclass(frozen=True, slots=True)
class Decision:
    """An agent's choice for one query. `propensity` is the probability that the agent, in the
    state it had, picks `action` for this context (1 for deterministic agents, Monte Carlo for
    Thompson); `scores` (K values) is what it maximised: sampled or estimated success minus cost.
    `index` is the density's position in the agent's densities."""

    action: int
    index: int
    propensity: float
    scores: tuple[float, ...]


# --- feature maps -----------------------------------------------------------------------------


class Features(Protocol):
    """Maps contexts (p,) or (m, p) to features (d,) or (m, d)."""

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def transform(self, c: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class RawFeatures:
    """The raw context, standardised with the profiling split's mean and scale, plus a constant 1
    (so a linear model has an intercept): the features of LinUCB on the raw context."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, contexts: np.ndarray) -> RawFeatures:
        c = np.atleast_2d(np.asarray(contexts, dtype=np.float64))
        std = c.std(axis=0)
        return cls(c.mean(axis=0), np.where(std > 1e-8, std, 1.0))

    @classmethod
    def identity(cls, p: int) -> RawFeatures:
        return cls(np.zeros(p), np.ones(p))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0]) + 1

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.mean.tobytes() + self.scale.tobytes()).hexdigest()[:16]

    def transform(self, c: np.ndarray) -> np.ndarray:
        x = (np.asarray(c, dtype=np.float64) - self.mean) / self.scale
        return np.concatenate([x, np.ones(x.shape[:-1] + (1,))], axis=-1)


# --- per-density Bayesian linear regression ---------------------------------------------------


class LinearPosteriors:
    """For each of K actions: A = lambda0 I + sum u u^T, b = sum u r, and A^-1, mu = A^-1 b.

    Shapes: A, A_inv (K, d, d); b, mu (K, d); counts (K,). `update` is a rank-1
    Sherman-Morrison step (O(d^2)); only `add_batch` (the warm start) solves afresh."""

    def __init__(self, k: int, d: int, lambda0: float = LAMBDA0) -> None:
        self.lambda0 = float(lambda0)
        self.A = np.tile(np.eye(d) * lambda0, (k, 1, 1))
        self.A_inv = np.tile(np.eye(d) / lambda0, (k, 1, 1))
        self.b = np.zeros((k, d))
        self.mu = np.zeros((k, d))
        self.counts = np.zeros(k, dtype=np.int64)

    def update(self, k: int, u: np.ndarray, r: float) -> None:
        v = self.A_inv[k] @ u
        # outer(v, v) is exactly symmetric in floating point, so A_inv stays symmetric
        self.A_inv[k] -= np.outer(v, v) / (1.0 + u @ v)
        self.A[k] += np.outer(u, u)
        self.b[k] += r * u
        self.mu[k] = self.A_inv[k] @ self.b[k]
        self.counts[k] += 1

    def add_batch(self, k: int, u: np.ndarray, r: np.ndarray) -> None:
        """Accumulate many samples (n, d), (n,) at once (Eq. 13) and re-solve once."""
        u = np.atleast_2d(np.asarray(u, dtype=np.float64))
        self.A[k] += u.T @ u
        self.b[k] += u.T @ np.asarray(r, dtype=np.float64)
        chol = np.linalg.cholesky(self.A[k])
        inv_l = np.linalg.solve(chol, np.eye(len(chol)))
        inv = inv_l.T @ inv_l
        self.A_inv[k] = (inv + inv.T) / 2
        self.mu[k] = self.A_inv[k] @ self.b[k]
        self.counts[k] += len(u)

    def mean_and_var(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K,) posterior mean u^T mu_a and u^T A_a^-1 u of the linear score at features u (d,)."""
        v = self.A_inv @ u
        return self.mu @ u, np.maximum(v @ u, 0.0)

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {f"{prefix}A": self.A, f"{prefix}A_inv": self.A_inv, f"{prefix}b": self.b, f"{prefix}mu": self.mu,
                f"{prefix}counts": self.counts}

    def set_arrays(self, arrays: Mapping[str, np.ndarray], prefix: str = "") -> None:
        for name in ("A", "A_inv", "b", "mu", "counts"):
            setattr(self, name, np.array(arrays[prefix + name], dtype=getattr(self, name).dtype))


# --- the interface ----------------------------------------------------------------------------


class Agent(ABC):
    """Chooses a density per query and learns from the outcome.

    `select` is the only abstract method every agent implements; `action_probs` (needed for
    off-policy evaluation) has a Monte Carlo default built on `select`, overridden where the
    probabilities are known exactly. `hindsight` (density -> 1{correct}) is given only to the
    Oracle; the others ignore it."""

    kind: ClassVar[str]

    def __init__(self, cost: CostModel) -> None:
        self.cost = cost

    @property
    def densities(self) -> tuple[int, ...]:
        return self.cost.densities

    @abstractmethod
    def select(self, context: np.ndarray, n_frames: float, rng: np.random.Generator,
               hindsight: Mapping[int, float] | None = None) -> Decision:
        """Choose a density for one query: context (p,), frames n."""

    def update(self, context: np.ndarray, action: int, success: float) -> None:  # noqa: B027 - optional hook
        """Learn from the outcome of `action` (a density): success in [0, 1] (1{correct}
        or the proxy). Agents that do not learn ignore it."""

    def action_probs(self, context: np.ndarray, n_frames: float, rng: np.random.Generator,
                     hindsight: Mapping[int, float] | None = None, draws: int = PROPENSITY_DRAWS) -> np.ndarray:
        """(K,) the probability of each density in the current state; by default estimated from
        `draws` calls of `select`."""
        counts = np.zeros(len(self.densities))
        for _ in range(draws):
            counts[self.select(context, n_frames, rng, hindsight).index] += 1
        return counts / draws

    def index(self, density: int) -> int:
        try:
            return self.densities.index(int(density))
        except ValueError:
            raise ValueError(f"density {density} is not one of {self.densities}") from None

    # persistence (see testbed.bandit.persist)
    def state_config(self) -> dict[str, Any]:
        """What must be equal for a saved state to be restored into this agent."""
        return {"densities": list(self.densities), "max_frames": self.cost.max_frames, "weight": self.cost.weight}

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def set_state(self, arrays: Mapping[str, np.ndarray]) -> None:  # noqa: B027 - optional hook
        """Restore `state_arrays` (already checked for names and shapes)."""

    def _decide(self, scores: np.ndarray, propensity: float) -> Decision:
        i = int(np.argmax(scores))  # ties go to the smaller density
        return Decision(self.densities[i], i, float(propensity), tuple(scores.tolist()))


class FixedDensity(Agent):
    """Always the same density (the `quickgrasp-fixed{a}` ablations)."""

    kind = "fixed"

    def __init__(self, density: int, cost: CostModel | None = None) -> None:
        super().__init__(cost or CostModel())
        self.density = int(density)
        self._i = self.index(density)

    def select(self, context: np.ndarray, n_frames: float, rng: np.random.Generator,
               hindsight: Mapping[int, float] | None = None) -> Decision:
        scores = np.where(np.arange(len(self.densities)) == self._i, 1.0, 0.0)
        return self._decide(scores, 1.0)

    def action_probs(self, context: np.ndarray, n_frames: float, rng: np.random.Generator,
                     hindsight: Mapping[int, float] | None = None, draws: int = PROPENSITY_DRAWS) -> np.ndarray:
        return np.eye(len(self.densities))[self._i]

    def state_config(self) -> dict[str, Any]:
        return {**super().state_config(), "density": self.density}


class Oracle(Agent):
    """The per-query best density in hindsight: the largest 1{correct} - lambda n a, that is the
    cheapest correct density (the cheapest of all when none is correct). An upper bound that
    needs `hindsight`; regret is measured against it."""

    kind = "oracle"

    def __init__(self, cost: CostModel | None = None) -> None:
        super().__init__(cost or CostModel())

    def select(self, context: np.ndarray, n_frames: float, rng: np.random.Generator,
               hindsight: Mapping[int, float] | None = None) -> Decision:
        if hindsight is None:
            raise ValueError("the oracle needs hindsight: density -> 1{correct}")
        outcome = np.array([float(hindsight[a]) for a in self.densities])
        return self._decide(outcome - self.cost.costs(n_frames), 1.0)

    def action_probs(self, context: np.ndarray, n_frames: float, rng: np.random.Generator,
                     hindsight: Mapping[int, float] | None = None, draws: int = PROPENSITY_DRAWS) -> np.ndarray:
        return np.eye(len(self.densities))[self.select(context, n_frames, rng, hindsight).index]


class _LinearAgent(Agent):
    """Shared by the agents that keep one Bayesian linear regression per density on features."""

    def __init__(self, features: Features, cost: CostModel | None, lambda0: float) -> None:
        super().__init__(cost or CostModel())
        self.features = features
        self.posterior = LinearPosteriors(len(self.densities), features.dim, lambda0)
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def warm_start(self, contexts: np.ndarray, actions: np.ndarray, success: np.ndarray) -> None:
        """Accumulate profiling samples (Eq. 13): contexts (n, p), actions (n,) densities,
        success (n,) = 1{correct}. See `backbone.full_information` for full-information traces."""
        u = self.features.transform(np.atleast_2d(np.asarray(contexts, dtype=np.float64)))
        a = np.asarray(actions)
        r = np.asarray(success, dtype=np.float64)
        for k, dens in enumerate(self.densities):
            m = a == dens
            if m.any():
                self.posterior.add_batch(k, u[m], r[m])

    def _features(self, context: np.ndarray) -> np.ndarray:
        """phi(c), remembered for the last context: `update` usually follows `select` on it."""
        c = np.asarray(context, dtype=np.float64)
        if self._last is None or not np.array_equal(self._last[0], c):
            self._last = (c.copy(), self.features.transform(c))
        return self._last[1]

    def update(self, context: np.ndarray, action: int, success: float) -> None:  # noqa: B027 - optional hook
        self.posterior.update(self.index(action), self._features(context), float(success))

    def state_config(self) -> dict[str, Any]:
        return {**super().state_config(), "feature_dim": self.features.dim,
                "features": self.features.fingerprint, "lambda0": self.posterior.lambda0}

    def state_arrays(self) -> dict[str, np.ndarray]:
        return self.posterior.arrays()

    def set_state(self, arrays: Mapping[str, np.ndarray]) -> None:  # noqa: B027 - optional hook
        self.posterior.set_arrays(arrays)


def _below(mean: np.ndarray, sd: np.ndarray, cost: np.ndarray, i: int, s: np.ndarray) -> np.ndarray:
    """(M,) the probability that every other density scores below density i's score s (M,): for
    j after i P(score_j <= s), for j before i P(score_j < s), ties going to the smaller index as
    np.argmax does; the two differ only at the clipping point masses and where sd_j = 0."""
    from scipy.special import ndtr  # here, not at the top: only the density agents' draws need scipy.special

    t = s[None, :] + cost[:, None]  # (K, M): X_j must stay below t for j's score to stay below s
    m = mean[:, None]
    pos = sd > 0
    before = (np.arange(len(mean)) < i)[:, None]
    p = ndtr((t - m) / np.where(pos, sd, 1.0)[:, None])
    if not pos.all():
        p = np.where(pos[:, None], p, np.where(before, m < t, m <= t))
    p[np.where(before, t > 1, t >= 1)] = 1.0  # clipped at 1: always at or below
    p[np.where(before, t <= 0, t < 0)] = 0.0  # clipped at 0: never below
    p[i] = 1.0
    return p.prod(axis=0)


def win_probability(mean: np.ndarray, sd: np.ndarray, cost: np.ndarray, i: int, rng: np.random.Generator,
                    draws: int) -> float:
    """P(argmax_a clip(X_a, 0, 1) - cost_a = i) for independent X_a ~ N(mean_a, sd_a^2) (K,), ties
    going to the smaller index, by conditional Monte Carlo: given X_i, every other density's
    chance of scoring below is a normal CDF. The clipping point masses X_i <= 0 and X_i >= 1 are
    weighted exactly; `draws` values of X_i inside (0, 1) average the rest, stratified: one uniform
    draw of the generator in each of `draws` equal slices of X_i's probability there, mapped by
    the inverse CDF. Unbiased, and far less variance than counting argmax wins."""
    from scipy.special import ndtr, ndtri

    m, s_ = float(mean[i]), float(sd[i])
    if s_ <= 0:
        return float(_below(mean, sd, cost, i, np.array([min(max(m, 0.0), 1.0) - cost[i]]))[0])
    lo, hi = float(ndtr(-m / s_)), float(ndtr((1 - m) / s_))  # P(X_i <= 0), P(X_i < 1)
    u = lo + (hi - lo) * (np.arange(draws) + rng.random(draws)) / draws  # one draw per stratum
    x = np.concatenate([[0.0, 1.0], np.clip(m + s_ * ndtri(u), 0.0, 1.0)])
    weights = np.concatenate([[lo, 1.0 - hi], np.full(draws, (hi - lo) / draws)])
    return float(weights @ _below(mean, sd, cost, i, x - cost[i]))


class NeuralLinearThompson(_LinearAgent):
    """QuickGrasp's agent (Eq. 13-16): per-density Bayesian linear regression on the frozen
    backbone's latent u, Thompson sampling beta_a ~ N(mu_a, alpha^2 A_a^-1), p_hat(a) =
    clip(u^T beta_a, 0, 1), choose argmax p_hat(a) - lambda n a.

    Only the scalar u^T beta_a enters the choice, and u^T beta_a ~ N(u^T mu_a, alpha^2 u^T A_a^-1 u)
    exactly, so each density's score is drawn from that one-dimensional normal: the same
    distribution of decisions as drawing the d_u-dimensional beta_a, at O(d_u^2) per density instead
    of a Cholesky factor per query. The propensity of the chosen density comes from
    `propensity_draws` further draws from the same generator (`win_probability`), clipped to
    [1e-12, 1] so that it is never 0 or past 1 by rounding (NaN with propensity_draws = 0, for runs that
    log no decisions)."""

    kind = "neural-linear-thompson"

    def __init__(self, backbone: Features, cost: CostModel | None = None, alpha: float = ALPHA,
                 lambda0: float = LAMBDA0, propensity_draws: int = PROPENSITY_DRAWS) -> None:
        super().__init__(backbone, cost, lambda0)
        self.alpha = float(alpha)
        self.propensity_draws = int(propensity_draws)

    def _normal(self, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, var = self.posterior.mean_and_var(self._features(context))
        return mean, self.alpha * np.sqrt(var)

    def select(self, context: np.ndarray, n_frames: float, rng: np.random.Generator,
               hindsight: Mapping[int, float] | None = None) -> Decision:
        mean, sd = self._normal(context)
        cost = self.cost.costs(n_frames)
        scores = np.clip(mean + sd * rng.standard_normal(len(mean)), 0.0, 1.0) - cost
        i = int(np.argmax(scores))
        propensity = float("nan")
        if self.propensity_draws > 0:
            # rounding can carry a sure win a few ulps past 1; the log requires (0, 1]
            propensity = min(max(win_probability(mean, sd, cost, i, rng, self.propensity_draws), 1e-12), 1.0)
        return self._decide(scores, propensity)

    def action_probs(self, context: np.ndarray, n_frames: float, rng: np.random.Generator,
                     hindsight: Mapping[int, float] | None = None, draws: int = PROPENSITY_DRAWS) -> np.ndarray:
        """Each density's win probability from `draws` conditional draws, normalised to sum to 1."""
        mean, sd = self._normal(context)
        cost = self.cost.costs(n_frames)
        p = np.array([win_probability(mean, sd, cost, i, rng, draws) for i in range(len(mean))])
        return p / p.sum()

    def state_config(self) -> dict[str, Any]:
        return {**super().state_config(), "alpha": self.alpha, "propensity_draws": self.propensity_draws}


class EpsilonGreedy(_LinearAgent):
    """Greedy on the posterior mean (clipped to [0, 1]) minus cost, a uniformly random density with
    probability epsilon. On the backbone's latent it isolates Thompson's exploration; on
    `RawFeatures` it is a plain linear epsilon-greedy. Two draws per decision, always."""

    kind = "epsilon-greedy"

    def __init__(self, features: Features, cost: CostModel | None = None, epsilon: float = 0.1,
                 lambda0: float = LAMBDA0) -> None:
        super().__init__(features, cost, lambda0)
        self.epsilon = float(epsilon)

    def _greedy(self, context: np.ndarray, n_frames: float) -> np.ndarray:
        mean, _ = self.posterior.mean_and_var(self._features(context))
        return np.clip(mean, 0.0, 1.0) - self.cost.costs(n_frames)

    def select(self, context: np.ndarray, n_frames: float, rng: np.random.Generator,
               hindsight: Mapping[int, float] | None = None) -> Decision:
        scores = self._greedy(context, n_frames)
        explore, pick = rng.random() < self.epsilon, int(rng.integers(len(scores)))
        greedy = int(np.argmax(scores))
        i = pick if explore else greedy
        k = len(scores)
        prop = self.epsilon / k + (1.0 - self.epsilon) * (i == greedy)
        return Decision(self.densities[i], i, prop, tuple(scores.tolist()))

    def action_probs(self, context: np.ndarray, n_frames: float, rng: np.random.Generator,
                     hindsight: Mapping[int, float] | None = None, draws: int = PROPENSITY_DRAWS) -> np.ndarray:
        scores = self._greedy(context, n_frames)
        k = len(scores)
        return np.full(k, self.epsilon / k) + (1.0 - self.epsilon) * np.eye(k)[int(np.argmax(scores))]

    def state_config(self) -> dict[str, Any]:
        return {**super().state_config(), "epsilon": self.epsilon}


class LinUCB(_LinearAgent):
    """LinUCB (Li et al. 2010) per density, on the raw standardised context by default:
    score(a) = u^T mu_a + alpha_ucb sqrt(u^T A_a^-1 u) - lambda n a. Deterministic."""

    kind = "linucb"

    def __init__(self, features: Features, cost: CostModel | None = None, alpha_ucb: float = 0.5,
                 lambda0: float = 1.0) -> None:
        super().__init__(features, cost, lambda0)
        self.alpha_ucb = float(alpha_ucb)

    def _scores(self, context: np.ndarray, n_frames: float) -> np.ndarray:
        mean, var = self.posterior.mean_and_var(self._features(context))
        return mean + self.alpha_ucb * np.sqrt(var) - self.cost.costs(n_frames)

    def select(self, context: np.ndarray, n_frames: float, rng: np.random.Generator,
               hindsight: Mapping[int, float] | None = None) -> Decision:
        return self._decide(self._scores(context, n_frames), 1.0)

    def action_probs(self, context: np.ndarray, n_frames: float, rng: np.random.Generator,
                     hindsight: Mapping[int, float] | None = None, draws: int = PROPENSITY_DRAWS) -> np.ndarray:
        return np.eye(len(self.densities))[int(np.argmax(self._scores(context, n_frames)))]

    def state_config(self) -> dict[str, Any]:
        return {**super().state_config(), "alpha_ucb": self.alpha_ucb}


AGENTS: dict[str, type[Agent]] = {cls.kind: cls for cls in (FixedDensity, Oracle, NeuralLinearThompson,
                                                            EpsilonGreedy, LinUCB)}
"""The registry of agent kinds (the name a saved state records)."""
