"""The neural-linear backbone (seed 000 SIII-C): an MLP phi(c) -> u trained offline, frozen online.

Architecture: standardise c with the profiling split's mean and scale, then
Linear(p, 128) - ReLU - Linear(128, 64) - ReLU = u (d_u = 64), then a multi-head output
Linear(64, |A|) - sigmoid predicting the correctness probability of every density at once.
Training (`train_backbone`) fits the heads with binary cross-entropy on profiling triples
(c, a, correct), each triple supervising only its own head; online the heads are discarded and
per-density Bayesian linear regressions sit on u (`agents.NeuralLinearThompson`).

Training needs torch, imported inside `train_backbone` only; everything else is numpy, so a
decision never touches torch. Weights are saved as .npz (no pickle) with a JSON card.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np

from testbed.bandit._files import card_loader, read_npz_card, require, write_npz_card
from testbed.bandit.errors import BanditFileError, MismatchError
from testbed.query import DENSITIES

HIDDEN = (128, 64)
"""Hidden widths; the last one is the latent dimension d_u (seed 000: 128 and 64, d_u = 64)."""
FORMAT = "testbed.bandit.backbone"
VERSION = 1
_WEIGHTS = ("in_mean", "in_scale", "w1", "b1", "w2", "b2", "w_head", "b_head")


@dataclass(frozen=True)
class Backbone:
    """Frozen MLP weights (float64). Shapes: in_mean, in_scale (p,); w1 (p, h1), b1 (h1,);
    w2 (h1, d_u), b2 (d_u,); w_head (d_u, K), b_head (K,) for K = len(densities)."""

    densities: tuple[int, ...]
    in_mean: np.ndarray
    in_scale: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    w_head: np.ndarray
    b_head: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dim_in(self) -> int:
        return int(self.w1.shape[0])

    @property
    def dim(self) -> int:
        """d_u, the latent dimension."""
        return int(self.w2.shape[1])

    @property
    def fingerprint(self) -> str:
        """SHA-256 prefix over the densities and every weight: agent states record it, so a state
        is never restored on top of another backbone."""
        h = hashlib.sha256(repr(tuple(self.densities)).encode())
        for name in _WEIGHTS:
            h.update(np.ascontiguousarray(getattr(self, name), dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

    def transform(self, c: np.ndarray) -> np.ndarray:
        """The latent u = phi(c): (p,) -> (d_u,) or (m, p) -> (m, d_u)."""
        x = (np.asarray(c, dtype=np.float64) - self.in_mean) / self.in_scale
        h = np.maximum(x @ self.w1 + self.b1, 0.0)
        return np.maximum(h @ self.w2 + self.b2, 0.0)

    def predict(self, c: np.ndarray) -> np.ndarray:
        """The training heads' correctness probabilities: (m, p) -> (m, K)."""
        return 1.0 / (1.0 + np.exp(-(self.transform(c) @ self.w_head + self.b_head)))

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(getattr(self, name), dtype=np.float64) for name in _WEIGHTS}


