"""The published configurations of Qwen2.5-VL 3B/7B and LLaVA-OneVision 0.5B/7B as config-only folders.

Timing needs no trained weights: `write_real_size` saves `config.json` (the published sizes), the
family's image processor at its published settings and a byte-level tokenizer carrying the family's
special tokens; `load_checkpoint` finds no weights file and the marker, and draws random weights
directly on the device in bf16 (seconds on a GPU; never a download). Sizes are those of the
checkpoints' own `config.json` (Qwen/Qwen2.5-VL-3B-Instruct, -7B-Instruct; llava-hf/llava-onevision-
qwen2-0.5b-ov-hf, -7b-ov-hf).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testbed.errors import ConfigError
from testbed.models.tiny_checkpoint import Role, _ids, build_tokenizer, save_folder

from testbed.models.checkpoint import REAL_SIZE_FAMILIES  # noqa: E402,F401  (defined with the other family lists)

QWEN_TEXT = {
    "small": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                  num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "large": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                  num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}
QWEN_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14, window_size=112,
                   fullatt_block_indexes=[7, 15, 23, 31], spatial_merge_size=2, temporal_patch_size=2,
                   tokens_per_second=2, hidden_act="silu")
OV_TEXT = {
    "small": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, vocab_size=152000, tie_word_embeddings=True),
    "large": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                  num_key_value_heads=4, vocab_size=152128, tie_word_embeddings=False),
}
SIGLIP_SO400M = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=26,
                     num_attention_heads=16, image_size=384, patch_size=14)


def real_size_config(family: str, role: Role, tokenizer: Any) -> tuple[Any, Any]:
    """(model config, image processor) of `family` in `role` at the published size."""
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        text = QWEN_TEXT[role]
        image, video, start, end = _ids(tokenizer, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                        "<|vision_end|>")
        cfg = Qwen2_5_VLConfig(
            text_config=dict(**text, max_position_embeddings=128000, rms_norm_eps=1e-6,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                              "mrope_section": [16, 24, 24]}),
            vision_config=dict(**QWEN_VISION, out_hidden_size=text["hidden_size"]),
            image_token_id=image, video_token_id=video, vision_start_token_id=start, vision_end_token_id=end)
        return cfg, Qwen2VLImageProcessorPil()
    if family == "llava_onevision":
        from transformers import LlavaOnevisionConfig
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import \
            LlavaOnevisionImageProcessorPil

        image, video = _ids(tokenizer, "<image>", "<video>")
        ov = LlavaOnevisionConfig(text_config=dict(model_type="qwen2", **OV_TEXT[role], rms_norm_eps=1e-6),
                                   vision_config=SIGLIP_SO400M, image_token_index=image, video_token_index=video,
                                   vision_feature_layer=-1, vision_feature_select_strategy="full")
        return ov, LlavaOnevisionImageProcessorPil(size={"height": 384, "width": 384}, image_mean=[0.5, 0.5, 0.5],
                                                    image_std=[0.5, 0.5, 0.5])
    raise ConfigError("family",
                      f"no published configuration for {family!r}; real-size: {', '.join(REAL_SIZE_FAMILIES)}")


def write_real_size(family: str, folder: Path | str, role: Role = "small") -> Path:
    """A config-only folder: weights are drawn at load, on the device (see the module docstring)."""
    tokenizer = build_tokenizer(family)
    cfg, proc = real_size_config(family, role, tokenizer)
    return save_folder(folder, (cfg, tokenizer, proc), {"family": family, "role": role, "config_only": True,
                                                        "weights": "random init at load: answers are noise"})
