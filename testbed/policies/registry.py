"""Every policy by name: fixed names, and density families as `<prefix>-fixed<a>`.

The registry imports the policies; no policy module imports the registry, so there is no import
cycle (tests/test_imports.py checks the whole graph). Results show these names.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, get_type_hints
from collections.abc import Callable

from testbed.errors import ConfigError, did_you_mean
from testbed.policies.base import EpsilonKnobs, LinUCBKnobs, NoKnobs, PolicySpec, RouteKnobs, ThompsonKnobs
from testbed.policies.baselines import collaborative, device_native, edge_hosted
from testbed.policies.crop import CropKnobs, entropy_crop, full_res, global_only, random_crop
from testbed.policies.edgevlm import (ABLATIONS, AdasKnobs, EdgeVLMKnobs, LaecipsKnobs, adas_like, band_knobs,
                                      distributed_vlm, edgevlm, laecips_like, lvlm_only, svlm_only)
from testbed.policies.inputaware import input_aware
from testbed.policies.oracle import oracle
from testbed.policies.quickgrasp import nosharing, quickgrasp_adaptive, quickgrasp_fixed
from testbed.policies.routers import CONFIDENCE, INPUT_AWARE, MIN_ENTROPY
from testbed.query import DENSITIES

FIXED: dict[str, PolicySpec] = {s.name: s for s in (
    PolicySpec("device-native", device_native, description="small VLM on the device (default tokenizer)"),
    PolicySpec("edge-hosted", edge_hosted, description="upload video + question; large VLM at the edge"),
    PolicySpec("collaborative", collaborative, description="device tokenizes, all tokens to the edge LM"),
    PolicySpec("nosharing", nosharing, RouteKnobs, router=CONFIDENCE,
               description="QuickGrasp routing; escalation uploads the video"),
    PolicySpec("oracle", oracle, NoKnobs, needs_hindsight=True, description="cheapest correct action in hindsight"),
    PolicySpec("quickgrasp", quickgrasp_adaptive, ThompsonKnobs, agent="neural-linear-thompson", uses_density=True,
               router=CONFIDENCE,
               description="QuickGrasp: router, then the neural-linear Thompson agent picks the density"),
    PolicySpec("quickgrasp-eps", quickgrasp_adaptive, EpsilonKnobs, agent="epsilon-greedy", uses_density=True,
               router=CONFIDENCE,
               description="QuickGrasp router; epsilon-greedy on the backbone's latent picks the density"),
    PolicySpec("quickgrasp-linucb", quickgrasp_adaptive, LinUCBKnobs, agent="linucb", uses_density=True,
               router=CONFIDENCE, description="QuickGrasp router; LinUCB on the raw context picks the density"),
    PolicySpec("input-aware", input_aware, RouteKnobs, router=INPUT_AWARE,
               description="INAR-VL: input signals route before any inference; device small VLM or edge large"),
    # streams (seed 001): one generator per camera stream
    PolicySpec("svlm-only", svlm_only, stream=True, description="small VLM on every frame, its own history"),
    PolicySpec("lvlm-only", lvlm_only, stream=True, description="every frame to the large VLM; late answers are none"),
    PolicySpec("distributed-vlm", distributed_vlm, stream=True,
               description="large VLM's encoder on the device, features to the edge"),
    PolicySpec("edgevlm", edgevlm, EdgeVLMKnobs, stream=True,
               description="edgeVLM: K_call/K_delay uploads, late answers as context (CRM + VFM)"),
    PolicySpec("laecips-like", laecips_like, LaecipsKnobs, stream=True,
               description="difficulty classifier offloads the hardest frames"),
    PolicySpec("adas-like", adas_like, AdasKnobs, stream=True, description="latency-adaptive offloading"),
    PolicySpec("uncalibrated", quickgrasp_adaptive, ThompsonKnobs, agent="neural-linear-thompson", uses_density=True,
               router=CONFIDENCE, calibrated=False, knobs_from="quickgrasp",
               description="seed 000 Fig. 12's Uncalibrated: QuickGrasp (adaptive, its knobs) on uncalibrated "
                           "confidences"),
)}

CROP: dict[str, PolicySpec] = {s.name: s for s in (
    PolicySpec("entropy-crop", entropy_crop, CropKnobs, router=MIN_ENTROPY, images_only=True,
               description="seed 003: global view; above the min-entropy threshold an attention crop"),
    PolicySpec("global-only", global_only, NoKnobs, knobs_from="entropy-crop", images_only=True,
               description="seed 003 baseline: the global view only"),
    PolicySpec("full-res", full_res, NoKnobs, knobs_from="entropy-crop", images_only=True,
               description="seed 003 baseline: the full-resolution image, tiled at the edge (LLaVA-1.5-HD)"),
    PolicySpec("random-crop", random_crop, NoKnobs, router=MIN_ENTROPY, knobs_from="entropy-crop", images_only=True,
               description="seed 003 baseline: entropy-crop's share retransmitted at random, random box"),
)}
"""Image QA with crop retransmission (seed 003); the baselines read entropy-crop's knobs. Listed after
every other name, so the colours plots give earlier policies stay as they were."""

STREAM_FAMILIES = {"edgevlm": (20, 35, 50, 100), "laecips-like": (20, 35, 50), "adas-like": (20, 35, 50)}
"""`<family>-lcr<band>`: the family's knob defaults for a Table 2 call-ratio band."""

