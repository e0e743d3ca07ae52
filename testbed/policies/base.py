"""What every policy receives besides the query, and the registry that maps names to policies."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

from testbed.codec.size import TokenFormat
from testbed.errors import ConfigError
from testbed.policies.effects import Policy
from testbed.query import DENSITIES, Hindsight, Query
from testbed.router.calibration import Calibration


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """Knobs and learned state a policy reads; the interpreter passes `hindsight` only to oracles."""

    calibration: Calibration
    tau_route: float = 0.6
    default_density: int = 16
    token_format: TokenFormat = TokenFormat()
    hindsight: Hindsight | None = None


PolicyFn = Callable[[Query, PolicyContext], Policy]


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A named policy: its generator function and whether it needs hindsight (sim-only)."""

    name: str
    fn: PolicyFn
    needs_hindsight: bool = False
    calibrated: bool = True
    description: str = ""

    def context(self, ctx: PolicyContext) -> PolicyContext:
        """The context this policy runs with (Uncalibrated variants drop the temperatures)."""
        return ctx if self.calibrated else replace(ctx, calibration=Calibration(1.0, 1.0))


def policy_names() -> list[str]:
    """Every name `resolve` accepts (density-parameterised names expanded)."""
    from testbed.policies import catalogue

    names = list(catalogue.FIXED)
    for prefix in catalogue.PER_DENSITY:
        names += [f"{prefix}-fixed{a}" for a in DENSITIES]
    return names


def resolve(name: str) -> PolicySpec:
    """Look up a policy by name, e.g. ``device-native`` or ``quickgrasp-fixed16``."""
    from testbed.policies import catalogue

    if name in catalogue.FIXED:
        return catalogue.FIXED[name]
    m = re.fullmatch(r"([a-z-]+)-fixed(\d+)", name)
    if m and m.group(1) in catalogue.PER_DENSITY and int(m.group(2)) in DENSITIES:
        return catalogue.PER_DENSITY[m.group(1)](int(m.group(2)))
    raise ConfigError("policies.run", f"unknown policy {name!r}; allowed: {', '.join(policy_names())}")
