"""A small and a large VLM that share one vision encoder, as VideoChat-Flash 2B/7B and Qwen2-VL
2B/7B share a vision tower: each side has its own projector and causal language model and takes
the encoder's tokens through `inputs_embeds`. The large side may also have an encoder of its own
(the native large VLM, for EdgeHosted, Collaborative and NoSharing).

Option logits are the next-token logits of the option letters after the prompt (seed 000 Eq. 1).
Presets: `tiny` (random weights from configs, CPU), `real-size` (random-init 2B/7B sizes for GPU
timing), `pocket` (trained heads over EfficientNet-Lite0 tokens that answer easy-VQA questions on a
CPU, `testbed.models.pocket`), or a local model-pair folder (`save_pair` writes one; nothing is
ever downloaded). Every side is an `OptionModel`: option logits for (F, a, D) vision tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from testbed.errors import ConfigError
from testbed.models import PRESETS
from testbed.models.encoder import HFVisionEncoder, VisionEncoder, load_encoder, real_size_encoder, tiny_encoder
from testbed.models.text import ByteTokenizer, TextTokenizer, load_tokenizer, save_tokenizer
from testbed.models.vlm import LETTERS, OptionModel, VLMPair

PAIR_FORMAT = "testbed-vlm-pair"
PAIR_VERSION = 1


def prompt_parts(question: str, options: tuple[str, ...] | list[str]) -> tuple[str, str]:
    """Text before and after the vision tokens; the prompt ends where the option letter comes next."""
    if len(options) > len(LETTERS):
        raise ConfigError("options", f"{len(options)} options; at most {len(LETTERS)} (one letter each)")
    opts = "".join(f"({LETTERS[i]}) {o}\n" for i, o in enumerate(options))
    return "Video:", f"\nQuestion: {question}\nOptions:\n{opts}Answer with the option's letter.\nAnswer: ("


def projector(dim: int, hidden: int) -> nn.Module:
    """LLaVA-1.5's two-layer MLP from the vision width to the LM's."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))


class VLM(OptionModel):
    """One side of the pair: projector + causal LM + its text tokenizer."""

    def __init__(self, lm: Any, proj: nn.Module, tokenizer: TextTokenizer, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.device, self.dtype = torch.device(device), dtype
        self.lm = lm.to(self.device, dtype).eval()
        self.proj = proj.to(self.device, dtype).eval()
        self.tokenizer = tokenizer
        self._letters = [tokenizer.single_id(c) for c in LETTERS[:8]]

    def letter_ids(self, k: int) -> list[int]:
        if k > len(self._letters):
            self._letters = [self.tokenizer.single_id(c) for c in LETTERS[:k]]
        return self._letters[:k]

    def prompt_ids(self, question: str, options: tuple[str, ...] | list[str]) -> tuple[list[int], list[int]]:
        before, after = prompt_parts(question, options)
        bos = [self.tokenizer.bos_id] if self.tokenizer.bos_id is not None else []
        return bos + self.tokenizer.encode(before), self.tokenizer.encode(after)

    def text_tokens(self, question: str, options: tuple[str, ...] | list[str]) -> int:
        """Prompt tokens besides the vision tokens."""
        a, b = self.prompt_ids(question, options)
        return len(a) + len(b)

    def inputs_embeds(self, vision: torch.Tensor, question: str, options: tuple[str, ...] | list[str]) -> torch.Tensor:
        """(1, L, H): prompt text embeddings around the projected (F, a, D) vision tokens."""
        before, after = self.prompt_ids(question, options)
        embed = self.lm.get_input_embeddings()
        ids = torch.tensor(before + after, device=self.device)
        text = embed(ids)
        v = self.proj(vision.reshape(-1, vision.shape[-1]).to(self.device, self.dtype))
        return torch.cat([text[: len(before)], v, text[len(before):]])[None]

    @torch.inference_mode()
    def option_logits(self, vision: torch.Tensor, question: str, options: tuple[str, ...] | list[str]) -> np.ndarray:
        """Next-token logits of the option letters (K,), float64."""
        out = self.lm(inputs_embeds=self.inputs_embeds(vision, question, options), use_cache=False)
        last = out.logits[0, -1]
        return last[self.letter_ids(len(options))].double().cpu().numpy()

    def parameters(self) -> int:
        return sum(p.numel() for p in self.lm.parameters()) + sum(p.numel() for p in self.proj.parameters())

    @property
    def vision_width(self) -> int | None:
        first = next((m for m in self.proj.modules() if isinstance(m, nn.Linear)), None)
        return int(first.in_features) if first is not None else None

    @torch.inference_mode()
    def image_attention(self, vision: torch.Tensor, question: str,
                        options: tuple[str, ...] | list[str]) -> np.ndarray | None:
        """The LM's attention from the last prompt token (where the option letter comes next) to the
        first frame's vision tokens, averaged over layers and heads (ViCrop's map, seed 003). Runs the
        eager attention kernel, which is the one that returns its weights."""
        before, _ = self.prompt_ids(question, options)
        config = self.lm.config
        kernel = getattr(config, "_attn_implementation", None)
        config._attn_implementation = "eager"
        try:
            out = self.lm(inputs_embeds=self.inputs_embeds(vision, question, options), use_cache=False,
                          output_attentions=True)
        finally:
            config._attn_implementation = kernel
        att = torch.stack(out.attentions)[:, 0, :, -1]  # (layers, heads, L)
        first = att[..., len(before): len(before) + vision.shape[1]]
        return first.mean(dim=(0, 1)).double().cpu().numpy()

    @torch.inference_mode()
    def describe_inputs(self, vision: torch.Tensor, question: str) -> tuple[np.ndarray, np.ndarray]:
        """The connector's output for the tokens, and the mean of the question's input embeddings."""
        h = self.proj(vision.reshape(-1, vision.shape[-1]).to(self.device, self.dtype)).double().cpu().numpy()
        ids = self.tokenizer.encode(question)
        if not ids:
            return h, np.zeros(h.shape[1])
        emb = self.lm.get_input_embeddings()(torch.tensor(ids, device=self.device))
        return h, emb.mean(dim=0).double().cpu().numpy()


def _seeded(seed: int, build: Any) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _llama(vocab: int, hidden: int, inter: int, layers: int, heads: int) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=32768,
                      tie_word_embeddings=False, bos_token_id=ByteTokenizer.BOS, eos_token_id=None,
                      pad_token_id=ByteTokenizer.PAD)
    return LlamaForCausalLM(cfg)


