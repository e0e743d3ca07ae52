"""Training and evaluating the pocket heads on cached EfficientNet-Lite0 features of easy-VQA.

Deterministic for a seed: numpy and torch generators seeded from it, a fixed number of steps,
batches drawn in a fixed order. Pure computation on arrays handed in (the caller loads and caches
the features, reads clocks and writes files).

Data: easy-VQA's train images minus a held-out calibration tenth (never trained on; the small
head's temperature is fitted there), its test split for the figures. Image questions are one
frame; video questions are made here from image labels: S scenes (one frame each, or a few
identical frames), where exactly one scene has the asked attribute (or, for yes/no, one or none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from testbed.codec.merge import merge_to_density
from testbed.models.pocket import PCA_DIM, HeadConfig, PocketHead, answer_index, pad_ids, word_ids
from testbed.models.pocket_data import ANSWERS, COLORS, SHAPES, Split, options_for

DENSITIES = (2, 4, 8, 16, 32)
EVAL_DENSITY = 16
"""The density the policies infer at by default (models.default_density): what the figures use."""
VIDEO_SCENES = (2, 4, 8, 16, 32, 64)

VIDEO_TEMPLATES = {
    "color_of_shape": "what is the color of the {shape} in the video?",
    "shape_of_color": "what is the {color} shape in the video?",
    "has_shape": "does the video contain a {shape}?",
    "has_color": "is there a {color} shape in the video?",
}
"""Video questions: the scene they need is named by its shape or colour (unique in the clip)."""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class VideoQuestion:
    scenes: tuple[int, ...]  # image ids, in scene order
    question: str
    answer: str
    target: int  # index into scenes of the scene the question needs; -1 if none (a "no")


def compose_video(rng: np.random.Generator, shape: np.ndarray, color: np.ndarray, pool: np.ndarray,
                  n_scenes: int, kind: str | None = None) -> VideoQuestion:
    """A clip of `n_scenes` images from `pool` (ids with known shape and colour) and a question
    that needs its one scene with the named attribute."""
    kind = kind or str(rng.choice(list(VIDEO_TEMPLATES)))
    by_shape = kind in ("color_of_shape", "has_shape")
    attr = shape if by_shape else color
    values = SHAPES if by_shape else COLORS
    value = int(rng.integers(len(values)))
    held = np.unique(attr[pool])
    if value not in held or len(held) < 2:  # a small pool: name a value it has, with others to fill
        if len(held) < 2:
            raise ValueError(f"a video needs images of at least two {'shapes' if by_shape else 'colours'}")
        value = int(rng.choice(held))
    present = kind.startswith(("color_of", "shape_of")) or bool(rng.integers(2))
    others = pool[attr[pool] != value]
    scenes = list(rng.choice(others, size=n_scenes, replace=len(others) < n_scenes))
    target = -1
    if present:
        target = int(rng.integers(n_scenes))
        scenes[target] = int(rng.choice(pool[attr[pool] == value]))
    name = values[value]
    question = VIDEO_TEMPLATES[kind].format(shape=name, color=name)
    if kind == "color_of_shape":
        answer = COLORS[color[scenes[target]]]
    elif kind == "shape_of_color":
        answer = SHAPES[shape[scenes[target]]]
    else:
        answer = "yes" if present else "no"
    return VideoQuestion(tuple(int(s) for s in scenes), question, answer, target)


IMAGE_TEMPLATES = {
    "color_of_shape": "what is the color of the {shape}?",
    "shape_of_color": "what is the {color} shape?",
    "has_shape": "does the image contain a {shape}?",
    "has_color": "is there a {color} shape?",
}
"""Questions about a 2 x 2 mosaic of easy-VQA images, in easy-VQA's own wording: the asked shape or
colour is unique among the four (or, for yes/no, present or absent)."""


def mosaic_sets(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    """(n, 4) image ids for 2 x 2 mosaics, from `pool`."""
    return rng.choice(pool, size=(n, 4), replace=True).astype(np.int64)


def mosaic_question(rng: np.random.Generator, shapes: np.ndarray, colors: np.ndarray) -> tuple[str, str]:
    """A question about a mosaic whose parts have `shapes` and `colors` (4 each) and its answer."""
    kinds = ["has_shape", "has_color"]
    s_once = [s for s in range(len(SHAPES)) if (shapes == s).sum() == 1]
    c_once = [c for c in range(len(COLORS)) if (colors == c).sum() == 1]
    kinds += ["color_of_shape"] * bool(s_once) + ["shape_of_color"] * bool(c_once)
    kind = str(rng.choice(kinds))
    if kind == "color_of_shape":
        s = int(rng.choice(s_once))
        return IMAGE_TEMPLATES[kind].format(shape=SHAPES[s]), COLORS[int(colors[shapes == s][0])]
    if kind == "shape_of_color":
        c = int(rng.choice(c_once))
        return IMAGE_TEMPLATES[kind].format(color=COLORS[c]), SHAPES[int(shapes[colors == c][0])]
    if kind == "has_shape":
        s = int(rng.integers(len(SHAPES)))
        return IMAGE_TEMPLATES[kind].format(shape=SHAPES[s]), "yes" if (shapes == s).any() else "no"
    c = int(rng.integers(len(COLORS)))
    return IMAGE_TEMPLATES[kind].format(color=COLORS[c]), "yes" if (colors == c).any() else "no"


def merged_features(feats: np.ndarray, densities: tuple[int, ...] = DENSITIES, chunk: int = 256
                    ) -> dict[int, np.ndarray]:
    """{a: (n, a, D) float16}: each image's tokens ToMe-merged to density a, as real runs merge."""
    out: dict[int, np.ndarray] = {}
    for a in densities:
        parts = []
        for s in range(0, len(feats), chunk):
            x = torch.from_numpy(np.asarray(feats[s:s + chunk], dtype=np.float32))
            parts.append(merge_to_density(x, a)[0].numpy().astype(np.float16))
        out[a] = np.concatenate(parts)
    return out