def full_information(contexts: np.ndarray, correct: np.ndarray, densities: Sequence[int] = DENSITIES
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Profiling traces hold every density's outcome: expand contexts (m, p) and correctness
    (m, K) into triples (c, a, correct) of length m * K (query-major)."""
    c = np.asarray(contexts, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    if y.shape != (c.shape[0], len(densities)):
        raise ValueError(f"correctness has shape {y.shape}, expected ({c.shape[0]}, {len(densities)})")
    k = len(densities)
    return np.repeat(c, k, axis=0), np.tile(np.asarray(densities, dtype=np.int64), c.shape[0]), y.reshape(-1)


def _init(rng: np.random.Generator, fan_in: int, fan_out: int) -> tuple[np.ndarray, np.ndarray]:
    # torch.nn.Linear's default, drawn from our own generator so torch's global RNG is never used
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, fan_out)


def train_backbone(contexts: np.ndarray, actions: np.ndarray, correct: np.ndarray,
                   densities: Sequence[int] = DENSITIES, *, seed: int = 0, hidden: tuple[int, int] = HIDDEN,
                   epochs: int = 200, batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4
                   ) -> Backbone:
    """Fit the MLP on profiling triples: contexts (n, p), actions (n,) densities, correct (n,)
    in {0, 1} (see `full_information`). Deterministic for a seed on a given machine: initial
    weights and batch order come from numpy's generator, torch's global RNG is untouched, and
    training runs on one thread (restored afterwards)."""
    c = np.asarray(contexts, dtype=np.float64)
    a = np.asarray(actions)
    y = np.asarray(correct, dtype=np.float64)
    dens = tuple(int(d) for d in densities)
    if c.ndim != 2 or a.shape != (c.shape[0],) or y.shape != (c.shape[0],) or c.shape[0] == 0:
        raise ValueError(f"need contexts (n, p), actions (n,), correct (n,); got {c.shape}, {a.shape}, {y.shape}")
    unknown = set(np.unique(a).tolist()) - set(dens)
    if unknown:
        raise ValueError(f"actions {sorted(unknown)} are not among the densities {dens}")
    head = np.searchsorted(np.asarray(dens), a) if list(dens) == sorted(dens) else \
        np.array([dens.index(int(v)) for v in a])
    mean = c.mean(axis=0)
    std = c.std(axis=0)
    scale = np.where(std > 1e-8, std, 1.0)
    x = (c - mean) / scale

    try:
        import torch  # offline only: importing testbed.bandit must not load torch
    except ImportError:  # a sim-only install: the same net, initial weights and batches, in numpy
        return _train_numpy(x, head, y, mean, scale, dens, seed, hidden, epochs, batch_size, lr, weight_decay)
    threads = torch.get_num_threads()
    # one thread: faster for a net this small, and the sums no longer depend on the core count
    torch.set_num_threads(1)
    try:
        return _train(torch, x, head, y, mean, scale, dens, seed, hidden, epochs, batch_size, lr, weight_decay)
    finally:
        torch.set_num_threads(threads)


def _train_numpy(x: np.ndarray, head: np.ndarray, y: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                 dens: tuple[int, ...], seed: int, hidden: tuple[int, int], epochs: int, batch_size: int, lr: float,
                 weight_decay: float) -> Backbone:
    """`_train` without torch: float32 forward and hand-written backward passes, torch's Adam (L2 weight
    decay added to the gradient, bias-corrected moments); the same initial weights and batch order, so
    it tracks torch's fit up to float32 summation order (tests/test_bandit.py compares the two)."""
    rng = np.random.default_rng(seed)
    p, (h1, h2), k = x.shape[1], hidden, len(dens)
    params = [t.astype(np.float32) for pair in (_init(rng, p, h1), _init(rng, h1, h2), _init(rng, h2, k)) for t in pair]
    m1 = [np.zeros_like(t) for t in params]
    m2 = [np.zeros_like(t) for t in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    n, step, loss_sum = len(y), 0, 0.0
    for _ in range(epochs):
        order = rng.permutation(n)
        loss_sum = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            w1, b1, w2, b2, wh, bh = params
            xb, yb, hb, rows = x32[idx], y32[idx], head[idx], np.arange(len(idx))
            z1 = xb @ w1 + b1
            a1 = np.maximum(z1, 0)
            z2 = a1 @ w2 + b2
            u = np.maximum(z2, 0)
            logit = (u @ wh + bh)[rows, hb]
            loss = np.mean(np.maximum(logit, 0) - logit * yb + np.log1p(np.exp(-np.abs(logit))))
            dout = np.zeros((len(idx), k), dtype=np.float32)
            dout[rows, hb] = (1.0 / (1.0 + np.exp(-logit)) - yb) / len(idx)
            dz2 = (dout @ wh.T) * (z2 > 0)
            dz1 = (dz2 @ w2.T) * (z1 > 0)
            grads = [xb.T @ dz1, dz1.sum(0), a1.T @ dz2, dz2.sum(0), u.T @ dout, dout.sum(0)]
            step += 1
            c1, c2 = 1 - beta1 ** step, 1 - beta2 ** step
            for i, (t, g) in enumerate(zip(params, grads)):
                g = g + weight_decay * t
                m1[i] = beta1 * m1[i] + (1 - beta1) * g
                m2[i] = beta2 * m2[i] + (1 - beta2) * g * g
                params[i] = (t - (lr / c1) * m1[i] / (np.sqrt(m2[i]) / np.sqrt(c2) + eps)).astype(np.float32)
            loss_sum += float(loss) * len(idx)
    w = [t.astype(np.float64) for t in params]
    info = {"seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "samples": n, "final_epoch_bce": loss_sum / n, "trainer": "numpy"}
    return Backbone(dens, mean, scale, w[0], w[1], w[2], w[3], w[4], w[5], info)


def _train(torch: Any, x: np.ndarray, head: np.ndarray, y: np.ndarray, mean: np.ndarray, scale: np.ndarray,
           dens: tuple[int, ...], seed: int, hidden: tuple[int, int], epochs: int, batch_size: int, lr: float,
           weight_decay: float) -> Backbone:
    rng = np.random.default_rng(seed)
    p, (h1, h2), k = x.shape[1], hidden, len(dens)
    params = [torch.tensor(t, dtype=torch.float32, requires_grad=True)
              for pair in (_init(rng, p, h1), _init(rng, h1, h2), _init(rng, h2, k)) for t in pair]
    w1, b1, w2, b2, wh, bh = params
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    ht = torch.tensor(head, dtype=torch.int64)
    n = len(y)
    loss_sum = 0.0
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(n))
        loss_sum = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            u = torch.relu(torch.relu(xt[idx] @ w1 + b1) @ w2 + b2)
            logit = (u @ wh + bh).gather(1, ht[idx, None])[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
    w = [t.detach().numpy().astype(np.float64) for t in params]
    info = {"seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "samples": n, "final_epoch_bce": loss_sum / n}
    return Backbone(dens, mean, scale, w[0], w[1], w[2], w[3], w[4], w[5], info)


TRAINING_VERSION = 1
"""Bump when `train_backbone` changes what it computes: cached fits made before are then not reused."""


def shipped_fits() -> Path:
    """Backbones fitted with torch for the shipped scenarios' profiling splits (traces/backbones/), keyed as
    the cache is: a run of a shipped scenario reuses them, so an install without torch gets the very fits
    (and numbers) an install with it gets."""
    from testbed.shipped import DATA_ROOT

    return DATA_ROOT / "traces" / "backbones"


def train_cached(contexts: np.ndarray, actions: np.ndarray, correct: np.ndarray, densities: Sequence[int],
                 cache: Path | None, *, seed: int = 0, **train_kw: Any) -> tuple[Backbone, Path | None]:
    """`train_backbone`, or the backbone an earlier call with the same inputs left in `cache` (keyed
    by a SHA-256 of the inputs, the seed, the settings and TRAINING_VERSION; float64 weights, so a
    cached fit is the very one training gives), else the fit shipped for it. Returns (backbone, the file
    it was read from, None when it was trained now); an unreadable cache file is refitted and replaced."""
    if cache is None:
        return train_backbone(contexts, actions, correct, densities, seed=seed, **train_kw), None
    h = hashlib.sha256(repr((TRAINING_VERSION, VERSION, tuple(int(d) for d in densities), seed,
                             sorted(train_kw.items()))).encode())
    for a in (contexts, actions, correct):
        arr = np.ascontiguousarray(a, dtype=np.float64)
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    path = cache / f"backbone-{h.hexdigest()[:32]}.npz"
    for found in (path, shipped_fits() / path.name):  # this machine's cache, then the fits the package ships
        if found.is_file():
            try:
                return load_backbone(found, densities), found
            except BanditFileError:
                pass
    backbone = train_backbone(contexts, actions, correct, densities, seed=seed, **train_kw)
    try:
        save_backbone(backbone, path)
    except OSError:  # a read-only or full cache costs the next run a fit, nothing else
        pass
    return backbone, None


def save_backbone(backbone: Backbone, path: Path | str) -> None:
    """Write the weights to `path` (.npz) and its card (same name, .json)."""
    card = {"format": FORMAT, "version": VERSION, "densities": list(backbone.densities), "dim_in": backbone.dim_in,
            "hidden": [int(backbone.w1.shape[1]), backbone.dim], "fingerprint": backbone.fingerprint,
            "training": backbone.info}
    write_npz_card(path, backbone.arrays(), card)


@card_loader
def load_backbone(path: Path | str, densities: Sequence[int] | None = None, dim_in: int | None = None) -> Backbone:
    """Read a backbone; with `densities` or `dim_in` given, one made for others is refused."""
    arrays, card = read_npz_card(path, FORMAT, VERSION)
    dens = tuple(int(d) for d in card.get("densities", ()))
    if densities is not None and dens != tuple(densities):
        raise MismatchError(path, f"backbone was trained for densities {list(dens)}, this run uses {list(densities)}")
    p, (h1, h2), k = int(card.get("dim_in", -1)), card.get("hidden", (-1, -1)), len(dens)
    if dim_in is not None and p != dim_in:
        raise MismatchError(path, f"backbone takes {p} context features, this run builds {dim_in}")
    require(path, arrays, {"in_mean": (p,), "in_scale": (p,), "w1": (p, h1), "b1": (h1,), "w2": (h1, h2),
                           "b2": (h2,), "w_head": (h2, k), "b_head": (k,)})
    bb = Backbone(dens, **{n: arrays[n] for n in _WEIGHTS}, info=dict(card.get("training", {})))
    if bb.fingerprint != card.get("fingerprint"):
        raise MismatchError(path, "weights do not match the fingerprint in the card")
    return bb