def tiny_pair(seed: int = 0, device: str = "cpu") -> VLMPair:
    """Random weights, milliseconds per query on a CPU: a small LM (width 64, 2 layers) and a large
    one (width 128, 4 layers), each with its own encoder of the tiny config (64 tokens per frame)."""
    tok = ByteTokenizer()
    enc_small, enc_large = tiny_encoder(seed, device), tiny_encoder(seed + 1, device)
    small = _seeded(seed + 10, lambda: VLM(_llama(tok.vocab_size, 64, 128, 2, 4), projector(enc_small.dim, 64), tok,
                                           device))
    large = _seeded(seed + 11, lambda: VLM(_llama(tok.vocab_size, 128, 256, 4, 4), projector(enc_large.dim, 128),
                                           tok, device))
    return VLMPair({"small": enc_small, "large": enc_large}, {"small": small, "large": large}, "tiny",
                   random_weights=True)


REAL_SIZE: dict[str, dict[str, Any]] = {
    # Qwen2-style LMs: with ViT-L/16 (0.30 B) and the projector, about 2.0 B and 7.0 B parameters
    "small": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=32, num_attention_heads=12,
                  num_key_value_heads=2, tie_word_embeddings=True),
    "large": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=24, num_attention_heads=28,
                  num_key_value_heads=4, tie_word_embeddings=False),
}


def _qwen2(side: str) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM(Qwen2Config(vocab_size=151936, max_position_embeddings=32768, **REAL_SIZE[side]))


def real_size_pair(device: str = "cuda", dtype: torch.dtype = torch.float16, seed: int = 0) -> VLMPair:
    """Random-init 2B/7B-sized pair for GPU timing (answers are noise). On device "meta" nothing is
    allocated (parameter counts only)."""
    tok = ByteTokenizer()
    meta = str(device) == "meta"
    encoders: dict[str, VisionEncoder] = {}
    models: dict[str, OptionModel] = {}
    for i, side in enumerate(("small", "large")):
        with torch.device("meta"):
            lm, proj = _qwen2(side), projector(1024, REAL_SIZE[side]["hidden_size"])
            if meta:
                encoders[side] = real_size_encoder(seed + i, "meta", dtype)
        if not meta:
            lm, proj = _materialise(lm, device, dtype, seed + 10 + i), _materialise(proj, device, dtype, seed + 20 + i)
            encoders[side] = real_size_encoder(seed + i, device, dtype)
        models[side] = VLM(lm, proj, tok, device, dtype)
    return VLMPair(encoders, models, "real-size", random_weights=True)


def _materialise(module: nn.Module, device: str, dtype: torch.dtype, seed: int) -> nn.Module:
    """Allocate a meta-built module on `device` in `dtype` and fill it with small random weights."""
    module = module.to(dtype).to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.02, generator=gen)
    return module