def fit_pca(feats: np.ndarray, dim: int = PCA_DIM, sample: int = 20_000, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and the top-`dim` principal directions (D, dim) of the training tokens, signs fixed
    so each direction's largest coordinate is positive (a deterministic basis)."""
    flat = feats.reshape(-1, feats.shape[-1])
    rng = np.random.default_rng([seed, 5])
    pick = np.sort(rng.choice(len(flat), sample, replace=False)) if len(flat) > sample else np.arange(len(flat))
    x = np.asarray(flat[pick], dtype=np.float32)
    mean = x.mean(0, dtype=np.float64)
    xc = x - mean.astype(np.float32)
    cov = (xc.T @ xc).astype(np.float64) / len(x)
    vals, vecs = np.linalg.eigh(cov)
    vecs = vecs[:, np.argsort(vals)[::-1][:dim]]
    signs = np.sign(vecs[np.abs(vecs).argmax(0), np.arange(dim)])
    return mean.astype(np.float32), (vecs * signs).astype(np.float32)


@dataclass
class TrainData:
    """What training needs, per split: merged tokens (already PCA-projected for the large head:
    `large[a]` is (n, a, 256)), the mean token per density (`small[a]`, (n, 1280)), labels."""

    split: Split
    small: dict[int, np.ndarray]  # {a: (n_images, 1280)} mean of the merged tokens
    large: dict[int, np.ndarray]  # {a: (n_images, a, 256)}
    shape: np.ndarray
    color: np.ndarray
    questions: list[int] = field(default_factory=list)  # question indices used


def build_data(split: Split, merged: dict[int, np.ndarray], pca_mean: np.ndarray, pca: np.ndarray,
               shape: np.ndarray, color: np.ndarray) -> TrainData:
    small = {a: m.astype(np.float32).mean(1) for a, m in merged.items()}
    large = {a: ((m.astype(np.float32) - pca_mean) @ pca).astype(np.float16) for a, m in merged.items()}
    return TrainData(split, small, large, shape, color)


@dataclass
class MosaicData:
    """2 x 2 mosaics of a split's images: the same per-density inputs as TrainData, and each part's
    shape and colour (n, 4)."""

    small: dict[int, np.ndarray]
    large: dict[int, np.ndarray]
    shapes: np.ndarray
    colors: np.ndarray


def build_mosaics(sets: np.ndarray, merged: dict[int, np.ndarray], pca_mean: np.ndarray, pca: np.ndarray,
                  shape: np.ndarray, color: np.ndarray) -> MosaicData:
    d = build_data(None, merged, pca_mean, pca, shape, color)  # type: ignore[arg-type]
    return MosaicData(d.small, d.large, shape[sets], color[sets])


def _text(questions: list[str]) -> tuple[torch.Tensor, ...]:
    ids = [word_ids(q) for q in questions]
    w, wm = pad_ids([i[0] for i in ids])
    p, pm = pad_ids([i[1] for i in ids])
    return w, wm, p, pm


def _option_mask(answers: list[str]) -> torch.Tensor:
    """(n, 13): 0 on each question's options, -inf elsewhere (the loss is over the options)."""
    m = torch.full((len(answers), len(ANSWERS)), float("-inf"))
    for i, a in enumerate(answers):
        m[i, [answer_index(o) for o in options_for(a)]] = 0.0
    return m


def _vision(data: TrainData, head: PocketHead, a: int, ids: np.ndarray) -> tuple[torch.Tensor | None, torch.Tensor]:
    """A head's inputs for image ids (B, S): PCA tokens (B, S, a, 256) if it reads them, mean tokens (B, S, 1280)."""
    tokens = torch.from_numpy(data.large[a][ids].astype(np.float32)) if head.reads_tokens else None
    return tokens, torch.from_numpy(data.small[a][ids])


def _mosaic_vision(m: MosaicData, head: PocketHead, a: int, rows: np.ndarray
                   ) -> tuple[torch.Tensor | None, torch.Tensor]:
    tokens = torch.from_numpy(m.large[a][rows][:, None].astype(np.float32)) if head.reads_tokens else None
    return tokens, torch.from_numpy(m.small[a][rows][:, None])


@torch.inference_mode()
def mosaic_accuracy(head: PocketHead, m: MosaicData, density: int, seed: int) -> float:
    """Accuracy on one question per mosaic (the same questions for every head and density)."""
    rng = np.random.default_rng([seed, 11])
    qa = [mosaic_question(rng, m.shapes[r], m.colors[r]) for r in range(len(m.shapes))]
    correct = 0
    for s in range(0, len(qa), 256):
        rows = np.arange(s, min(s + 256, len(qa)))
        logits = head(*_mosaic_vision(m, head, density, rows), torch.zeros(len(rows), 1),
                      *_text([qa[r][0] for r in rows]))
        view, labels = option_view(logits.double().numpy(), [qa[r][1] for r in rows])
        correct += int((np.nanargmax(view, 1) == labels).sum())
    return correct / max(1, len(qa))


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    steps: int = 1200
    image_batch: int = 128
    video_batch: int = 12
    video_every: int = 2  # a video batch every this many steps
    mosaic_batch: int = 64  # mosaic questions per step (when mosaics are given)
    lr: float = 3e-3
    weight_decay: float = 1e-4


def train_head(side: str, cfg: HeadConfig, data: TrainData, train_q: np.ndarray, video_pool: np.ndarray,
               tc: TrainConfig, pca: tuple[np.ndarray, np.ndarray], mosaics: MosaicData | None = None,
               progress: Progress | None = None) -> PocketHead:
    """Train one head: image questions `train_q` (indices into data.split) at random densities, a
    video batch every `tc.video_every` steps composed from `video_pool` images, and questions about
    `mosaics` (drawn afresh each step)."""
    side_seed = {"small": 1, "large": 2}[side]
    torch.manual_seed(tc.seed * 1000 + side_seed)
    rng = np.random.default_rng([tc.seed, side_seed])
    head = PocketHead(cfg)
    head.set_pca(*pca)
    opt = torch.optim.AdamW(head.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.lr, total_steps=tc.steps, pct_start=0.1)
    split = data.split
    q_text = split.questions
    head.train()
    for step in range(tc.steps):
        a = int(rng.choice(DENSITIES))
        pick = rng.choice(train_q, size=min(tc.image_batch, len(train_q)), replace=False)
        answers = [split.answers[i] for i in pick]
        logits = head(*_vision(data, head, a, split.image_ids[pick][:, None]), torch.zeros(len(pick), 1),
                      *_text([q_text[i] for i in pick]))
        target = torch.tensor([answer_index(s) for s in answers])
        loss = F.cross_entropy(logits + _option_mask(answers), target)
        if tc.video_every and step % tc.video_every == 0 and len(video_pool):
            n_scenes = int(rng.choice(VIDEO_SCENES))
            vids = [compose_video(rng, data.shape, data.color, video_pool, n_scenes) for _ in range(tc.video_batch)]
            ids = np.array([v.scenes for v in vids])
            repeats = rng.integers(1, 4, size=ids.shape) if rng.random() < 0.3 else np.ones(ids.shape, np.int64)
            va = int(rng.choice(DENSITIES))
            v_answers = [v.answer for v in vids]
            v_logits = head(*_vision(data, head, va, ids), torch.from_numpy(np.log(repeats)).float(),
                            *_text([v.question for v in vids]))
            v_target = torch.tensor([answer_index(s) for s in v_answers])
            loss = loss + F.cross_entropy(v_logits + _option_mask(v_answers), v_target)
        if mosaics is not None and tc.mosaic_batch:
            rows = rng.choice(len(mosaics.shapes), size=min(tc.mosaic_batch, len(mosaics.shapes)), replace=False)
            qa = [mosaic_question(rng, mosaics.shapes[r], mosaics.colors[r]) for r in rows]
            ma = int(rng.choice(DENSITIES))
            m_logits = head(*_mosaic_vision(mosaics, head, ma, rows), torch.zeros(len(rows), 1),
                            *_text([x[0] for x in qa]))
            m_answers = [x[1] for x in qa]
            loss = loss + F.cross_entropy(m_logits + _option_mask(m_answers),
                                          torch.tensor([answer_index(x) for x in m_answers]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress and (step + 1) % 100 == 0:
            progress(f"{side}: step {step + 1}/{tc.steps}, loss {loss.item():.3f}")
    return head.eval()


@torch.inference_mode()
def image_logits(head: PocketHead, side: str, data: TrainData, q_idx: np.ndarray, density: int,
                 batch: int = 512) -> np.ndarray:
    """(n, 13) answer logits of image questions `q_idx` at `density`."""
    out = []
    split = data.split
    for s in range(0, len(q_idx), batch):
        pick = q_idx[s:s + batch]
        out.append(head(*_vision(data, head, density, split.image_ids[pick][:, None]), torch.zeros(len(pick), 1),
                        *_text([split.questions[i] for i in pick])).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(ANSWERS)))


def option_view(logits: np.ndarray, answers: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-question option logits (n, 8) NaN-padded and the true option's index."""
    k = max(len(options_for(a)) for a in answers)
    out = np.full((len(answers), k), np.nan)
    labels = np.zeros(len(answers), dtype=np.int64)
    for i, a in enumerate(answers):
        opts = options_for(a)
        out[i, : len(opts)] = logits[i, [answer_index(o) for o in opts]]
        labels[i] = opts.index(a)
    return out, labels


@torch.inference_mode()
def video_accuracy(head: PocketHead, side: str, data: TrainData, pool: np.ndarray, n: int, n_scenes: int,
                   density: int, seed: int) -> float:
    """Accuracy on `n` composed video questions of `n_scenes` scenes (one frame each)."""
    rng = np.random.default_rng([seed, 9, n_scenes])
    vids = [compose_video(rng, data.shape, data.color, pool, n_scenes) for _ in range(n)]
    correct = 0
    for s in range(0, n, 32):
        part = vids[s:s + 32]
        ids = np.array([v.scenes for v in part])
        logits = head(*_vision(data, head, density, ids), torch.zeros(ids.shape), *_text([v.question for v in part]))
        view, labels = option_view(logits.double().numpy(), [v.answer for v in part])
        correct += int((np.nanargmax(view, 1) == labels).sum())
    return correct / max(1, n)

