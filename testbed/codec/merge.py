"""Token merging to a density: ToMe's bipartite soft matching per frame, and average pooling.

Shapes: x is (F, N, D) tokens of F frames; sizes is (F, N) how many original tokens each stands
for. Pure functions, deterministic (stable sorts), vectorised over frames.
"""

from __future__ import annotations

import threading

import torch


WORKSPACE_MAX_BYTES = 256 * 2**20
"""The largest merge workspace a thread keeps between calls (8 frames of 784 tokens at dim 1024 take 32 MB)."""
_local = threading.local()


def _workspace(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A flat scratch tensor of `numel` elements, kept per thread between calls on the CPU, so each
    merge does not fault in fresh pages (which cost about a third of the similarity matmul)."""
    size = numel * torch.empty(0, dtype=dtype).element_size()
    if device.type != "cpu" or size > WORKSPACE_MAX_BYTES:
        return torch.empty(numel, dtype=dtype, device=device)
    kept: dict[torch.dtype, torch.Tensor] = _local.__dict__.setdefault("buffers", {})
    buf = kept.get(dtype)
    if buf is None or buf.numel() < numel:
        kept[dtype] = buf = torch.empty(numel, dtype=dtype)
    return buf[:numel]


def merge_steps(n: int, density: int) -> list[int]:
    """Tokens merged at each bipartite step from n down to density (at most every A token per step)."""
    out = []
    while n > density:
        r = min(n - density, (n + 1) // 2)
        out.append(r)
        n -= r
    return out


def _merge_step(x: torch.Tensor, sizes: torch.Tensor, r: int, unit: bool, rows_buf: torch.Tensor,
                out_buf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One bipartite step: split tokens into alternating sets A (even) and B (odd), merge the r
    A-tokens most similar (cosine) to their best B-token into it with size-weighted averages.

    The cosine is ToMe's, scaled after the matmul rather than before: a.b / |b| picks each A's best
    B, then / |a| ranks the A's. No normalised keys are written (that pass cost a ninth of the
    merge), and only ties closer than rounding can go another way than in ToMe's normalise-first form.
    `unit`: every size is 1 (multiplying by the sizes is then skipped: it would change no bit).
    `rows_buf`, `out_buf`: flat workspace for the gathered rows and the result (reused across steps,
    so the pages are touched once per merge). Rows are gathered and added by flat row index
    (index_select, index_add_ take the rows in the order scatter_add did, so every sum is the same)."""
    f, n, d = x.shape
    na, nb = (n + 1) // 2, n // 2
    a, b = x[:, ::2], x[:, 1::2]
    sa, sb = sizes[:, ::2], sizes[:, 1::2]
    norm = x.norm(dim=-1).clamp_min(1e-12)
    scores = (a @ b.transpose(1, 2)).div_(norm[:, None, 1::2])  # (F, Na, Nb): |a| cos(a, b)
    best, best_idx = scores.max(dim=-1)  # each A's most similar B
    best.div_(norm[:, ::2])  # and that cosine
    order = torch.argsort(best, dim=-1, descending=True, stable=True)
    src, keep = order[:, :r], order[:, r:]  # merged A tokens, unmerged A tokens
    dst = best_idx.gather(1, src)  # their B partners
    w_src = sa.gather(1, src)
    nk = na - r
    out = out_buf[: f * (nk + nb) * d].view(f, nk + nb, d)
    out_b = out[:, nk:]
    # size-weighted sums into B, then divide by the summed sizes
    if unit:
        out_b.copy_(b)
    else:
        torch.mul(b, sb[..., None], out=out_b)
    frame = torch.arange(f, device=x.device)[:, None]
    rows = torch.index_select(x.reshape(f * n, d), 0, (frame * n + 2 * src).reshape(-1),
                              out=rows_buf[: f * r * d].view(f * r, d))
    if not unit:
        rows.mul_(w_src.reshape(-1, 1))
    out.view(f * (nk + nb), d).index_add_(0, (frame * (nk + nb) + nk + dst).reshape(-1), rows)
    sb_new = sb.scatter_add(1, dst, w_src)
    out_b.div_(sb_new[..., None])
    keep_sorted, _ = keep.sort(dim=-1)  # unmerged A tokens stay in their original order
    if nk:
        out[:, :nk] = x.reshape(f * n, d).index_select(0, (frame * n + 2 * keep_sorted).reshape(-1)).view(f, nk, d)
    return out, torch.cat([sa.gather(1, keep_sorted), sb_new], dim=1)


def merge_to_density(x: torch.Tensor, density: int, sizes: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge each frame's N tokens down to exactly `density` by repeated bipartite soft matching.

    Returns (F, density, D) tokens and their (F, density) sizes; the size-weighted mean of each
    frame's features is preserved. Computed in float32 (or float64 if given), cast back."""
    if x.ndim != 3:
        raise ValueError(f"expected (frames, tokens, dim), got shape {tuple(x.shape)}")
    f, n, d = x.shape
    if not 1 <= density <= n:
        raise ValueError(f"density {density} must be in 1..{n} (tokens per frame)")
    work = x if x.dtype == torch.float64 else x.float()
    s = torch.ones(f, n, dtype=work.dtype, device=x.device) if sizes is None else sizes.to(work.dtype)
    steps = merge_steps(n, density)
    if not steps:
        return work.to(x.dtype), s
    unit = sizes is None or bool((s == 1).all())
    after = [n - sum(steps[: i + 1]) for i in range(min(2, len(steps)))]
    rows = steps[0]  # the most rows a step gathers
    space = _workspace(f * d * (rows + sum(after)), work.dtype, x.device)
    rows_buf = space[: f * rows * d]
    bufs = [space[f * rows * d: f * d * (rows + after[0])], space[f * d * (rows + after[0]):]]
    for i, r in enumerate(steps):
        work, s = _merge_step(work, s, r, unit, rows_buf, bufs[i % 2])
        unit = False
    return work.clone() if work.dtype == x.dtype else work.to(x.dtype), s


def avg_pool_to_density(x: torch.Tensor, density: int) -> torch.Tensor:
    """Baseline: average-pool each frame's token sequence to `density` tokens."""
    if not 1 <= density <= x.shape[1]:
        raise ValueError(f"density {density} must be in 1..{x.shape[1]} (tokens per frame)")
    pooled = torch.nn.functional.adaptive_avg_pool1d(x.float().transpose(1, 2), density)
    return pooled.transpose(1, 2).to(x.dtype)
