"""Tiny random-init checkpoint folders of the real VLM families, built offline from their config classes.

`write_tiny(family, folder, role)` saves what a user's checkpoint folder holds: `config.json` and
weights (`save_pretrained`), the image processor's `preprocessor_config.json`, and a tokenizer built
here with `tokenizers` (byte-level, so any text encodes; the family's special tokens; its chat
template). The small and large roles of one family share the vision encoder's config and weights, so
token sharing works between them; each family's encoder width is one no other family's uses.
Answers are noise: the folder carries `testbed_random_init.json` and runs say so.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Literal

import torch

from testbed.errors import ConfigError
from testbed.models.checkpoint import RANDOM_MARKER, TINY_FAMILIES

Role = Literal["small", "large"]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LM = {"small": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2),
      "large": dict(hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
                    num_key_value_heads=2)}
"""Tiny LMs: the large role is wider and deeper, as 7B is to 2-3B."""

QWEN_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'video' %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAVA_OV_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for c in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}{% endfor %}{% for c in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + c['text'] }}{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")

SPECIALS = {
    "qwen2_5_vl": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                   "<|image_pad|>", "<|video_pad|>"],
    "llava_onevision": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
    "smolvlm": ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>",
                "<global-img>"],
}
SPECIALS["qwen2_vl"] = SPECIALS["qwen2_5_vl"]
TEMPLATES = {"qwen2_5_vl": QWEN_TEMPLATE, "qwen2_vl": QWEN_TEMPLATE, "llava_onevision": LLAVA_OV_TEMPLATE,
             "smolvlm": SMOLVLM_TEMPLATE}
VISION_SEED = {"qwen2_5_vl": 101, "qwen2_vl": 102, "llava_onevision": 103, "smolvlm": 104}


def build_tokenizer(family: str) -> Any:
    """A byte-level BPE tokenizer (every byte a token; ' A'..' Z' merged, so letters after a space are one
    token too) with the family's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges = [("Ġ", c) for c in LETTERS]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = SPECIALS[family]
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=specials[2] if family != "smolvlm" else
                                   "<end_of_utterance>", pad_token="<|endoftext|>",
                                   additional_special_tokens=[t for t in specials if t != "<|endoftext|>"])
    fast.chat_template = TEMPLATES[family]
    return fast


def _vocab(tokenizer: Any) -> int:
    return (len(tokenizer) + 63) // 64 * 64


def _ids(tokenizer: Any, *tokens: str) -> list[int]:
    return [int(tokenizer.convert_tokens_to_ids(t)) for t in tokens]


def _text(tokenizer: Any, role: Role, **extra: Any) -> dict[str, Any]:
    return dict(vocab_size=_vocab(tokenizer), max_position_embeddings=8192, tie_word_embeddings=False,
                pad_token_id=_ids(tokenizer, "<|endoftext|>")[0], bos_token_id=None,
                eos_token_id=int(tokenizer.eos_token_id), **LM[role], **extra)


def build_model(family: str, role: Role, tokenizer: Any) -> tuple[Any, Any, Any]:
    """(model, its vision module, image processor) of a tiny checkpoint, random weights, CPU."""
    if family in ("qwen2_5_vl", "qwen2_vl"):
        return _qwen(family, role, tokenizer)
    if family == "llava_onevision":
        return _llava_onevision(role, tokenizer)
    if family == "smolvlm":
        return _smolvlm(role, tokenizer)
    raise ConfigError("family", f"unknown family {family!r}; tiny checkpoints: {', '.join(TINY_FAMILIES)}")


