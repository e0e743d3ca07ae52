"""Stream metrics (seed 001 Sec. 4.1.2, 4.2): Micro-F1, Macro-F1 and 0-1 exact match over frames
for multi-label recognition; accuracy for single-label tasks; LVLM call ratio (LCR, the share of
frames uploaded to the large model) and LVLM history lag (LHL, the mean age in seconds of the
large-model answer a frame's small model was prompted with, over frames that used one); the call
ratio's band; and the local path's deadline misses.

Every figure is a percentage except LHL (seconds) and the counts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from testbed.streams.specs import BANDS, band_label



def label_metrics(task: str, labels: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Micro/Macro-F1 and 0-1 EM (multi-label), accuracy (single-label), in %, from bool masks
    (..., C) of true and predicted labels. A frame with no answer predicts nothing."""
    y = labels.reshape(-1, labels.shape[-1]).astype(bool)
    p = pred.reshape(-1, pred.shape[-1]).astype(bool)
    if len(y) == 0:
        return {"micro_f1": float("nan"), "macro_f1": float("nan"), "em": float("nan"), "accuracy": float("nan")}
    tp = (y & p).sum(axis=0).astype(float)
    fp = (~y & p).sum(axis=0).astype(float)
    fn = (y & ~p).sum(axis=0).astype(float)
    denom = 2 * tp + fp + fn
    micro = 2 * tp.sum() / denom.sum() if denom.sum() else float("nan")
    seen = denom > 0  # a category never present nor predicted has no F1 (sklearn's zero_division aside)
    macro = float(np.mean(2 * tp[seen] / denom[seen])) if seen.any() else float("nan")
    em = float((y == p).all(axis=1).mean())
    out = {"micro_f1": 100 * float(micro), "macro_f1": 100 * macro, "em": 100 * em, "accuracy": float("nan")}
    if task == "single-label":
        out = {"micro_f1": float("nan"), "macro_f1": float("nan"), "em": float("nan"),
               "accuracy": 100 * float((y & p).any(axis=1).mean())}
    return out


def lcr_band(lcr: float) -> str:
    """The Table 2 band a call ratio (in %) falls in: '0%', '20-30%', ..., '100%', or 'out of band'."""
    if lcr == 0:
        return "0%"
    if lcr >= 99.95:
        return "100%"
    for lo, hi in BANDS:
        if lo <= lcr <= hi:
            return band_label(lo, hi)
    return "out of band"


def summarize_frames(frames: pd.DataFrame) -> pd.DataFrame:
    """One row per (benchmark, policy) from per-frame rows (testbed.streams.run.FrameRun.row)."""
    rows: list[dict[str, Any]] = []
    for (bench, policy), d in frames.groupby(["benchmark", "policy"], sort=False):
        c = int(d.n_categories.iloc[0])
        y = np.zeros((len(d), c), dtype=bool)
        p = np.zeros((len(d), c), dtype=bool)
        for i, (ls, ps) in enumerate(zip(d.labels, d.pred)):
            y[i, list(ls)] = True
            p[i, list(ps)] = True
        task = d.task.iloc[0]
        m = label_metrics(task, y, p)
        lcr = 100 * float(d.uploaded.mean())
        used = d.context_lag_s.dropna()
        local = d[d.source != "none"]
        rows.append({
            "benchmark": bench, "policy": policy, "task": task, "streams": d.stream_id.nunique(), "frames": len(d),
            **m, "lcr": lcr, "lhl_s": float(used.mean()) if len(used) else float("nan"), "lcr_band": lcr_band(lcr),
            "large_share": 100 * float((d.source == "large").mean()),
            "no_answer_share": 100 * float((d.source == "none").mean()),
            "deadline_misses": int(d.local_missed.sum()),
            "deadline_miss_share": 100 * float(d.local_missed.mean()),
            "local_late_p99_s": float(np.percentile(d.local_lateness_s, 99)) if len(d) else float("nan"),
            "local_late_max_s": float(d.local_lateness_s.max()) if len(d) else float("nan"),
            "mean_answer_s": float((local.emit_s - local.frame_time_s).mean()) if len(local) else float("nan"),
            "mb_up_per_frame": float(d.bytes_up.mean()) / 1e6,
            "mb_down_per_frame": float(d.bytes_down.mean()) / 1e6,
            "ggvr_tokens": float(d.ggvr_tokens.mean()) if "ggvr_tokens" in d else float("nan"),
        })
    return pd.DataFrame(rows)