def save_pair(pair: VLMPair, folder: Path) -> None:
    """A local model-pair folder: pair.json, each encoder and LM with transformers' save_pretrained,
    projectors as safetensors, tokenizers next to their LM."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    enc_dirs: dict[str, str] = {}
    for name, enc in pair.encoders.items():
        same = next((n for n, e in pair.encoders.items() if e is enc and n in enc_dirs), None)
        if same is not None:
            enc_dirs[name] = enc_dirs[same]
            continue
        if not isinstance(enc, HFVisionEncoder):
            raise TypeError("only transformers vision encoders can be saved")
        enc_dirs[name] = f"encoder_{name}"
        enc.model.save_pretrained(folder / enc_dirs[name])
        (folder / enc_dirs[name] / "preprocessor_config.json").write_text(
            json.dumps({"image_mean": list(enc.mean), "image_std": list(enc.std), "size": enc.image_size}))
    for name, m in pair.models.items():
        if not isinstance(m, VLM):
            raise TypeError("only causal-LM sides can be saved as a model-pair folder")
        m.lm.save_pretrained(folder / name)
        save_tokenizer(m.tokenizer, folder / name)
        save_file({k: v.contiguous() for k, v in m.proj.state_dict().items()},
                  str(folder / name / "projector.safetensors"))
    spec = {"format": PAIR_FORMAT, "version": PAIR_VERSION, "encoders": enc_dirs,
            "models": {n: n for n in pair.models}}
    (folder / "pair.json").write_text(json.dumps(spec, indent=2))


def load_pair(folder: Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> VLMPair:
    """Load a local model-pair folder (see save_pair), offline."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    spec_path = folder / "pair.json"
    if not spec_path.is_file():
        raise ConfigError("models.preset", f"{folder} is not a model-pair folder (no pair.json); presets: tiny, "
                                           "real-size, pocket")
    try:
        spec = json.loads(spec_path.read_text())
        if spec.get("format") != PAIR_FORMAT or spec.get("version") != PAIR_VERSION:
            raise ValueError(f"format {spec.get('format')!r} version {spec.get('version')!r}")
        enc_dirs: dict[str, str] = {str(k): str(v) for k, v in spec["encoders"].items()}
        model_dirs: dict[str, str] = {str(k): str(v) for k, v in spec["models"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("models.preset", f"{spec_path}: not a {PAIR_FORMAT} v{PAIR_VERSION} file ({exc})") from None
    if set(model_dirs) != {"small", "large"} or "small" not in enc_dirs:
        raise ConfigError("models.preset", f"{spec_path}: needs models small and large and a small encoder")
    loaded: dict[str, VisionEncoder] = {}
    encoders: dict[str, VisionEncoder] = {}
    for name in ("small", "large"):
        d = enc_dirs.get(name, enc_dirs["small"])
        if d not in loaded:
            loaded[d] = load_encoder(folder / d, device, dtype)
        encoders[name] = loaded[d]
    models: dict[str, OptionModel] = {}
    for name, d in model_dirs.items():
        lm = AutoModelForCausalLM.from_pretrained(folder / d, local_files_only=True)
        weights = load_file(str(folder / d / "projector.safetensors"))
        proj = projector(encoders[name].dim, int(weights["2.weight"].shape[0]))
        proj.load_state_dict(weights)
        models[name] = VLM(lm, proj, load_tokenizer(folder / d), device, dtype)
    return VLMPair(encoders, models, str(folder))


def checkpoint_pair(text: str, device: str = "cpu") -> VLMPair:
    """Two transformers checkpoint folders, `small=PATH,large=PATH[,large_encoder=small|own]
    [,trust_remote_code=true]`, loaded offline (testbed.models.checkpoint_vlm)."""
    from testbed.models.checkpoint import parse_pair
    from testbed.models.checkpoint_vlm import load_checkpoint

    spec = parse_pair(text)
    small = load_checkpoint(spec.small, device, trust_remote_code=spec.trust_remote_code, where="models.small")
    same = Path(spec.large).expanduser().resolve() == small.folder
    large = small if same else load_checkpoint(spec.large, device, trust_remote_code=spec.trust_remote_code,
                                               where="models.large")
    notes = ("trust_remote_code is on: the checkpoints' own Python code runs",) if spec.trust_remote_code else ()
    pair = VLMPair({"small": small.encoder, "large": large.encoder}, {"small": small.vlm, "large": large.vlm},
                   spec.text(), random_weights=small.random_init or large.random_init, notes=notes)
    if spec.large_encoder == "small":
        gap = pair.sharing_gap()
        if gap:
            raise ConfigError("models.large_encoder", f"'small' needs the large model to read the small encoder's "
                                                      f"tokens, and {gap}")
        pair.encoders["large"] = small.encoder
    return pair


def make_pair(preset: str, device: str = "cpu") -> VLMPair:
    """`tiny`, `real-size`, `pocket`, a local model-pair folder, or two checkpoint folders as
    `small=PATH,large=PATH`."""
    from testbed.models.checkpoint import is_pair_text

    if is_pair_text(preset):
        return checkpoint_pair(preset, device)
    if preset == "tiny":
        return tiny_pair(device=device)
    if preset == "real-size":
        return real_size_pair(device, torch.float16 if device != "cpu" else torch.float32)
    if preset == "pocket":
        from testbed.models.pocket import pocket_pair

        return pocket_pair(device=device)
    path = Path(preset)
    if not path.is_dir():
        raise ConfigError("models.preset", f"{preset!r} is neither {', '.join(map(repr, PRESETS))} nor a model-pair "
                                           "folder (two checkpoint folders: small=PATH,large=PATH)")
    return load_pair(path, device)
