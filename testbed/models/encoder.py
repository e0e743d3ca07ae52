"""Vision encoders behind one small interface: frames in, tokens per frame x dim out.

Three kinds, chosen by a spec string: ``tiny`` (a SigLIP vision config with random weights, for
CPU tests), ``real-size`` (a ViT-L-sized SigLIP config, random weights, like VideoChat-Flash's
UMT-L: for GPU timing), or a path to a local checkpoint (a transformers CLIP/SigLIP vision or
full model). Nothing is ever downloaded.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from testbed.errors import ConfigError

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


class VisionEncoder(ABC):
    """Encodes preprocessed frames (n, 3, S, S) to tokens (n, tokens_per_frame, dim)."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dim: int
    tokens_per_frame: int
    device: torch.device
    dtype: torch.dtype

    @abstractmethod
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Tokens for a batch of frames; no gradients."""

    def preprocess(self, frames: Any) -> torch.Tensor:
        """(n, H, W, 3) uint8 frames -> what `encode` takes (first dimension n): by default resized to
        the square input and normalised; a checkpoint family runs its own processor here."""
        from testbed.tokenizer.preprocess import preprocess

        return preprocess(frames, self.image_size, self.mean, self.std)


class HFVisionEncoder(VisionEncoder):
    """A transformers vision tower (SiglipVisionModel or CLIPVisionModel)."""

    def __init__(self, model: Any, image_size: int, mean: tuple[float, float, float],
                 std: tuple[float, float, float], device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, dtype).eval()
        self.image_size, self.mean, self.std = image_size, mean, std
        cfg = model.config
        self.dim = int(cfg.hidden_size)
        self._drop_cls = type(model).__name__.startswith("CLIP")
        self.tokens_per_frame = (image_size // int(cfg.patch_size)) ** 2

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixels.to(self.device, self.dtype)).last_hidden_state
        return out[:, 1:] if self._drop_cls else out


def _siglip(image_size: int, patch: int, hidden: int, inter: int, layers: int, heads: int, seed: int,
            device: str, dtype: torch.dtype) -> HFVisionEncoder:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    cfg = SiglipVisionConfig(image_size=image_size, patch_size=patch, hidden_size=hidden, intermediate_size=inter,
                             num_hidden_layers=layers, num_attention_heads=heads)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SiglipVisionModel(cfg)
    return HFVisionEncoder(model, image_size, SIGLIP_MEAN, SIGLIP_STD, device, dtype)


def tiny_encoder(seed: int = 0, device: str = "cpu") -> HFVisionEncoder:
    """64x64 input, 8x8 patches: 64 tokens of width 64 per frame (enough to merge to every density
    up to 32), two layers: milliseconds per frame on a CPU."""
    return _siglip(64, 8, 64, 128, 2, 2, seed, device, torch.float32)


def real_size_encoder(seed: int = 0, device: str = "cuda", dtype: torch.dtype = torch.float16) -> HFVisionEncoder:
    """ViT-L/16 at 224 (24 layers, width 1024, 196 tokens per frame), like UMT-L; random weights."""
    return _siglip(224, 16, 1024, 4096, 24, 16, seed, device, dtype)


def load_encoder(path: Path | str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> HFVisionEncoder:
    """A local transformers checkpoint (vision tower or full CLIP/SigLIP model), offline only."""
    from transformers import AutoConfig, AutoModel

    p = Path(path)
    if not (p / "config.json").is_file():
        raise ConfigError("encoder", f"{p} is not a local transformers checkpoint (no config.json)")
    config = AutoConfig.from_pretrained(p, local_files_only=True)
    model = AutoModel.from_pretrained(p, local_files_only=True)
    model = getattr(model, "vision_model", model)
    vision_cfg = getattr(config, "vision_config", config)
    mean, std = SIGLIP_MEAN, SIGLIP_STD
    pre = p / "preprocessor_config.json"
    if pre.is_file():
        spec = json.loads(pre.read_text())
        mean, std = tuple(spec.get("image_mean", mean)), tuple(spec.get("image_std", std))  # type: ignore[assignment]
    if not hasattr(model.config, "patch_size"):
        model.config.patch_size = vision_cfg.patch_size
    return HFVisionEncoder(model, int(vision_cfg.image_size), mean, std, device, dtype)


def make_encoder(spec: str, device: str = "cpu") -> VisionEncoder:
    """``tiny``, ``real-size`` or a local checkpoint path."""
    if spec == "tiny":
        return tiny_encoder(device=device)
    if spec == "real-size":
        return real_size_encoder(device=device, dtype=torch.float16 if device != "cpu" else torch.float32)
    if not Path(spec).exists():
        raise ConfigError("encoder", f"{spec!r} is neither 'tiny', 'real-size' nor an existing checkpoint folder")
    return load_encoder(spec, device)
