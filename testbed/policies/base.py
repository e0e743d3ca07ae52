"""What every policy receives besides the query: its knobs (from the scenario), the run's learned
state, and hindsight for oracles; and PolicySpec, what the registry knows of a policy.

Knobs are frozen dataclasses, one type per policy family, loaded from the scenario's table for
that policy (``[policies.quickgrasp-fixed16] tau_route = 0.7``); each field carries its help text.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from collections.abc import Callable, Sequence

from testbed.bandit.online import BanditRun, start_run
from testbed.bandit.profiling import Profiling
from testbed.config import help_field
from testbed.policies.effects import Policy, StreamPolicy
from testbed.query import Hindsight, Query, Stream
from testbed.query import QueryRecord
from testbed.router.calibration import Calibration
from testbed.router.threshold import ThresholdPick

if TYPE_CHECKING:
    from testbed.artifacts import ArtifactRows

T = TypeVar("T")


@dataclass(frozen=True)
class NoKnobs:
    """A policy that reads nothing but its name."""


@dataclass(frozen=True)
class RouteKnobs:
    """Knobs of a policy that routes each query by a score against a threshold (seed 000's calibrated
    confidence; seed 002's input-aware score): the threshold itself, or a target it is picked for on
    the profiling split (as RouteLLM calibrates its threshold)."""

    tau_route: float = help_field(0.6, "escalate when the router's score (seed 000: the small model's calibrated "
                                       "confidence) is below this (seed 000: 0.6); unused with a target",
                                       ge=0.0, le=1.0)
    target_local_share: float = help_field(0.0, "pick tau_route on the profiling split so that this share of "
                                                "queries is answered on the device (0: use tau_route)", ge=0.0, le=1.0)
    target_accuracy: float = help_field(0.0, "pick tau_route on the profiling split as the one keeping the most "
                                             "queries on the device whose routed accuracy is at least this "
                                             "(a fraction; 0: use tau_route)", ge=0.0, le=1.0)

    def __post_init__(self) -> None:
        from testbed.errors import ConfigError

        if self.target_local_share > 0 and self.target_accuracy > 0:
            raise ConfigError("target_accuracy", "give target_local_share or target_accuracy, not both")

    @property
    def has_target(self) -> bool:
        return self.target_local_share > 0 or self.target_accuracy > 0


@dataclass(frozen=True)
class AdaptiveKnobs(RouteKnobs):
    """Knobs of QuickGrasp with adaptive density (seed 000 SIII-C): the router's, plus what the
    density agent optimises and learns from, and where its state is saved or loaded."""

    tau_proxy: float = help_field(0.6, "after an edge answer, the large model's calibrated confidence above which "
                                       "it counts as correct for the online update (Eq. 12; seed 000: 0.6)",
                                       ge=0.0, le=1.0)
    cost_weight: float = help_field(1.0, "lambda's scale: what the largest token volume (512 frames at density 32) "
                                         "costs against a correct answer (Eq. 16; seed 000: 1)", ge=0.0)
    online: bool = help_field(True, "update the agent after each edge answer with the proxy reward (Eq. 14); "
                                    "false: it stays as the profiling split warm-started it")
    save_state: str = help_field("", "write the agent's learned state and random generator to this .npz (and its "
                                     ".json card) when the run ends; relative to the scenario file")
    load_state: str = help_field("", "start from a state saved by save_state instead of the profiling warm start "
                                     "(the same agent, densities, features and hyper-parameters, or a one-line "
                                     "error)")

    def agent_kw(self) -> dict[str, Any]:
        """The agent's own hyper-parameters (the constructor keywords of its kind)."""
        return {}


@dataclass(frozen=True)
class ThompsonKnobs(AdaptiveKnobs):
    """The neural-linear Thompson agent's (seed 000 SV-A)."""

    alpha: float = help_field(0.05, "Thompson sampling scale: beta ~ N(A^-1 b, alpha^2 A^-1) (seed 000: 0.05)", ge=0.0)
    lambda0: float = help_field(0.1, "prior precision of each density's Bayesian linear regression (Eq. 13; "
                                     "seed 000: 0.1)", gt=0.0)
    propensity_draws: int = help_field(200, "Monte Carlo draws per decision for its logged propensity (0: none, "
                                            "the log then cannot be evaluated off-policy)", ge=0)

    def agent_kw(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "lambda0": self.lambda0, "propensity_draws": self.propensity_draws}


@dataclass(frozen=True)
class EpsilonKnobs(AdaptiveKnobs):
    """Epsilon-greedy on the backbone's latent (the Thompson agent's exploration replaced)."""

    epsilon: float = help_field(0.1, "chance of a uniformly random density instead of the greedy one", ge=0.0,
                                 le=1.0)
    lambda0: float = help_field(0.1, "prior precision of each density's Bayesian linear regression", gt=0.0)

    def agent_kw(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "lambda0": self.lambda0}


@dataclass(frozen=True)
class LinUCBKnobs(AdaptiveKnobs):
    """LinUCB (Li et al. 2010) on the raw standardised context."""

    alpha_ucb: float = help_field(0.5, "width of the upper confidence bound: mean + alpha_ucb * sd", ge=0.0)
    lambda0: float = help_field(1.0, "ridge prior precision of each density's linear model", gt=0.0)

    def agent_kw(self) -> dict[str, Any]:
        return {"alpha_ucb": self.alpha_ucb, "lambda0": self.lambda0}


@dataclass
class RunState:
    """Learned state of one policy's run: the calibration, and for adaptive-density policies the
    density agent with its generator and decision log (`BanditRun`), for laecips-like the difficulty
    scores seen so far.

    One object per policy per run, built by whoever runs it (the engine, a real run) and threaded
    to the policy explicitly, never global."""

    calibration: Calibration = field(default_factory=Calibration)
    bandit: BanditRun | None = None
    learned: dict[str, Any] = field(default_factory=dict)
    """What a policy family learned, by slot (`Learned`): a router, a threshold, a crop plan."""


class Learned(Generic[T]):
    """A typed slot of RunState.learned, defined by the family whose warm-up or policy fills it, so
    that a family keeps what it learns without a field on RunState."""

    def __init__(self, name: str) -> None:
        self.name = name

    def get(self, state: RunState) -> T | None:
        return state.learned.get(self.name)

    def put(self, state: RunState, value: T) -> None:
        state.learned[self.name] = value

    def setdefault(self, state: RunState, value: T) -> T:
        return state.learned.setdefault(self.name, value)  # type: ignore[no-any-return]


THRESHOLD: Learned[ThresholdPick] = Learned("threshold")
"""A threshold picked for the knobs' target on the profiling split (`pick_target_threshold`)."""


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What a policy reads besides the query: its knobs, the run's learned state, the models'
    default density, and hindsight (given only to policies that need it, in trace-driven runs)."""

    knobs: Any = field(default_factory=NoKnobs)
    state: RunState = field(default_factory=RunState)
    default_density: int = 16
    hindsight: Hindsight | None = None

    @property
    def calibration(self) -> Calibration:
        return self.state.calibration

    @property
    def tau_route(self) -> float:
        """The routing threshold: the one picked for the knobs' target, else the knobs' tau_route."""
        pick = THRESHOLD.get(self.state)
        if pick is not None:
            return pick.tau
        return float(self.knobs.tau_route)


WarmUp = Callable[["PolicySpec", Any, RunState, Sequence[QueryRecord], int, int], None]
"""(spec, knobs, state, labelled profiling records, default density, seed) -> None: fills `state`."""


@dataclass(frozen=True)
class Router:
    """A policy family's router, carried by its specs: how it warms up on the profiling split and
    scores a query, and what a real run must measure on that split for it, so that runners never
    branch on family names."""

    name: str
    warm_up: WarmUp
    score: Callable[[RunState, Sequence[QueryRecord]], Any] | None = None
    """(n,) its score of labelled records (None: the small model's calibrated confidence)."""
    needs_profile: bool = False
    """It cannot run without a profiling split (a real run skips it, with a note; the sim refuses)."""
    signals: bool = False
    """A real run measures the profiling split's input signals for it (seed 002)."""
    views: bool = False
    """A real run answers the profiling split's crop views for it (seed 003)."""
    artifacts: tuple[ArtifactRows, ...] = ()
    """The run-level rows its policies add to a run (testbed.artifacts), written by their paper's section."""

    def __str__(self) -> str:
        return self.name


PolicyFn = Callable[[Query, PolicyContext], Policy]
StreamPolicyFn = Callable[[Stream, PolicyContext], StreamPolicy]


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A named policy: its generator function, its knobs type, whether it needs hindsight (so it
    runs only where a trace holds every outcome), whether it uses the calibration, and whether
    it answers camera streams (one generator per stream, `fn(stream, ctx)`) instead of queries."""

    name: str
    fn: Any  # PolicyFn, or StreamPolicyFn when `stream`
    knobs: type = NoKnobs
    needs_hindsight: bool = False
    calibrated: bool = True
    description: str = ""
    agent: str = ""
    """The density agent's kind (`testbed.bandit.make_agent`) for adaptive-density policies, whose
    run state then carries a BanditRun; "" for every other policy."""
    uses_density: bool = False
    """Escalates shared tokens at a density it chose (fixed or adaptive): results give such
    queries their regret against the oracle density."""
    stream: bool = False
    router: Router | None = None
    """Its family's router (testbed.policies.routers): how it scores a query against tau_route and
    warms up on the profiling split before a run; None for a policy that routes nothing."""
    images_only: bool = False
    """Answers image queries only (seed 003's crops): real runs skip it, with a note, on a workload
    with videos."""
    knobs_from: str = ""
    """Read this other policy's knobs table instead of its own (seed 003's baselines take
    entropy-crop's, so they crop the same size and random-crop retransmits the same share)."""
    escalate_density: int = 0
    """The density its escalated queries reach the large model at (0: the native large VLM, or the
    default density for an adaptive policy): what a target accuracy is picked against."""

    def new_state(self, calibration: Calibration) -> RunState:
        """The learned state this policy starts a run with (Uncalibrated variants drop the temperatures)."""
        return RunState(calibration if self.calibrated else Calibration(1.0, 1.0))


def start_bandit(spec: PolicySpec, knobs: AdaptiveKnobs, profiling: Profiling, calibration: Calibration, seed: int,
                 resolve_path: Callable[[str], Path], meta: dict[str, Any] | None = None) -> BanditRun:
    """An adaptive policy's learner for one run (sim or real): its agent warm-started on the
    profiling fit, or loaded from the knobs' `load_state` (`resolve_path` turns the knob into a
    file), with a generator of its own seeded by the run's seed and the policy's name, so adding
    a policy to a scenario changes no other policy's choices."""
    return start_run(spec.agent, profiling, seed=[seed, 5, zlib.crc32(spec.name.encode())],
                     cost_weight=knobs.cost_weight, large_temperature=calibration.large_t, tau_proxy=knobs.tau_proxy,
                     online=knobs.online, load_state=resolve_path(knobs.load_state) if knobs.load_state else None,
                     meta={"policy": spec.name, "seed": seed, **(meta or {})}, **knobs.agent_kw())


def finish_bandit(spec: PolicySpec, knobs: AdaptiveKnobs, bandit: BanditRun, resolve_path: Callable[[str], Path],
                  meta: dict[str, Any] | None = None) -> None:
    """At the end of a run: save the agent's state where the knobs' `save_state` says."""
    if knobs.save_state:
        bandit.save(resolve_path(knobs.save_state), {"policy": spec.name, **(meta or {})})


def route_scores(spec: PolicySpec, state: RunState, records: Sequence[QueryRecord]) -> Any:
    """(n,) the policy's routing score of each labelled record, as it will score queries (its
    router's score; the small model's calibrated confidence for a policy without one)."""
    import numpy as np

    if spec.router is not None and spec.router.score is not None:
        return spec.router.score(state, records)
    return np.array([state.calibration.small_confidence(r.small_logits) for r in records])  # type: ignore[arg-type]


def escalated_correct(spec: PolicySpec, records: Sequence[QueryRecord], default_density: int) -> Any:
    """(n,) whether the policy's escalation path answers each record correctly: the large model at its
    density on the small model's tokens where the record has those logits, else the native large VLM."""
    import numpy as np

    density = spec.escalate_density or (default_density if spec.uses_density else 0)
    out = []
    for r in records:
        logits = r.large_logits.get(density) if density else None
        logits = r.large_native_logits if logits is None else logits
        out.append(logits is not None and int(np.argmax(logits)) == r.answer)
    return np.array(out, dtype=bool)


def start_router(spec: PolicySpec, knobs: Any, state: RunState, profile_split: Sequence[QueryRecord],
                 default_density: int, seed: int) -> None:
    """Before a run, on the labelled profiling split: the policy's router warms up (its family's hook:
    a classifier trained, a crop plan made, a threshold picked for the knobs' target) into `state`.
    Sim and real runs call this with their profiling records (the trace's, or the ones the real
    models just answered)."""
    if spec.router is None:
        return
    if spec.router.needs_profile and not profile_split:
        from testbed.errors import TestbedError

        raise TestbedError(f"{spec.name}: its router is trained on the profiling split, which this workload lacks "
                           "(give some queries split = 'profile')")
    spec.router.warm_up(spec, knobs, state, profile_split, default_density, seed)


def pick_target_threshold(spec: PolicySpec, knobs: Any, state: RunState, profile_split: Sequence[QueryRecord],
                          default_density: int) -> None:
    """Pick tau_route for the knobs' target (if any) on the profiling split, as RouteLLM does."""
    from testbed.errors import TestbedError
    from testbed.router.threshold import pick_threshold

    if not isinstance(knobs, RouteKnobs) or not knobs.has_target:
        return
    if not profile_split:
        raise TestbedError(f"{spec.name}: a target threshold is picked on the profiling split, which this workload "
                           "lacks (give some queries split = 'profile', or set tau_route instead)")
    import numpy as np

    local_ok = np.array([r.small_logits is not None and int(np.argmax(r.small_logits)) == r.answer
                         for r in profile_split])
    THRESHOLD.put(state, pick_threshold(route_scores(spec, state, profile_split), local_ok,
                                     escalated_correct(spec, profile_split, default_density),
                                     target_local_share=knobs.target_local_share,
                                     target_accuracy=knobs.target_accuracy, fixed_tau=knobs.tau_route))
