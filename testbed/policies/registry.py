"""Every policy by name: fixed names, and density families as `<prefix>-fixed<a>`.

The registry imports the policies; policies import only `base` and `effects`, so there is no
import cycle. Results show these names.
"""

from __future__ import annotations

import re
from typing import Callable

from testbed.errors import ConfigError
from testbed.policies.base import EpsilonKnobs, LinUCBKnobs, NoKnobs, PolicySpec, RouteKnobs, ThompsonKnobs
from testbed.policies.baselines import collaborative, device_native, edge_hosted
from testbed.policies.oracle import oracle
from testbed.policies.quickgrasp import nosharing, quickgrasp_adaptive, quickgrasp_fixed
from testbed.query import DENSITIES

FIXED: dict[str, PolicySpec] = {s.name: s for s in (
    PolicySpec("device-native", device_native, description="small VLM on the device (default tokenizer)"),
    PolicySpec("edge-hosted", edge_hosted, description="upload video + question; large VLM at the edge"),
    PolicySpec("collaborative", collaborative, description="device tokenizes, all tokens to the edge LM"),
    PolicySpec("nosharing", nosharing, RouteKnobs, description="QuickGrasp routing; escalation uploads the video"),
    PolicySpec("oracle", oracle, NoKnobs, needs_hindsight=True, description="cheapest correct action in hindsight"),
    PolicySpec("quickgrasp", quickgrasp_adaptive, ThompsonKnobs, agent="neural-linear-thompson", uses_density=True,
               description="QuickGrasp: router, then the neural-linear Thompson agent picks the density"),
    PolicySpec("quickgrasp-eps", quickgrasp_adaptive, EpsilonKnobs, agent="epsilon-greedy", uses_density=True,
               description="QuickGrasp router; epsilon-greedy on the backbone's latent picks the density"),
    PolicySpec("quickgrasp-linucb", quickgrasp_adaptive, LinUCBKnobs, agent="linucb", uses_density=True,
               description="QuickGrasp router; LinUCB on the raw context picks the density"),
)}

PER_DENSITY: dict[str, Callable[[int], PolicySpec]] = {
    "quickgrasp": lambda a: PolicySpec(f"quickgrasp-fixed{a}", quickgrasp_fixed(a), RouteKnobs, uses_density=True,
                                       description=f"QuickGrasp router, fixed density {a}"),
    "uncalibrated": lambda a: PolicySpec(f"uncalibrated-fixed{a}", quickgrasp_fixed(a), RouteKnobs, calibrated=False,
                                         uses_density=True,
                                         description=f"QuickGrasp without temperature scaling, density {a}"),
}

BASELINES = ("device-native", "edge-hosted", "collaborative")


def policy_names() -> list[str]:
    """Every name `resolve` accepts (density families expanded)."""
    names = list(FIXED)
    for prefix in PER_DENSITY:
        names += [f"{prefix}-fixed{a}" for a in DENSITIES]
    return names


def resolve(name: str, path: str = "policies.run") -> PolicySpec:
    """Look up a policy by name, e.g. ``device-native`` or ``quickgrasp-fixed16``; `path` is the
    scenario key the name came from, for the error message."""
    if name in FIXED:
        return FIXED[name]
    m = re.fullmatch(r"([a-z-]+)-fixed(\d+)", name)
    if m and m.group(1) in PER_DENSITY and int(m.group(2)) in DENSITIES:
        return PER_DENSITY[m.group(1)](int(m.group(2)))
    raise ConfigError(path, f"unknown policy {name!r}; allowed: {', '.join(policy_names())}")
