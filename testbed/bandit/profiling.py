"""Run start: everything a density agent needs, fitted on the profiling split once per run.

From the profiling queries' arrays (frames, small-model logits, large-model logits per density,
answers, and the optional context columns of the trace) `fit_profiling` builds the context
builder (PCA on the embeddings), the profiling contexts, the full-information correctness
matrix and, for the neural agents, the trained backbone; `make_agent` turns that into a
warm-started agent of any kind. Deterministic for a seed. Arrays in, values out: no trace
reading here (the caller maps `QueryRecord`s or trace columns to arrays).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from testbed.bandit.agents import (
    Agent,
    CostModel,
    EpsilonGreedy,
    FixedDensity,
    LinUCB,
    NeuralLinearThompson,
    Oracle,
    RawFeatures,
)
from testbed.bandit._files import card_loader, card_path, read_npz_card, require, write_npz_card
from testbed.bandit.backbone import Backbone, full_information, load_backbone, save_backbone, train_cached
from testbed.bandit.errors import MismatchError
from testbed.bandit.features import PCA, ContextBuilder, fit_context_builder
from testbed.query import DENSITIES
from testbed.router.calibration import padded_logits


def correctness_matrix(large_logits: Sequence[Mapping[int, np.ndarray]], answers: Sequence[int],
                       densities: Sequence[int] = DENSITIES) -> np.ndarray:
    """(m, K) 1{argmax of the large model's logits at density a = answer} per query and density."""
    return np.array([[float(int(np.argmax(row[a])) == int(ans)) for a in densities]
                     for row, ans in zip(large_logits, answers)])


def _matrix(rows: Sequence[Sequence[float]] | np.ndarray | None, name: str) -> np.ndarray | None:
    if rows is None:
        return None
    if any(r is None for r in rows):
        raise ValueError(f"{name} is missing for some profiling queries: give it for all or none")
    return np.asarray([np.asarray(r, dtype=np.float64) for r in rows])


def _column(v: Sequence[float] | np.ndarray | None, name: str) -> np.ndarray | None:
    if v is None:
        return None
    out = np.asarray(v, dtype=np.float64)
    if np.isnan(out).any():
        raise ValueError(f"{name} is missing for some profiling queries: give it for all or none")
    return out


@dataclass(frozen=True)
class Profiling:
    """What a run fits once: the context builder, the profiling contexts (m, p), their
    full-information correctness (m, K), and the backbone (None when no neural agent runs)."""

    builder: ContextBuilder
    contexts: np.ndarray
    correct: np.ndarray
    densities: tuple[int, ...]
    backbone: Backbone | None
    cached_from: Path | None = None  # the file the backbone was read from (`train_cached`); None: fitted now

    @property
    def cached(self) -> bool:
        return self.cached_from is not None

    def triples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(contexts, actions, correct) with every density's outcome of every query."""
        return full_information(self.contexts, self.correct, self.densities)


def fit_profiling(n_frames: Sequence[float], small_logits: Sequence[np.ndarray],
                  large_logits: Sequence[Mapping[int, np.ndarray]], answers: Sequence[int], small_temperature: float,
                  txt: Sequence[Sequence[float]] | None = None, vis: Sequence[Sequence[float]] | None = None,
                  s_max: Sequence[float] | None = None, s_mean: Sequence[float] | None = None,
                  s_cplx: Sequence[float] | None = None, densities: Sequence[int] = DENSITIES, seed: int = 0,
                  train: bool = True, cache: Path | None = None, **train_kw: Any) -> Profiling:
    """Fit on m profiling queries: frames the policy's sampler takes (m,), the small model's
    option logits (m ragged arrays), the large model's logits per density (m mappings), the
    answers, the small model's calibrated temperature, and the trace's optional context columns
    (context_txt, context_vis as lists of floats; context_s_max, _s_mean, _s_cplx), None where the
    trace lacks them. `train=False` skips the backbone (only LinUCB, raw epsilon-greedy, fixed and
    oracle agents then); `cache`: a folder where an identical earlier fit's backbone is reused."""
    if len(small_logits) == 0:
        raise ValueError("no profiling queries: the bandit is fitted on the profiling split")
    dens = tuple(int(d) for d in densities)
    txt_m, vis_m = _matrix(txt, "context_txt"), _matrix(vis, "context_vis")
    builder = fit_context_builder(small_temperature, txt_m, vis_m)
    contexts = builder.build(np.asarray(n_frames, dtype=np.float64), padded_logits(list(small_logits)), txt_m, vis_m,
                             _column(s_max, "context_s_max"), _column(s_mean, "context_s_mean"),
                             _column(s_cplx, "context_s_cplx"))
    correct = correctness_matrix(large_logits, answers, dens)
    backbone, cached = train_cached(*full_information(contexts, correct, dens), dens, cache, seed=seed,
                                    **train_kw) if train else (None, None)
    return Profiling(builder, contexts, correct, dens, backbone, cached)


AGENT_KINDS = ("neural-linear-thompson", "epsilon-greedy", "epsilon-greedy-raw", "linucb", "fixed", "oracle")


def make_agent(kind: str, profiling: Profiling, cost: CostModel | None = None, **kw: Any) -> Agent:
    """A warm-started agent: `neural-linear-thompson` and `epsilon-greedy` on the backbone's latent,
    `epsilon-greedy-raw` and `linucb` on the standardised raw context, `fixed` (density=...),
    `oracle`. Extra keywords go to the agent's constructor (alpha, epsilon, alpha_ucb, ...)."""
    cost = cost or CostModel(profiling.densities)
    if tuple(cost.densities) != profiling.densities:
        raise ValueError(f"cost densities {cost.densities} differ from the profiling's {profiling.densities}")
    if kind == "fixed":
        return FixedDensity(kw.pop("density"), cost, **kw)
    if kind == "oracle":
        return Oracle(cost)
    agent: NeuralLinearThompson | EpsilonGreedy | LinUCB
    if kind in ("neural-linear-thompson", "epsilon-greedy"):
        if profiling.backbone is None:
            raise ValueError(f"a {kind} agent needs the backbone: fit_profiling(..., train=True)")
        agent = NeuralLinearThompson(profiling.backbone, cost, **kw) if kind == "neural-linear-thompson" else \
            EpsilonGreedy(profiling.backbone, cost, **kw)
    elif kind == "epsilon-greedy-raw":
        agent = EpsilonGreedy(RawFeatures.fit(profiling.contexts), cost, **kw)
    elif kind == "linucb":
        agent = LinUCB(RawFeatures.fit(profiling.contexts), cost, **kw)
    else:
        raise ValueError(f"unknown agent kind {kind!r}; one of {AGENT_KINDS}")
    agent.warm_start(*profiling.triples())
    return agent


FORMAT = "testbed.bandit.profiling"
VERSION = 1


def backbone_path(path: Path | str) -> Path:
    """Where `save_profiling` puts the backbone: `backbone.npz` next to the profiling file."""
    return Path(path).with_name("backbone.npz")


def save_profiling(profiling: Profiling, path: Path | str) -> None:
    """Write the profiling fit (contexts, correctness, the context builder's temperature and PCA
    projections) to `path` (.npz plus .json card) and its backbone, if any, to `backbone.npz` next
    to it: what a decision log's agents are rebuilt from offline (`testbed ope`)."""
    arrays = {"contexts": profiling.contexts, "correct": profiling.correct}
    b = profiling.builder
    for name, pca in (("txt", b.pca_txt), ("vis", b.pca_vis)):
        if pca is not None:
            arrays[f"pca_{name}_mean"], arrays[f"pca_{name}_components"] = pca.mean, pca.components
    card: dict[str, Any] = {"format": FORMAT, "version": VERSION, "densities": list(profiling.densities),
                            "temperature": b.temperature, "d": b.d, "backbone": None}
    if profiling.backbone is not None:
        save_backbone(profiling.backbone, backbone_path(path))
        card["backbone"] = {"file": backbone_path(path).name, "fingerprint": profiling.backbone.fingerprint}
    write_npz_card(path, arrays, card)


@card_loader
def load_profiling(path: Path | str) -> Profiling:
    """Read what `save_profiling` wrote; a missing, corrupt or mismatched file (or backbone) is one
    BanditFileError naming it."""
    arrays, card = read_npz_card(path, FORMAT, VERSION)
    dens = tuple(int(d) for d in card.get("densities", ()))
    ctx = arrays.get("contexts")
    if ctx is None or ctx.ndim != 2:
        raise MismatchError(path, "contexts must be a (queries, features) array")
    m, p = ctx.shape
    require(path, arrays, {"contexts": (m, p), "correct": (m, len(dens))})

    def pca(name: str) -> PCA | None:
        mean, comps = arrays.get(f"pca_{name}_mean"), arrays.get(f"pca_{name}_components")
        return None if mean is None or comps is None else PCA(mean, comps)

    builder = ContextBuilder(float(card.get("temperature", 1.0)), pca("txt"), pca("vis"), int(card.get("d", 4)))
    backbone = None
    info = card.get("backbone")
    if info:
        bpath = Path(path).with_name(str(info.get("file", "backbone.npz")))
        backbone = load_backbone(bpath, dens, p)
        if backbone.fingerprint != info.get("fingerprint"):
            raise MismatchError(card_path(path), f"names backbone {info.get('fingerprint')}, {bpath.name} holds "
                                                 f"{backbone.fingerprint}")
    return Profiling(builder, ctx, arrays["correct"], dens, backbone)
