"""Standard transformers checkpoint folders: which family a folder holds, and how a pair of them is named.

A folder is what `save_pretrained` writes (`config.json`, weights, processor and tokenizer files).
Its family comes from `config.json`'s `model_type`; nothing here imports torch or transformers, so a
scenario naming a pair is validated without loading a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from testbed.errors import ConfigError

FAMILY_OF_MODEL_TYPE = {
    "qwen2_5_vl": "qwen2_5_vl",
    "qwen2_vl": "qwen2_vl",
    "llava_onevision": "llava_onevision",
    "smolvlm": "smolvlm",
    "idefics3": "smolvlm",
}
"""`model_type` -> the adapter that runs it; any other image-text-to-text type runs through `generic`."""

FAMILIES = ("qwen2_5_vl", "qwen2_vl", "llava_onevision", "smolvlm", "generic")
TINY_FAMILIES = ("qwen2_5_vl", "qwen2_vl", "llava_onevision", "smolvlm")
"""Families `testbed models tiny` writes."""
REAL_SIZE_FAMILIES = ("qwen2_5_vl", "llava_onevision")
"""Families `testbed models real-size` writes (testbed/models/real_size.py)."""

RANDOM_MARKER = "testbed_random_init.json"
"""A folder with this file holds random weights (written by `testbed models tiny`): runs say their answers are noise."""

EncoderChoice = Literal["small", "own"]


def read_config(folder: Path | str, where: str = "models") -> dict:
    """`config.json` of a checkpoint folder, or a one-line error naming what is missing."""
    p = Path(folder)
    if not p.is_dir():
        raise ConfigError(where, f"{p} is not a folder (a transformers checkpoint folder holds config.json)")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise ConfigError(where, f"{p} has no config.json: not a transformers checkpoint folder")
    try:
        data = json.loads(cfg.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(where, f"{cfg}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(where, f"{cfg}: expected a JSON object")
    return data


def image_text_model_types() -> set[str]:
    """The `model_type`s transformers runs as image-text-to-text (the generic path); imports transformers."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return set(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


def family_of(config: dict, folder: Path | str, trust_remote_code: bool = False, where: str = "models") -> str:
    """The adapter family of a checkpoint's config: a known family, `generic` for another image-text-to-text
    type (or any type with remote code allowed), else a one-line error naming the unknown `model_type`."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ConfigError(where, f"{Path(folder) / 'config.json'} has no model_type")
    if model_type in FAMILY_OF_MODEL_TYPE:
        return FAMILY_OF_MODEL_TYPE[model_type]
    if model_type in image_text_model_types() or (trust_remote_code and "auto_map" in config):
        return "generic"
    known = ", ".join(sorted(FAMILY_OF_MODEL_TYPE))
    raise ConfigError(where, f"unknown model_type {model_type!r} in {Path(folder) / 'config.json'}: known: {known}, "
                             "or any transformers image-text-to-text type (a family with its own code: "
                             "[models] trust_remote_code = true, or trust_remote_code=true in --models)")


def is_random_init(folder: Path | str) -> bool:
    return (Path(folder) / RANDOM_MARKER).is_file()


@dataclass(frozen=True)
class PairSpec:
    """Two checkpoint folders: the device's small VLM and the edge's large one. `large_encoder` says
    whose vision encoder the large model tokenizes with when it runs natively: its own, or the small
    model's (the shared-encoder hybrid everywhere; needs equal encoder widths)."""

    small: str
    large: str
    large_encoder: EncoderChoice = "own"
    trust_remote_code: bool = False

    def text(self) -> str:
        """The one-string form `parse_pair` reads (what --models takes and the edge process is given)."""
        parts = [f"small={self.small}", f"large={self.large}"]
        if self.large_encoder != "own":
            parts.append(f"large_encoder={self.large_encoder}")
        if self.trust_remote_code:
            parts.append("trust_remote_code=true")
        return ",".join(parts)


PAIR_KEYS = ("small", "large", "large_encoder", "trust_remote_code")


def is_pair_text(text: str) -> bool:
    """Whether a --models value names two checkpoint folders (`small=PATH,large=PATH`)."""
    return "=" in text


def parse_pair(text: str, where: str = "--models") -> PairSpec:
    """`small=PATH,large=PATH[,large_encoder=small|own][,trust_remote_code=true]`."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ConfigError(where, f"{part!r} is not KEY=VALUE (expected small=PATH,large=PATH)")
        if key not in PAIR_KEYS:
            raise ConfigError(where, f"unknown key {key!r}; allowed: {', '.join(PAIR_KEYS)}")
        if key in fields:
            raise ConfigError(where, f"{key} given twice")
        fields[key] = value
    missing = [k for k in ("small", "large") if k not in fields]
    if missing:
        raise ConfigError(where, f"missing {' and '.join(missing)}= (expected small=PATH,large=PATH)")
    enc = fields.get("large_encoder", "own")
    if enc not in ("small", "own"):
        raise ConfigError(where, f"large_encoder must be 'small' or 'own', got {enc!r}")
    trust = fields.get("trust_remote_code", "false").lower()
    if trust not in ("true", "false", "1", "0"):
        raise ConfigError(where, f"trust_remote_code must be true or false, got {trust!r}")
    return PairSpec(fields["small"], fields["large"], enc, trust in ("true", "1"))  # type: ignore[arg-type]
