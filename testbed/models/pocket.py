"""The pocket pair: two trained question-answering heads over EfficientNet-Lite0's tokens, small
enough to train on a 2-core CPU, so CPU-only real runs give real answers.

Both heads read the vision tokens (F, a, 1280) of F frames at density a and a question, and score
the 13 easy-VQA answers; an option's logit is the logit of the answer it names (an option that
is no answer gets the mean of the answer logits: the head has no opinion on it).

- small: one token per frame (the mean of the tokens it receives), a narrow fusion MLP.
- large: the tokens projected by a fixed PCA (1280 -> 256, fitted on training tokens), then
  attention pooling over every token of a frame with queries from the question, a wider MLP;
  it is trained on tokens ToMe-merged to random densities in {2, 4, 8, 16, 32}, so its accuracy
  depends on the density it receives.

Both attend over frames with a question-conditioned relevance score (softmax over frames), so a
video question about the one scene that shows a circle reads that scene; an image is one frame.
The question is a bag of words and word pairs over a fixed vocabulary (easy-VQA's words plus
the video templates').

Weights: `small.safetensors` and `large.safetensors` beside `card.json` in a folder
(`traces/models/pocket/` ships one); a missing or corrupt file raises `PocketWeightsError`,
whose one line says how to rebuild them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from testbed.cache import write_atomic
from testbed.errors import TestbedError
from testbed.shipped import DATA_ROOT
from testbed.models.vlm import OptionModel, VLMPair
from testbed.models.pocket_data import ANSWERS

SIDES = ("small", "large")
PCA_DIM = 256
VOCAB = ("<unk>", "a", "black", "blue", "brown", "circle", "color", "contain", "does", "gray", "green", "image",
         "in", "is", "no", "not", "of", "present", "rectangle", "red", "shape", "teal", "the", "there", "triangle",
         "what", "yellow", "video", "scene", "any", "show", "shows")
"""Question words; anything else is <unk>. Its order fixes the embedding rows (do not reorder)."""
BIGRAM_BUCKETS = 256
GENERIC_QUESTION = "what is in the image"
"""The pocket heads' question-free prompt (every word in VOCAB), seed 003's generic prompt for them."""
FORMAT = "testbed-pocket-head"
FORMAT_VERSION = 1
REBUILD = "rebuild them with `make pocket` (or `testbed train-pocket`)"
DEFAULT_DIR = DATA_ROOT / "traces" / "models" / "pocket"


class PocketWeightsError(TestbedError):
    """The pocket heads' weights are missing or unreadable."""


@dataclass(frozen=True)
class HeadConfig:
    """A head's shape. Every head reads each frame's mean token: through a LayerNorm and a linear
    layer (`mean_dim` 0) or first cut to its top `mean_dim` principal components (the small head's
    bottleneck). `mode` "attn" adds attention pooling over the frame's PCA-projected tokens with
    `heads` queries from the question (`token_width` > 0: a per-token MLP of that width first)."""

    mode: str
    width: int
    word_dim: int
    heads: int = 4
    token_width: int = 0
    mean_dim: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "width": self.width, "word_dim": self.word_dim, "heads": self.heads,
                "token_width": self.token_width, "mean_dim": self.mean_dim}


SMALL = HeadConfig("mean", 32, 32, mean_dim=4)
LARGE = HeadConfig("attn", 192, 64, 8)

_WORD = re.compile(r"[a-z]+")
_INDEX = {w: i for i, w in enumerate(VOCAB)}
_ANSWER_INDEX = {a: i for i, a in enumerate(ANSWERS)}


def word_ids(question: str) -> tuple[list[int], list[int]]:
    """Word ids and word-pair bucket ids of a question (lower-cased letters only)."""
    ids = [_INDEX.get(w, 0) for w in _WORD.findall(question.lower())] or [0]
    pairs = [(a * len(VOCAB) + b) % BIGRAM_BUCKETS for a, b in zip(ids, ids[1:])] or [0]
    return ids, pairs


def answer_index(option: str) -> int:
    """The answer an option names, or -1."""
    return _ANSWER_INDEX.get(option.strip().lower(), -1)


