"""Context features of the density bandit (seed 000 Eq. 4-10), as pure functions over arrays.

The context vector of one query (Eq. 4), in this order (`CONTEXT_FIELDS`, dimension 7 + 2d,
15 for the paper's d = 4):

    [n, kappa, delta, H, z_txt[0..d), z_vis[0..d), s_max, s_mean, s_cplx]

- n: frames sampled for the query (raw count; models standardise it, see `backbone`);
- kappa, delta, H: top-1 probability, top-1 minus top-2, and entropy normalised by log |C| of the
  small model's temperature-calibrated option distribution (Eq. 5);
- z_txt, z_vis: pooled question and vision embeddings projected onto the top-d principal
  components of the profiling split (Eq. 6);
- s_max, s_mean: max and mean over clips of the clip relevance R_t, the summed cosine
  similarity between the question embedding and the clip's vision tokens (Eq. 7);
- s_cplx: mean over the top-K (= 3) clips by R_t of the normalised spectral entropy of the
  clip's token matrix (Eq. 8-10).

Shapes: m queries; logits (m, K) NaN-padded for queries with fewer than K options (as
`testbed.router.calibration`); embeddings (m, D). No module state; numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np

from testbed.router.calibration import option_probs

PCA_DIM = 4
"""d, the PCA dimension of each pooled embedding (seed 000 Eq. 6: d = 4 by default)."""
TOP_CLIPS = 3
"""K, the number of most relevant clips whose spectral entropy makes s_cplx (Eq. 10: K = 3)."""


def context_fields(d: int = PCA_DIM) -> tuple[str, ...]:
    """Names of the context vector's entries, in order."""
    return ("n", "kappa", "delta", "entropy", *(f"z_txt{i}" for i in range(d)), *(f"z_vis{i}" for i in range(d)),
            "s_max", "s_mean", "s_cplx")


CONTEXT_FIELDS = context_fields()


def context_dim(d: int = PCA_DIM) -> int:
    """Length of the context vector for PCA dimension d: 7 + 2d."""
    return 7 + 2 * d


# --- uncertainty (Eq. 2, 5) ------------------------------------------------------------------


