"""A standard transformers VLM checkpoint behind the testbed's `VisionEncoder` / `OptionModel` interface.

Stages, each where the testbed times it: sampled frames -> the model's own image processor (or the
preprocessing its processor config documents) -> vision tokens (F, a, D) taken before the projector
or patch merger -> ToMe merging to a density in that space (the interpreters, `to_density`) -> the
family's projector -> the LM prefill through the model's own chat template -> the option letters'
next-token logits (seed 000 Eq. 1). What differs between families is one `Adapter` each
(`testbed/models/families/`); this module holds what they share.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np
import torch

from testbed.errors import ConfigError
from testbed.models.encoder import VisionEncoder
from testbed.models.vlm import LETTERS, OptionModel
from testbed.tokenizer.preprocess import preprocess

INSTRUCTION = "Answer with the option's letter from the given choices directly."


@dataclass(frozen=True)
class Vision:
    """Projected vision embeddings in the LM's sequence: (n, H), laid out as `grid` = (frames, rows, cols)."""

    embeds: torch.Tensor
    grid: tuple[int, int, int]
    first_frame: bool = True  # holds the first frame's tokens (where seed 003's attention map is read)


Piece = list[int] | torch.Tensor | Vision
"""A run of the LM's input: token ids, raw embeddings (n, H), or vision embeddings."""


def token_grid(a: int, native: tuple[int, int]) -> tuple[int, int]:
    """Rows x cols for a frame's `a` tokens: the encoder's own grid when unmerged, else the most
    square factorisation (merged tokens keep no grid; the LM still needs 2D positions for them)."""
    if a == native[0] * native[1]:
        return native
    rows = max(r for r in range(1, int(a ** 0.5) + 1) if a % r == 0)
    return rows, a // rows


def resize_frames(frames: np.ndarray, side: int) -> np.ndarray:
    """(n, H, W, 3) uint8 -> (n, side, side, 3) uint8, antialiased bilinear (the square frames every
    family gets, so every frame of every video gives the same tokens)."""
    if frames.shape[1:3] == (side, side):
        return frames
    x = preprocess(frames, side, (0.0, 0.0, 0.0), (1.0 / 255, 1.0 / 255, 1.0 / 255))  # 0..255 floats
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


class Adapter(ABC):
    """One family's wiring of a loaded `AutoModelForImageTextToText`."""

    family: str
    model: Any
    side: int  # square frame side fed to the processor
    width: int  # D: vision token width before the projector
    grid: tuple[int, int]  # tokens per frame as rows x cols
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __init__(self, model: Any, folder: Path, tokenizer: Any) -> None:
        self.model, self.folder, self.tokenizer = model, folder, tokenizer
        pre = processor_config(folder)
        self.mean = tuple(pre.get("image_mean", self.mean))  # type: ignore[assignment]
        self.std = tuple(pre.get("image_std", self.std))  # type: ignore[assignment]

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """(n, H, W, 3) uint8 -> what `encode` takes, first dimension n (default: resize and the
        processor config's mean/std, as the family's video path does)."""
        return preprocess(frames, self.side, self.mean, self.std)

    @abstractmethod
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, ...) preprocessed frames -> (n, a, D) vision tokens before the projector."""

    @abstractmethod
    def project(self, vision: torch.Tensor) -> torch.Tensor:
        """(N, D) vision tokens -> (N, H) LM input embeddings."""

    def media(self, projected: torch.Tensor) -> list[Piece]:
        """What replaces the chat template's image placeholder: (F, a, H) projected frames."""
        f, a, h = projected.shape
        return [Vision(projected.reshape(f * a, h), (f, *token_grid(a, self.grid)))]

    def positions(self, pieces: Sequence[Piece]) -> torch.Tensor | None:
        """Position ids for the assembled sequence; None: the LM's default 1D positions."""
        return None

    def supports(self) -> dict[str, bool]:
        """What a run can do with this family (docs/models.md's table, `testbed models check`)."""
        return {"option logits": True, "token merging": True, "attention map (crop)": True}


