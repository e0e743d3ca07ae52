"""Every policy by name. Fixed names here; density-parameterised families as `<prefix>-fixed<a>`."""

from __future__ import annotations

from testbed.policies.base import PolicySpec
from testbed.policies.baselines import collaborative, device_native, edge_hosted
from testbed.policies.oracle import oracle
from testbed.policies.quickgrasp import nosharing, quickgrasp_fixed

FIXED: dict[str, PolicySpec] = {
    "device-native": PolicySpec("device-native", device_native, description="small VLM on the device (default tokenizer)"),
    "edge-hosted": PolicySpec("edge-hosted", edge_hosted, description="upload video + question; large VLM at the edge"),
    "collaborative": PolicySpec("collaborative", collaborative, description="device tokenizes, all tokens to the edge LM"),
    "nosharing": PolicySpec("nosharing", nosharing, description="QuickGrasp routing; escalation uploads the video"),
    "oracle": PolicySpec("oracle", oracle, needs_hindsight=True, description="cheapest correct action in hindsight"),
}

PER_DENSITY = {
    "quickgrasp": lambda a: PolicySpec(f"quickgrasp-fixed{a}", quickgrasp_fixed(a),
                                       description=f"QuickGrasp router, fixed density {a}"),
    "uncalibrated": lambda a: PolicySpec(f"uncalibrated-fixed{a}", quickgrasp_fixed(a), calibrated=False,
                                         description=f"QuickGrasp without temperature scaling, density {a}"),
}

BASELINES = ("device-native", "edge-hosted", "collaborative")