def pad_ids(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, L) ids and a (n, L) float mask of real entries."""
    n, width = len(rows), max(len(r) for r in rows)
    ids = torch.zeros(n, width, dtype=torch.long)
    mask = torch.zeros(n, width)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1.0
    return ids, mask


class QuestionEncoder(nn.Module):
    """Mean word embedding plus mean word-pair embedding, then an MLP: (n,) questions -> (n, width)."""

    def __init__(self, word_dim: int, width: int) -> None:
        super().__init__()
        self.words = nn.Embedding(len(VOCAB), word_dim)
        self.pairs = nn.Embedding(BIGRAM_BUCKETS, word_dim)
        self.mlp = nn.Sequential(nn.Linear(word_dim, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, words: torch.Tensor, wmask: torch.Tensor, pairs: torch.Tensor,
                pmask: torch.Tensor) -> torch.Tensor:
        w = (self.words(words) * wmask[..., None]).sum(1) / wmask.sum(1, keepdim=True).clamp(min=1)
        p = (self.pairs(pairs) * pmask[..., None]).sum(1) / pmask.sum(1, keepdim=True).clamp(min=1)
        return self.mlp(w + p)


class PocketHead(nn.Module):
    """Frames' mean tokens (B, S, 1280), for "attn" also their PCA-projected tokens (B, S, a, 256),
    and questions -> (B, 13) answer logits.

    `frame_bias` (B, S) is added to the frames' relevance before the softmax over frames: -inf
    masks padding, log(k) stands for a frame repeated k times (identical frames, one computed).
    """

    pca_mean: torch.Tensor
    pca: torch.Tensor

    def __init__(self, cfg: HeadConfig, dim: int = 1280) -> None:
        super().__init__()
        if cfg.mode not in ("mean", "attn"):
            raise ValueError(f"unknown head mode {cfg.mode!r}")
        self.cfg = cfg
        w = cfg.width
        self.register_buffer("pca_mean", torch.zeros(dim))
        self.register_buffer("pca", torch.zeros(dim, PCA_DIM))
        self.question = QuestionEncoder(cfg.word_dim, w)
        m = cfg.mean_dim or dim
        self.mean = nn.Sequential(nn.LayerNorm(m), nn.Linear(m, w), nn.GELU())
        if cfg.mode == "attn":
            t = cfg.token_width or PCA_DIM
            self.tokens: nn.Module = (nn.Sequential(nn.LayerNorm(PCA_DIM), nn.Linear(PCA_DIM, t), nn.GELU(),
                                                    nn.LayerNorm(t)) if cfg.token_width else nn.LayerNorm(PCA_DIM))
            self.query = nn.Linear(w, cfg.heads * t)
            self.frame = nn.Sequential(nn.Linear(cfg.heads * t + w, w), nn.GELU())
        self.rel_q = nn.Linear(w, w)
        self.rel = nn.Sequential(nn.Linear(w, w), nn.GELU(), nn.Linear(w, 1))
        self.ans_q = nn.Linear(w, w)
        self.answer = nn.Sequential(nn.Linear(2 * w, w), nn.GELU(), nn.Linear(w, len(ANSWERS)))

    @property
    def reads_tokens(self) -> bool:
        return self.cfg.mode == "attn"

    def set_pca(self, mean: np.ndarray, components: np.ndarray) -> None:
        """The fixed projection: token mean (D,) and top principal directions (D, 256)."""
        with torch.no_grad():
            self.pca_mean.copy_(torch.from_numpy(mean))
            self.pca.copy_(torch.from_numpy(components))

    def project(self, tokens: torch.Tensor, dims: int = PCA_DIM) -> torch.Tensor:
        """(..., 1280) -> (..., dims) on the top principal directions."""
        return (tokens - self.pca_mean) @ self.pca[:, :dims]

    def frames(self, tokens: torch.Tensor | None, mean: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Per-frame features (B, S, w)."""
        m = self.mean(self.project(mean, self.cfg.mean_dim) if self.cfg.mean_dim else mean)
        if not self.reads_tokens:
            return m
        if tokens is None:
            raise ValueError("an attention head needs the frames' tokens")
        y, att = self.token_attention(tokens, q)
        pooled = att.transpose(-1, -2) @ y  # (B, S, heads, t)
        return self.frame(torch.cat([pooled.flatten(2), m], -1))

    def token_attention(self, tokens: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention head's token features (B, S, a, t) and its pooling weights (B, S, a, heads):
        per head, a softmax over a frame's tokens of their match with the question's query."""
        y = self.tokens(tokens)  # (B, S, a, t)
        b, t = y.shape[0], y.shape[-1]
        qh = self.query(q).view(b, 1, self.cfg.heads, t)  # one query per head, in token space
        return y, torch.softmax(y @ qh.transpose(-1, -2) / math.sqrt(t), dim=2)

    def forward(self, tokens: torch.Tensor | None, mean: torch.Tensor, frame_bias: torch.Tensor, words: torch.Tensor,
                wmask: torch.Tensor, pairs: torch.Tensor, pmask: torch.Tensor) -> torch.Tensor:
        q = self.question(words, wmask, pairs, pmask)
        p = self.frames(tokens, mean, q)  # (B, S, w)
        r = self.rel(p * self.rel_q(q)[:, None]).squeeze(-1) + frame_bias
        z = (torch.softmax(r, dim=1)[..., None] * p).sum(1)
        return self.answer(torch.cat([z * self.ans_q(q), z], -1))


class PocketVLM(OptionModel):
    """One side of the pocket pair as an option model."""

    def __init__(self, head: PocketHead, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.head = head.to(self.device).eval()

    @torch.inference_mode()
    def answer_logits(self, vision: torch.Tensor, question: str) -> torch.Tensor:
        """(13,) logits of every answer for one query's (F, a, D) tokens."""
        v = vision.to(self.device, torch.float32)[None]
        tokens = self.head.project(v) if self.head.reads_tokens else None
        words, pairs = word_ids(question)
        w, wm = pad_ids([words])
        p, pm = pad_ids([pairs])
        return self.head(tokens, v.mean(2), torch.zeros(1, v.shape[1], device=self.device), w.to(self.device),
                         wm.to(self.device),
                         p.to(self.device), pm.to(self.device))[0]

    def option_logits(self, vision: torch.Tensor, question: str, options: tuple[str, ...] | list[str]) -> np.ndarray:
        """(K,) float64: each option's answer logit; an option that names no answer gets their mean."""
        logits = self.answer_logits(vision, question).double().cpu().numpy()
        idx = [answer_index(o) for o in options]
        return np.array([logits[i] if i >= 0 else logits.mean() for i in idx], dtype=np.float64)

    @torch.inference_mode()
    def image_attention(self, vision: torch.Tensor, question: str,
                        options: tuple[str, ...] | list[str]) -> np.ndarray | None:
        """The substitute for an LM's attention (seed 003; the pocket heads have no LM): the large
        head's question-conditioned attention-pooling weights over the first frame's tokens, averaged
        over its heads. The small head pools by a plain mean: None."""
        if not self.head.reads_tokens:
            return None
        v = vision[:1].to(self.device, torch.float32)[None]
        words, pairs = word_ids(question)
        w, wm = pad_ids([words])
        p, pm = pad_ids([pairs])
        q = self.head.question(w.to(self.device), wm.to(self.device), p.to(self.device), pm.to(self.device))
        _, att = self.head.token_attention(self.head.project(v), q)
        return att[0, 0].mean(dim=-1).double().cpu().numpy()

    def roi_map(self, vision: torch.Tensor, question: str, options: tuple[str, ...] | list[str]) -> np.ndarray | None:
        """Seed 003's region map, the pocket substitute for ViCrop's relative attention: the large
        head's attention-pooling weights under a question-free prompt (GENERIC_QUESTION), i.e. where
        the head looks for "what is in the image". Measured on small easy-VQA shapes in 896 px
        canvases (60 queries, 7 x 7 tokens): its peak lies within 1.2 token cells of the shape in 92%
        of them; the question's own weights in 38%, ViCrop's ratio of the two in 8% (this head's
        question-conditioned pooling is not spatially selective, so dividing by the generic map
        removes the shape). None for the small head (a plain mean)."""
        return self.image_attention(vision, GENERIC_QUESTION, ())

    def text_tokens(self, question: str, options: tuple[str, ...] | list[str]) -> int:
        """Words the head reads (the options select logits; they are not read)."""
        return len(word_ids(question)[0])

    def parameters(self) -> int:
        return sum(p.numel() for p in self.head.parameters())


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted: safetensors writes the header
    from a hash map, whose order changes from run to run, so equal weights would hash differently."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8 bytes with spaces
    return len(header).to_bytes(8, "little") + header + data[8 + n:]


def save_head(head: PocketHead, path: Path, meta: dict[str, Any]) -> None:
    """Weights as safetensors (byte-identical for equal weights), with the head's config and `meta`
    in the file's metadata."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}
    info = {"format": FORMAT, "version": str(FORMAT_VERSION), "config": json.dumps(head.cfg.to_json()),
            "vocab": json.dumps(VOCAB), "answers": json.dumps(ANSWERS), **{k: str(v) for k, v in meta.items()}}
    write_atomic(path, canonical_safetensors(save(state, metadata=info)))


def load_head(path: Path) -> PocketHead:
    """A head saved by `save_head`; any problem is a PocketWeightsError saying how to rebuild."""
    from safetensors import safe_open

    if not path.is_file():
        raise PocketWeightsError(f"pocket weights {path} are missing; {REBUILD}")
    try:
        with safe_open(str(path), framework="pt") as f:
            info = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        if info.get("format") != FORMAT or info.get("version") != str(FORMAT_VERSION):
            raise ValueError(f"format {info.get('format')!r} version {info.get('version')!r}")
        if json.loads(info["vocab"]) != list(VOCAB) or json.loads(info["answers"]) != list(ANSWERS):
            raise ValueError("made for another vocabulary")
        cfg = HeadConfig(**json.loads(info["config"]))
        head = PocketHead(cfg)
        head.load_state_dict(state)
    except Exception as exc:  # safetensors raises its own error types for a corrupt file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PocketWeightsError(f"pocket weights {path} are unreadable ({reason}); {REBUILD}") from None
    return head.eval()


def load_pocket_models(folder: Path | None = None, device: str = "cpu") -> dict[str, PocketVLM]:
    """Both heads from `folder` (default: the committed traces/models/pocket)."""
    folder = folder or DEFAULT_DIR
    return {side: PocketVLM(load_head(folder / f"{side}.safetensors"), device) for side in SIDES}


def pocket_pair(folder: Path | None = None, device: str = "cpu") -> VLMPair:
    """The pocket VLMPair: one EfficientNet-Lite0 encoder shared by both heads (the large side's
    "own" encoder is the same one, so native and shared-encoder large runs read the same tokens)."""
    from testbed.models.effnet import EfficientNetLiteEncoder

    models = load_pocket_models(folder, device)  # weights first: a missing file fails before the encoder loads
    enc = EfficientNetLiteEncoder(device)
    return VLMPair({"small": enc, "large": enc}, dict(models), "pocket")