def _qwen(family: str, role: Role, tokenizer: Any) -> tuple[Any, Any, Any]:
    hidden = LM[role]["hidden_size"]
    image, video, start, end = _ids(tokenizer, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    half = hidden // LM[role]["num_attention_heads"] // 2  # M-RoPE sections split half a head (Qwen: 16, 24, 24)
    hw = (half - half // 4) // 2
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [half - 2 * hw, hw, hw]}
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig as Config, Qwen2_5_VLForConditionalGeneration as Model

        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=4, window_size=32,
                      out_hidden_size=hidden, fullatt_block_indexes=[1], spatial_merge_size=2, temporal_patch_size=2)
    else:
        from transformers import Qwen2VLConfig as Config, Qwen2VLForConditionalGeneration as Model  # type: ignore

        vision = dict(depth=2, embed_dim=40, hidden_size=hidden, mlp_ratio=2, num_heads=2, patch_size=4,
                      spatial_merge_size=2, temporal_patch_size=2)
    cfg = Config(text_config=_text(tokenizer, role, rope_parameters=rope), vision_config=vision,
                 image_token_id=image, video_token_id=video, vision_start_token_id=start, vision_end_token_id=end)
    model = Model(cfg)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    proc = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32,
                                    max_pixels=64 * 64)  # 64 px frames: 8 x 8 merge windows, 64 tokens a frame
    return model, model.model.visual, proc


def _llava_onevision(role: Role, tokenizer: Any) -> tuple[Any, Any, Any]:
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import \
        LlavaOnevisionImageProcessorPil

    image, video = _ids(tokenizer, "<image>", "<video>")
    vision = dict(model_type="siglip_vision_model", hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=2, image_size=64, patch_size=8)  # 64 tokens a frame, width 48
    cfg = LlavaOnevisionConfig(text_config=dict(model_type="qwen2", **_text(tokenizer, role)), vision_config=vision,
                               image_token_index=image, video_token_index=video, vision_feature_layer=-1,
                               vision_feature_select_strategy="full", image_grid_pinpoints=[[64, 64]])
    model = LlavaOnevisionForConditionalGeneration(cfg)
    proc = LlavaOnevisionImageProcessorPil(size={"height": 64, "width": 64}, image_grid_pinpoints=[[64, 64]],
                                           image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return model, model.model.vision_tower, proc


def _smolvlm(role: Role, tokenizer: Any) -> tuple[Any, Any, Any]:
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    image = _ids(tokenizer, "<image>")[0]
    vision = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                  patch_size=4)  # 16 x 16 patches, pixel shuffle 2: 64 tokens a frame, width 96
    cfg = SmolVLMConfig(text_config=dict(model_type="llama", **_text(tokenizer, role)), vision_config=vision,
                        scale_factor=2, image_token_id=image)
    model = SmolVLMForConditionalGeneration(cfg)
    proc = SmolVLMImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 64},
                                    do_image_splitting=False, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return model, model.model.vision_model, proc


def share_weights(vision: Any, seed: int) -> None:
    """Give the encoder's matrices weights drawn per parameter name from `seed`, so both roles of a family
    get the same encoder whatever order their constructors drew in (Qwen's merger belongs to the LM side)."""
    with torch.no_grad():
        for name, p in vision.named_parameters():
            if name.startswith("merger."):
                continue
            if p.dim() >= 2:
                gen = torch.Generator().manual_seed(seed * 7919 + zlib.crc32(name.encode()))
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            else:  # biases zero, norm scales one
                p.fill_(0.0 if name.endswith("bias") else 1.0)


def write_tiny(family: str, folder: Path | str, role: Role = "small", seed: int = 0) -> Path:
    """Write a tiny random-init checkpoint folder of `family` in `role`; returns the folder."""
    if family not in TINY_FAMILIES:
        raise ConfigError("family", f"unknown family {family!r}; tiny checkpoints: {', '.join(TINY_FAMILIES)}")
    if role not in ("small", "large"):
        raise ConfigError("--role", f"must be small or large, got {role!r}")
    tokenizer = build_tokenizer(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + (11 if role == "small" else 12))
        model, vision, proc = build_model(family, role, tokenizer)
    share_weights(vision, seed * 1000 + VISION_SEED[family])
    return save_folder(folder, (model, tokenizer, proc), {"family": family, "role": role, "seed": seed,
                                                          "weights": "random init: answers are noise"})


def save_folder(folder: Path | str, parts: tuple[Any, ...], marker: dict[str, Any]) -> Path:
    """Each part (model or config, tokenizer, image processor) with `save_pretrained`, and the random-init marker."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar for one small shard says nothing
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for part in parts:
        part.save_pretrained(out)
    (out / RANDOM_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return out
