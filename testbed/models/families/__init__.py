"""One adapter per VLM family: where its vision tokens are taken, how they reach its LM.

Per family: vision tokens (F, a, D) taken; density a means; projector

- qwen2_5_vl, qwen2_vl: ViT output before the patch merger, each 2x2 merge window concatenated;
  merged-token slots per frame; the merger's MLP
- llava_onevision: SigLIP at `vision_feature_layer`; SigLIP patches per frame; the 2-layer MLP projector
- smolvlm (idefics3): SigLIP output after the pixel shuffle (a reshape); shuffled tokens per frame;
  the connector's linear
- generic: `get_image_features` (projector included); LM-space tokens per frame; identity
"""

from __future__ import annotations

from typing import Any

ADAPTERS = {
    "qwen2_5_vl": ("testbed.models.families.qwen", "QwenAdapter"),
    "qwen2_vl": ("testbed.models.families.qwen", "QwenAdapter"),
    "llava_onevision": ("testbed.models.families.llava_onevision", "LlavaOneVisionAdapter"),
    "smolvlm": ("testbed.models.families.smolvlm", "SmolVLMAdapter"),
    "generic": ("testbed.models.families.generic", "GenericAdapter"),
}


def adapter_class(family: str) -> Any:
    """The adapter class of a family (imported when asked, so loading one family imports no other)."""
    import importlib

    module, name = ADAPTERS[family]
    return getattr(importlib.import_module(module), name)
