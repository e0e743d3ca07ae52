"""What every policy receives besides the query: its knobs (from the scenario), the run's learned
state, and hindsight for oracles; and PolicySpec, what the registry knows of a policy.

Knobs are frozen dataclasses, one type per policy family, loaded from the scenario's table for
that policy (``[policies.quickgrasp-fixed16] tau_route = 0.7``); each field carries its help text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from testbed.config import help_field
from testbed.policies.effects import Policy, StreamPolicy
from testbed.query import Hindsight, Query, Stream
from testbed.router.calibration import Calibration


@dataclass(frozen=True)
class NoKnobs:
    """A policy that reads nothing but its name."""


@dataclass(frozen=True)
class RouteKnobs:
    """Knobs of a policy that answers locally first and escalates unsure answers (seed 000)."""

    tau_route: float = help_field(0.6, "escalate when the small model's calibrated confidence is below this "
                                       "(seed 000: 0.6)")

    def __post_init__(self) -> None:
        from testbed.errors import ConfigError

        if not 0 <= self.tau_route <= 1:
            raise ConfigError("tau_route", "must be in [0, 1]")


@dataclass
class RunState:
    """Learned state of one policy's run (calibration now; a bandit and a seeded RNG next).

    One object per policy per run, threaded to the policy explicitly, never global."""

    calibration: Calibration = field(default_factory=Calibration)
    difficulty: dict[str, list[float]] = field(default_factory=dict)  # laecips-like: scores seen, sorted, per benchmark


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
    stream: bool = False

    def new_state(self, calibration: Calibration) -> RunState:
        """The learned state this policy starts a run with (Uncalibrated variants drop the temperatures)."""
        return RunState(calibration if self.calibrated else Calibration(1.0, 1.0))