def processor_config(folder: Path) -> dict:
    """The folder's `preprocessor_config.json` (image processor settings), {} if absent."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError("models", f"{path}: not valid JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def load_image_processor(folder: Path) -> Any:
    """The folder's image processor, offline: torchvision's backend where it works, else PIL's."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (ImportError, RuntimeError, AttributeError):  # a torchvision that fails to import beside this torch
        return AutoImageProcessor.from_pretrained(folder, local_files_only=True, backend="pil")


def chat_template(folder: Path, tokenizer: Any) -> str:
    """The model's own chat template: the tokenizer's, or the processor's (`chat_template.jinja`/`.json`)."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.chat_template)
    jinja, js = folder / "chat_template.jinja", folder / "chat_template.json"
    if jinja.is_file():
        return jinja.read_text()
    if js.is_file():
        try:
            return str(json.loads(js.read_text())["chat_template"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError("models", f"{js}: no chat_template in it ({exc})") from None
    raise ConfigError("models", f"{folder} has no chat template (tokenizer_config.json, chat_template.jinja or "
                                "chat_template.json): the prompt is built with the model's own template")


class CheckpointEncoder(VisionEncoder):
    """A family's vision tower up to its projector, as the tokenizer pipeline's encoder."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.image_size, self.mean, self.std = adapter.side, adapter.mean, adapter.std
        self.dim, self.tokens_per_frame = adapter.width, adapter.tokens_per_frame
        p = next(adapter.model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.model = adapter.model  # parameter counts (VLMPair.parameter_counts) see the whole checkpoint

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        return self.adapter.preprocess(frames)

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.adapter.encode(pixels.to(self.device)).float()


class CheckpointVLM(OptionModel):
    """The LM side of a checkpoint: chat-template prompt around projected vision tokens, option logits."""

    def __init__(self, adapter: Adapter, template: str) -> None:
        self.adapter, self.template = adapter, template
        self.model, self.tokenizer = adapter.model, adapter.tokenizer
        p = next(self.model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.image_token = image_token_id(self.model.config, self.tokenizer)
        # the answer's first token: the letter itself after a template that ends its generation prompt with
        # whitespace ("<|im_start|>assistant\n"), " B" after one that does not ("Assistant:")
        self.letter_prefix = "" if self._render("?", ())[-1:].isspace() else " "
        self._letters = [self._letter(c) for c in LETTERS[:5]]
        self._prompts: dict[tuple[str, tuple[str, ...]], tuple[list[int], list[int]]] = {}
        self._attention = threading.Lock()

    @property
    def vision_width(self) -> int:
        return self.adapter.width

    def _letter(self, c: str) -> int:
        ids = self.tokenizer.encode(self.letter_prefix + c, add_special_tokens=False)
        if len(ids) != 1:
            raise ConfigError("models", f"{self.adapter.folder}: the tokenizer spells option letter "
                                        f"{self.letter_prefix + c!r} as {len(ids)} tokens; option letters must be "
                                        "single tokens")
        return int(ids[0])

    def _render(self, question: str, options: Sequence[str]) -> str:
        """The chat template on one image and the question with its lettered options, generation prompt last."""
        opts = "".join(f"({LETTERS[i]}) {o}\n" for i, o in enumerate(options))
        text = f"{question}\n{opts}{INSTRUCTION}" if options else question
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        try:
            return str(self.tokenizer.apply_chat_template(messages, chat_template=self.template, tokenize=False,
                                                          add_generation_prompt=True))
        except Exception as exc:  # noqa: BLE001 - a template error is the checkpoint's, in one line
            raise ConfigError("models", f"{self.adapter.folder}: the chat template fails "
                                        f"({type(exc).__name__}: {str(exc)[:200]})") from None

    def letter_ids(self, k: int) -> list[int]:
        if k > len(self._letters):
            self._letters = [self._letter(c) for c in LETTERS[:k]]
        return self._letters[:k]

    def prompt_ids(self, question: str, options: Sequence[str]) -> tuple[list[int], list[int]]:
        """Token ids before and after the image placeholder of the model's chat template, ending with the
        generation prompt (where the option letter comes next)."""
        key = (question, tuple(options))
        hit = self._prompts.get(key)
        if hit is not None:
            return hit
        if len(options) > len(LETTERS):
            raise ConfigError("options", f"{len(options)} options; at most {len(LETTERS)} (one letter each)")
        ids = list(self.tokenizer.encode(self._render(question, options), add_special_tokens=False))
        at = [i for i, t in enumerate(ids) if t == self.image_token]
        if len(at) != 1:
            raise ConfigError("models", f"{self.adapter.folder}: the chat template gives {len(at)} image tokens "
                                        f"(id {self.image_token}) for one image; expected 1")
        out = ids[: at[0]], ids[at[0] + 1:]
        if len(self._prompts) < 4096:
            self._prompts[key] = out
        return out

    def text_tokens(self, question: str, options: Sequence[str]) -> int:
        before, after = self.prompt_ids(question, options)
        return len(before) + len(after)

    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def assemble(self, vision: torch.Tensor, question: str,
                 options: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """(1, L, H) input embeddings, position ids (or None) and where the first frame's tokens start."""
        before, after = self.prompt_ids(question, options)
        f, a, d = vision.shape
        projected = self.adapter.project(vision.reshape(f * a, d).to(self.device, self.dtype)).reshape(f, a, -1)
        pieces: list[Piece] = [before, *self.adapter.media(projected), after]
        embed = self.model.get_input_embeddings()
        parts, start, n = [], -1, 0
        for p in pieces:
            if isinstance(p, Vision):
                e = p.embeds
                if p.first_frame and start < 0:
                    start = n
            elif isinstance(p, torch.Tensor):
                e = p
            else:
                e = embed(torch.tensor(p, dtype=torch.long, device=self.device))
            parts.append(e.to(self.dtype))
            n += len(e)
        return torch.cat(parts)[None], self.adapter.positions(pieces), start

    @torch.inference_mode()
    def option_logits(self, vision: torch.Tensor, question: str, options: Sequence[str]) -> np.ndarray:
        embeds, positions, _ = self.assemble(vision, question, options)
        out = self.model(inputs_embeds=embeds, position_ids=positions, use_cache=False, logits_to_keep=1)
        return out.logits[0, -1, self.letter_ids(len(options))].double().cpu().numpy()

    @torch.inference_mode()
    def image_attention(self, vision: torch.Tensor, question: str, options: Sequence[str]) -> np.ndarray | None:
        """Attention from the last prompt token to the first frame's tokens, mean over layers and heads
        (ViCrop's map, seed 003), with the eager kernel (the one that returns weights)."""
        embeds, positions, start = self.assemble(vision, question, options)
        with self._attention:
            kernel = self.model.config._attn_implementation
            self.model.set_attn_implementation("eager")
            try:
                out = self.model(inputs_embeds=embeds, position_ids=positions, use_cache=False, logits_to_keep=1,
                                 output_attentions=True)
            finally:
                self.model.set_attn_implementation(kernel)
        att = torch.stack([x[0, :, -1] for x in out.attentions])  # (layers, heads, L)
        return att[..., start: start + vision.shape[1]].mean(dim=(0, 1)).double().cpu().numpy()

    @torch.inference_mode()
    def describe_inputs(self, vision: torch.Tensor, question: str) -> tuple[np.ndarray, np.ndarray]:
        """The projector's output for the tokens, and the mean of the question's input embeddings."""
        v = vision.reshape(-1, vision.shape[-1]).to(self.device, self.dtype)
        h = self.adapter.project(v).double().cpu().numpy()
        ids = self.tokenizer.encode(question, add_special_tokens=False)
        if not ids:
            return h, np.zeros(h.shape[1])
        emb = self.model.get_input_embeddings()(torch.tensor(ids, device=self.device))
        return h, emb.mean(dim=0).double().cpu().numpy()


def image_token_id(config: Any, tokenizer: Any) -> int:
    """The id of the chat template's image placeholder (config's image_token_id / image_token_index)."""
    for key in ("image_token_id", "image_token_index"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    tid = tokenizer.convert_tokens_to_ids("<image>")
    if isinstance(tid, int) and tid != tokenizer.unk_token_id:
        return tid
    raise ConfigError("models", "the config names no image token (image_token_id / image_token_index) and the "
                                "tokenizer has no <image>")


@dataclass
class LoadedCheckpoint:
    """One checkpoint folder loaded: its family, encoder and LM side, and whether its weights are random."""

    folder: Path
    family: str
    encoder: CheckpointEncoder
    vlm: CheckpointVLM
    random_init: bool

    def summary(self) -> dict[str, Any]:
        """What `testbed models check` prints."""
        a = self.vlm.adapter
        return {"folder": str(self.folder), "family": self.family, "model_type": self.vlm.model.config.model_type,
                "parameters": self.vlm.parameters(), "encoder_width": a.width, "tokens_per_frame": a.tokens_per_frame,
                "frame_side": a.side, "weights": "random init" if self.random_init else "as saved",
                "supports": [k for k, v in a.supports().items() if v]}


def config_only(folder: Path) -> bool:
    """A folder without weights whose marker says they are drawn at load (`testbed models real-size`)."""
    from testbed.models.checkpoint import RANDOM_MARKER

    marker = folder / RANDOM_MARKER
    if not marker.is_file() or _weights_files(folder) != "no weights file":
        return False
    try:
        return bool(json.loads(marker.read_text()).get("config_only"))
    except (OSError, ValueError, AttributeError):
        return False


def _weights_files(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    return ", ".join(names) or "no weights file"


def load_checkpoint(folder: Path | str, device: str = "cpu", dtype: torch.dtype | None = None,
                    trust_remote_code: bool = False, where: str = "models") -> LoadedCheckpoint:
    """A transformers VLM checkpoint folder, offline (`local_files_only`); bad input is a one-line ConfigError."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from testbed.models.checkpoint import family_of, is_random_init, read_config
    from testbed.models.families import adapter_class

    path = Path(folder).expanduser().resolve()
    config = read_config(path, where)
    family = family_of(config, path, trust_remote_code, where)
    if not (path / "preprocessor_config.json").is_file():
        raise ConfigError(where, f"{path} has no preprocessor_config.json: the model's image processor is missing")
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                                              "vocab.json")):
        raise ConfigError(where, f"{path} has no tokenizer files (tokenizer.json / tokenizer_config.json)")
    if dtype is None:
        dtype = torch.float32 if str(device) == "cpu" else torch.bfloat16
    hf_logging.disable_progress_bar()  # one progress bar per weights file says nothing a run needs
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(where, f"{path}: the tokenizer fails to load ({str(exc).splitlines()[0]})") from None
    try:
        if config_only(path):  # a real-size folder (testbed.models.real_size): weights drawn on the device
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(path, local_files_only=True)
            with torch.device(device):
                model = AutoModelForImageTextToText.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
        else:
            model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True, dtype=dtype,
                                                                trust_remote_code=trust_remote_code,
                                                                attn_implementation="sdpa")
    except Exception as exc:  # noqa: BLE001 - any load failure is the user's file: name it, in one line
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(where, f"{path}: the checkpoint fails to load from {_weights_files(path)} "
                                 f"({type(exc).__name__}: {first})") from None
    model = model.to(device).eval()
    adapter = adapter_class(family)(model, path, tokenizer)
    vlm = CheckpointVLM(adapter, chat_template(path, tokenizer))
    return LoadedCheckpoint(path, family, CheckpointEncoder(adapter), vlm, is_random_init(path))