def uncertainty_features(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(m, K) NaN-padded option logits -> (m, 3) columns kappa, delta, H.

    H is the entropy over the valid options divided by log |C| (1 for a uniform distribution,
    0 for a one-hot one); with a single valid option H = 0 and delta = 1."""
    z = np.atleast_2d(np.asarray(logits, dtype=np.float64))
    valid = ~np.isnan(z)
    if not valid.any(axis=1).all():
        raise ValueError("every query needs at least one valid (non-NaN) option logit")
    p = option_probs(z, temperature)
    top = -np.sort(-p, axis=1)
    kappa = top[:, 0]
    delta = kappa - (top[:, 1] if p.shape[1] > 1 else 0.0)
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    k = valid.sum(axis=1)
    h = np.where(k > 1, -plogp.sum(axis=1) / np.log(np.maximum(k, 2)), 0.0)
    return np.stack([kappa, delta, np.clip(h, 0.0, 1.0)], axis=1)


# --- PCA of pooled embeddings (Eq. 6) ---------------------------------------------------------


@dataclass(frozen=True)
class PCA:
    """A projection fitted on the profiling split: z = (h - mean) @ components.T.

    mean is (D,), components (d, D) with orthonormal rows (zero rows where the profiling data had
    fewer than d directions of variance)."""

    mean: np.ndarray
    components: np.ndarray

    @property
    def dim_in(self) -> int:
        return int(self.mean.shape[0])


def fit_pca(x: np.ndarray, d: int = PCA_DIM) -> PCA:
    """Top-d principal components of (m, D) embeddings. Deterministic: each component's sign is
    chosen so that its largest-magnitude loading is positive."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"expected (queries, dim) embeddings, got shape {x.shape}")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    keep = min(d, int((s > s.max(initial=0.0) * 1e-12).sum()))
    comps = np.zeros((d, x.shape[1]))
    comps[:keep] = vt[:keep]
    idx = np.abs(comps).argmax(axis=1)
    signs = np.sign(comps[np.arange(d), idx])
    comps *= np.where(signs == 0, 1.0, signs)[:, None]
    return PCA(mean, comps)


def pca_transform(pca: PCA, x: np.ndarray) -> np.ndarray:
    """(m, D) embeddings -> (m, d) projections (Eq. 6)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.shape[1] != pca.dim_in:
        raise ValueError(f"embeddings have dimension {x.shape[1]}, the PCA was fitted on {pca.dim_in}")
    return (x - pca.mean) @ pca.components.T


# --- clip relevance (Eq. 7) and spectral complexity (Eq. 8-10) ------------------------------


def clip_relevance(h_txt: np.ndarray, tokens: np.ndarray, clip_of_token: np.ndarray) -> np.ndarray:
    """R_t: per clip, the summed cosine similarity between the pooled question embedding (D,)
    and each of its vision tokens (N, D); clip_of_token (N,) holds clip indices 0..T-1.
    Returns (T,)."""
    h = np.asarray(h_txt, dtype=np.float64)
    x = np.asarray(tokens, dtype=np.float64)
    clip = np.asarray(clip_of_token, dtype=np.int64)
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(h)
    s = (x @ h) / np.maximum(norms, 1e-12)
    return np.bincount(clip, weights=s, minlength=int(clip.max()) + 1 if clip.size else 0)


def relevance_features(r: np.ndarray) -> np.ndarray:
    """(m, T) clip relevances, NaN-padded for queries with fewer clips -> (m, 2): s_max, s_mean."""
    r = np.atleast_2d(np.asarray(r, dtype=np.float64))
    return np.stack([np.nanmax(r, axis=1), np.nanmean(r, axis=1)], axis=1)


def spectral_entropy(x: np.ndarray) -> np.ndarray:
    """Normalised spectral entropy H_t / log J of token matrices (..., N_tok, D) -> (...).

    The singular values are normalised to sum to 1 (Eq. 9); J = min(N_tok, D). 0 for a rank-1 (or
    zero) matrix, 1 when all J singular values are equal."""
    x = np.asarray(x, dtype=np.float64)
    sv = np.linalg.svd(x, compute_uv=False)
    total = sv.sum(axis=-1, keepdims=True)
    p = np.where(total > 0, sv / np.where(total > 0, total, 1.0), 0.0)
    h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=-1)
    j = sv.shape[-1]
    return h / np.log(j) if j > 1 else np.zeros_like(h)


def spectral_complexity(clips: Sequence[np.ndarray] | np.ndarray, r: np.ndarray, k: int = TOP_CLIPS) -> float:
    """s_cplx of one query (Eq. 10): the mean normalised spectral entropy of the min(T, k) clips
    with the largest relevance r (T,); clips are T token matrices (N_tok, D). Ties go to the
    earlier clip."""
    r = np.asarray(r, dtype=np.float64)
    if len(clips) != len(r) or len(r) == 0:
        raise ValueError(f"need one relevance per clip, got {len(r)} for {len(clips)} clips")
    top = np.argsort(-r, kind="stable")[:k]
    return float(np.mean([spectral_entropy(np.asarray(clips[t])) for t in top]))


def relevance_and_complexity(h_txt: np.ndarray, tokens: np.ndarray, clip_of_token: np.ndarray,
                             k: int = TOP_CLIPS) -> tuple[float, float, float]:
    """Live mode: (s_max, s_mean, s_cplx) of one query from its pooled question embedding (D,),
    its vision tokens (N, D) as fed to the LM and the clip index of each token (N,)."""
    clip = np.asarray(clip_of_token, dtype=np.int64)
    x = np.asarray(tokens, dtype=np.float64)
    r = clip_relevance(h_txt, x, clip)
    s_max, s_mean = relevance_features(r[None, :])[0]
    return float(s_max), float(s_mean), spectral_complexity([x[clip == t] for t in range(len(r))], r, k)


# --- assembling c (Eq. 4) ---------------------------------------------------------------------


def context_vector(n_frames: np.ndarray, uncertainty: np.ndarray, z_txt: np.ndarray, z_vis: np.ndarray,
                   relevance: np.ndarray) -> np.ndarray:
    """Concatenate the parts of Eq. 4 for m queries: n (m,), uncertainty (m, 3) from
    `uncertainty_features`, z_txt and z_vis (m, d), relevance (m, 3) = s_max, s_mean, s_cplx.
    Returns (m, 7 + 2d) in the order of `context_fields(d)`."""
    n = np.asarray(n_frames, dtype=np.float64).reshape(-1, 1)
    m = n.shape[0]
    parts = [n, np.asarray(uncertainty, dtype=np.float64), np.asarray(z_txt, dtype=np.float64),
             np.asarray(z_vis, dtype=np.float64), np.asarray(relevance, dtype=np.float64)]
    widths = (1, 3, None, None, 3)
    for name, part, w in zip(("n", "uncertainty", "z_txt", "z_vis", "relevance"), parts, widths):
        if part.ndim != 2 or part.shape[0] != m or (w is not None and part.shape[1] != w):
            raise ValueError(f"{name} has shape {part.shape}, expected ({m}, {w or 'd'})")
    if parts[2].shape[1] != parts[3].shape[1]:
        raise ValueError(f"z_txt has {parts[2].shape[1]} dimensions but z_vis {parts[3].shape[1]}")
    return np.concatenate(parts, axis=1)


@dataclass(frozen=True)
class ContextBuilder:
    """Everything fitted on the profiling split that turns a query's raw inputs into c.

    A part a trace does not carry (no embeddings, no relevance columns) becomes zeros, the same
    for every query, so it carries no signal but keeps the dimension fixed."""

    temperature: float
    pca_txt: PCA | None
    pca_vis: PCA | None
    d: int = PCA_DIM

    @property
    def dim(self) -> int:
        return context_dim(self.d)

    def build(self, n_frames: np.ndarray, small_logits: np.ndarray, txt: np.ndarray | None = None,
              vis: np.ndarray | None = None, s_max: np.ndarray | None = None, s_mean: np.ndarray | None = None,
              s_cplx: np.ndarray | None = None) -> np.ndarray:
        """Context vectors (m, dim) of m queries: frames (m,), NaN-padded small-model logits
        (m, K), pooled embeddings (m, D) and relevance columns (m,), each optional but n and
        logits."""
        n = np.atleast_1d(np.asarray(n_frames, dtype=np.float64))
        m = n.shape[0]
        unc = uncertainty_features(small_logits, self.temperature)

        def project(pca: PCA | None, x: np.ndarray | None) -> np.ndarray:
            if x is None or pca is None:
                return np.zeros((m, self.d))
            return pca_transform(pca, x)

        def column(v: np.ndarray | None) -> np.ndarray:
            return np.zeros(m) if v is None else np.atleast_1d(np.asarray(v, dtype=np.float64))

        rel = np.stack([column(s_max), column(s_mean), column(s_cplx)], axis=1)
        return context_vector(n, unc, project(self.pca_txt, txt), project(self.pca_vis, vis), rel)

    def one(self, n_frames: int, small_logits: np.ndarray, txt: np.ndarray | None = None,
            vis: np.ndarray | None = None, s_max: float | None = None, s_mean: float | None = None,
            s_cplx: float | None = None) -> np.ndarray:
        """The context vector (dim,) of one query."""

        def arr(v: float | None) -> np.ndarray | None:
            return None if v is None else np.array([v], dtype=np.float64)

        return self.build(np.array([n_frames]), np.asarray(small_logits, dtype=np.float64)[None, :],
                          None if txt is None else np.asarray(txt)[None, :],
                          None if vis is None else np.asarray(vis)[None, :], arr(s_max), arr(s_mean), arr(s_cplx))[0]


def fit_context_builder(temperature: float, txt: np.ndarray | None = None, vis: np.ndarray | None = None,
                        d: int = PCA_DIM) -> ContextBuilder:
    """Fit the PCA projections on the profiling split's pooled embeddings (m, D) (either may be
    None when the trace lacks them); the temperature is the small model's calibrated one."""
    return ContextBuilder(float(temperature), None if txt is None else fit_pca(txt, d),
                          None if vis is None else fit_pca(vis, d), d)