PER_DENSITY: dict[str, Callable[[int], PolicySpec]] = {
    "quickgrasp": lambda a: PolicySpec(f"quickgrasp-fixed{a}", quickgrasp_fixed(a), RouteKnobs, uses_density=True,
                                       router=CONFIDENCE, escalate_density=a,
                                       description=f"QuickGrasp router, fixed density {a}"),
    "uncalibrated": lambda a: PolicySpec(f"uncalibrated-fixed{a}", quickgrasp_fixed(a), RouteKnobs, calibrated=False,
                                         uses_density=True, router=CONFIDENCE, escalate_density=a,
                                         description=f"QuickGrasp without temperature scaling, density {a}"),
}

BASELINES = ("device-native", "edge-hosted", "collaborative")


def policy_names() -> list[str]:
    """Every name `resolve` accepts (density and band families expanded)."""
    names = list(FIXED)
    for prefix in PER_DENSITY:
        names += [f"{prefix}-fixed{a}" for a in DENSITIES]
    for family, bands in STREAM_FAMILIES.items():
        names += [f"{family}-lcr{b}" for b in bands]
    names += [f"edgevlm-ablation-{row}" for row in ABLATIONS]
    return names + list(CROP)


def _variant(family: str, name: str, cls: str, defaults: dict[str, Any], what: str) -> PolicySpec:
    """`family` under `name`, its knobs' defaults replaced by `defaults`."""
    base = FIXED[family]
    hints = get_type_hints(base.knobs)
    fields = [(f.name, hints[f.name], dataclasses.field(default=defaults.get(f.name, f.default), metadata=f.metadata))
              for f in dataclasses.fields(base.knobs)]
    namespace = {"__doc__": f"{base.knobs.__doc__} Defaults for {what}."}
    if hasattr(base.knobs, "__post_init__"):  # a rule that ties keys together
        namespace["__post_init__"] = base.knobs.__post_init__
    knobs = dataclasses.make_dataclass(f"{base.knobs.__name__}{cls}", fields, frozen=True, namespace=namespace)
    return dataclasses.replace(base, name=name, knobs=knobs, description=f"{base.description} ({what})")


@functools.cache
def _band_spec(family: str, band: int) -> PolicySpec:
    what = "every frame" if band == 100 else f"the {band}-{band + 10}% call-ratio band"
    return _variant(family, f"{family}-lcr{band}", f"Lcr{band}", band_knobs(family, band), what)


@functools.cache
def _ablation_spec(row: str) -> PolicySpec:
    return _variant("edgevlm", f"edgevlm-ablation-{row}", "Ablation" + row.title().replace("-", ""),
                    {**band_knobs("edgevlm", 100), **ABLATIONS[row]},
                    f"Table 5 row {row}: every frame uploaded")


def resolve(name: str, path: str = "policies.run") -> PolicySpec:
    """Look up a policy by name, e.g. ``device-native`` or ``quickgrasp-fixed16``; `path` is the
    scenario key the name came from, for the error message."""
    if name in FIXED:
        return FIXED[name]
    if name in CROP:
        return CROP[name]
    m = re.fullmatch(r"([a-z-]+)-fixed(\d+)", name)
    if m and m.group(1) in PER_DENSITY and int(m.group(2)) in DENSITIES:
        return PER_DENSITY[m.group(1)](int(m.group(2)))
    m = re.fullmatch(r"([a-z-]+)-lcr(\d+)", name)
    if m and int(m.group(2)) in STREAM_FAMILIES.get(m.group(1), ()):
        return _band_spec(m.group(1), int(m.group(2)))
    if name.startswith("edgevlm-ablation-") and name.removeprefix("edgevlm-ablation-") in ABLATIONS:
        return _ablation_spec(name.removeprefix("edgevlm-ablation-"))
    raise ConfigError(path, f"unknown policy {name!r}{did_you_mean(name, policy_names())}; allowed: "
                            f"{', '.join(policy_names())}")
