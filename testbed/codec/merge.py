"""Token merging to a density: ToMe's bipartite soft matching per frame, and average pooling.

Shapes: x is (F, N, D) tokens of F frames; sizes is (F, N) how many original tokens each stands
for. Pure functions, deterministic (stable sorts), vectorised over frames.
"""

from __future__ import annotations

import torch


def _merge_step(x: torch.Tensor, sizes: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One bipartite step: split tokens into alternating sets A (even) and B (odd), merge the r
    A-tokens most similar (cosine) to their best B-token into it with size-weighted averages."""
    f, n, d = x.shape
    a, b = x[:, ::2], x[:, 1::2]
    sa, sb = sizes[:, ::2], sizes[:, 1::2]
    metric = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    scores = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)  # (F, Na, Nb)
    best, best_idx = scores.max(dim=-1)  # each A's most similar B
    order = torch.argsort(best, dim=-1, descending=True, stable=True)
    src, keep = order[:, :r], order[:, r:]  # merged A tokens, unmerged A tokens
    dst = best_idx.gather(1, src)  # their B partners
    w_src = sa.gather(1, src)
    # size-weighted sums into B, then divide by the summed sizes
    b_sum = (b * sb[..., None]).scatter_add(1, dst[..., None].expand(-1, -1, d),
                                            a.gather(1, src[..., None].expand(-1, -1, d)) * w_src[..., None])
    sb_new = sb.scatter_add(1, dst, w_src)
    b_new = b_sum / sb_new[..., None]
    keep_sorted, _ = keep.sort(dim=-1)  # unmerged A tokens stay in their original order
    a_keep = a.gather(1, keep_sorted[..., None].expand(-1, -1, d))
    return torch.cat([a_keep, b_new], dim=1), torch.cat([sa.gather(1, keep_sorted), sb_new], dim=1)


def merge_to_density(x: torch.Tensor, density: int, sizes: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge each frame's N tokens down to exactly `density` by repeated bipartite soft matching.

    Returns (F, density, D) tokens and their (F, density) sizes; the size-weighted mean of each
    frame's features is preserved. Computed in float32 (or float64 if given), cast back."""
    if x.ndim != 3:
        raise ValueError(f"expected (frames, tokens, dim), got shape {tuple(x.shape)}")
    f, n, _ = x.shape
    if not 1 <= density <= n:
        raise ValueError(f"density {density} must be in 1..{n} (tokens per frame)")
    work = x if x.dtype == torch.float64 else x.float()
    s = torch.ones(f, n, dtype=work.dtype, device=x.device) if sizes is None else sizes.to(work.dtype)
    while work.shape[1] > density:
        cur = work.shape[1]
        r = min(cur - density, (cur + 1) // 2)  # at most every A token merges in one step
        work, s = _merge_step(work, s, r)
    return work.to(x.dtype), s


def avg_pool_to_density(x: torch.Tensor, density: int) -> torch.Tensor:
    """Baseline: average-pool each frame's token sequence to `density` tokens."""
    if not 1 <= density <= x.shape[1]:
        raise ValueError(f"density {density} must be in 1..{x.shape[1]} (tokens per frame)")
    pooled = torch.nn.functional.adaptive_avg_pool1d(x.float().transpose(1, 2), density)
    return pooled.transpose(1, 2).to(x.dtype)
