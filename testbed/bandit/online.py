"""The learned state of one adaptive-density policy run, and how a run starts it.

A run fits the profiling split once (`fit_records`: context builder, profiling contexts, every
density's correctness, the backbone), then each adaptive policy gets a `BanditRun` of its own
(`start_run`): a warm-started agent, its random generator, the proxy-reward settings and the
decision logger. The policy calls `context`, `choose` and `learn` between effects, so the calls
happen in the interpreter's order of events: simulated-time order in the sim (the same seed
gives the same choices whatever the number of clients), real-time order in real runs, where a
lock keeps concurrent clients' calls whole.

Arrays and records in, values out: no clock, no file but the agent state the caller names.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from testbed.bandit.agents import MAX_FRAMES, TAU_PROXY, Agent, CostModel, Decision, proxy_success
from testbed.bandit.features import ContextBuilder
from testbed.bandit.ope import DecisionLog, DecisionLogger
from testbed.bandit.persist import load_agent_state, save_agent_state
from testbed.bandit.profiling import Profiling, fit_profiling, make_agent
from testbed.query import DENSITIES, ContextInputs, Media, QueryRecord
from testbed.tokenizer.sampling import KEYFRAME_SAMPLER, Sampler, sample_indices


def sampled_frames(media: Media, sampler: Sampler = KEYFRAME_SAMPLER) -> int:
    """Frames `sampler` takes from `media` (from its metadata; an image is one frame): n in Eq. 4."""
    if media.kind == "image":
        return 1
    return int(len(sample_indices(media.n_frames, media.fps, media.keyframe_array, sampler)))  # type: ignore[union-attr]


def _all_or_none(values: Sequence[Any]) -> list[Any] | None:
    """None when no query has the input; the list otherwise (fit_profiling refuses a partial one)."""
    return None if all(v is None for v in values) else list(values)


def fit_records(records: Sequence[QueryRecord], n_frames: Sequence[float], small_temperature: float,
                seed: int = 0, train: bool = True, densities: Sequence[int] = DENSITIES,
                contexts: Sequence[ContextInputs] | None = None, cache: Path | None = None,
                **train_kw: Any) -> Profiling:
    """`fit_profiling` on profiling records: their frames (as the policy's sampler takes them),
    logits, answers and context inputs (the records' own unless `contexts` is given, as a real run
    computes them). Every record needs the small model's and the large model's logits at every
    density."""
    if any(r.small_logits is None or any(a not in r.large_logits for a in densities) for r in records):
        raise ValueError("the density agent is fitted on profiling queries with the small model's logits and the "
                         "large model's at every density")
    ctx = list(contexts) if contexts is not None else [r.context for r in records]
    if len(ctx) != len(records) or len(n_frames) != len(records):
        raise ValueError("need one frame count and one set of context inputs per profiling record")
    return fit_profiling(
        n_frames, [r.small_logits for r in records], [r.large_logits for r in records],  # type: ignore[misc]
        [r.answer for r in records], small_temperature,
        txt=_all_or_none([c.txt for c in ctx]), vis=_all_or_none([c.vis for c in ctx]),
        s_max=_all_or_none([c.s_max for c in ctx]), s_mean=_all_or_none([c.s_mean for c in ctx]),
        s_cplx=_all_or_none([c.s_cplx for c in ctx]), densities=densities, seed=seed, train=train, cache=cache,
        **train_kw)


@dataclass
class BanditRun:
    """One adaptive policy's learner for one run: the agent, the generator every choice draws
    from, the context builder, and what the online update needs (the large model's temperature,
    tau_proxy, whether to learn at all). Every decision the edge answered is logged."""

    agent: Agent
    rng: np.random.Generator
    builder: ContextBuilder
    large_temperature: float = 1.0
    tau_proxy: float = TAU_PROXY
    online: bool = True
    logger: DecisionLogger = field(default_factory=lambda: DecisionLogger(DENSITIES))
    query_ids: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def cost(self) -> CostModel:
        return self.agent.cost

    def context(self, n_frames: int, small_logits: np.ndarray, inputs: ContextInputs) -> np.ndarray:
        """The context vector c of Eq. 4 for one query."""
        return self.builder.one(n_frames, small_logits, inputs.txt, inputs.vis, inputs.s_max, inputs.s_mean,
                                inputs.s_cplx)

    def choose(self, context: np.ndarray, n_frames: int) -> Decision:
        """The agent's density for this context (Eq. 15-16 for the Thompson agent)."""
        with self._lock:
            return self.agent.select(context, n_frames, self.rng)

    def learn(self, query_id: str, context: np.ndarray, n_frames: int, decision: Decision,
              large_logits: np.ndarray) -> float:
        """After the edge answered: the proxy success 1{kappa_L > tau_proxy} (Eq. 12), the agent's
        rank-1 update with it (Eq. 14, unless the run is frozen), and the logged decision with its
        proxy reward. Returns the proxy success."""
        success = proxy_success(large_logits, self.large_temperature, self.tau_proxy)
        with self._lock:
            if self.online:
                self.agent.update(context, decision.action, success)
            self.logger.append(context, n_frames, decision, self.cost.reward(success, n_frames, decision.action))
            self.query_ids.append(query_id)
        return success

    def proxy_rewards(self, large_logits: Mapping[int, np.ndarray], n_frames: float) -> np.ndarray:
        """(K,) every density's proxy reward (Eq. 12) where the large model's logits at each density
        are known (a trace), for the decision log."""
        return np.array([self.cost.reward(proxy_success(large_logits[a], self.large_temperature, self.tau_proxy),
                                          n_frames, a) for a in self.cost.densities])

    def decision_log(self, all_rewards: Mapping[str, np.ndarray] | None = None) -> DecisionLog | None:
        """The decisions so far (None if there are none), with every density's reward filled in from
        `all_rewards` (query id -> (K,)) where given."""
        if not self.query_ids:
            return None
        log = self.logger.log()
        if all_rewards:
            k = len(log.densities)
            every = np.stack([np.asarray(all_rewards.get(q, np.full(k, np.nan)), dtype=np.float64)
                              for q in self.query_ids])
            log = replace(log, all_rewards=every)
        return log

    def save(self, path: Path | str, extra: dict[str, Any] | None = None) -> None:
        """Write the agent's state and the generator (see testbed.bandit.persist)."""
        with self._lock:
            save_agent_state(path, self.agent, self.rng, {"decisions": len(self.query_ids), **(extra or {})})


def start_run(kind: str, profiling: Profiling, *, seed: Sequence[int] | int, cost_weight: float = 1.0,
              large_temperature: float = 1.0, tau_proxy: float = TAU_PROXY, online: bool = True,
              load_state: Path | str | None = None, meta: dict[str, Any] | None = None,
              **agent_kw: Any) -> BanditRun:
    """A warm-started agent of `kind` (see `make_agent`) with its own generator seeded by `seed`,
    or, with `load_state`, the agent and generator a previous run saved (refused in one line when
    it was made for another agent, densities, features or hyper-parameters)."""
    cost = CostModel(profiling.densities, MAX_FRAMES, cost_weight)
    agent = make_agent(kind, profiling, cost, **agent_kw)
    rng = np.random.default_rng(seed)
    if load_state:
        rng, _ = load_agent_state(load_state, agent)
    logger = DecisionLogger(profiling.densities, {
        "agent": agent.kind, "cost_weight": cost_weight, "max_frames": cost.max_frames, "tau_proxy": tau_proxy,
        "reward": "proxy (seed 000 Eq. 12)", "online": online, **(meta or {})})
    return BanditRun(agent, rng, profiling.builder, large_temperature, tau_proxy, online, logger)
