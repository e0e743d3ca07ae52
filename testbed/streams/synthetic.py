"""Calibrated synthetic stream workload (seed 001, edgeVLM): camera streams answered frame by frame.

Labelled ``synthetic:calibrated-seed001:<seed>``; every parameter names the seed-001 figure it was
fitted to or says "assumed" (`StreamSpec.sources`, also stored in the trace metadata).

Model of a stream. Ground truth: each category's presence (multi-label) or the class
(single-label) is re-drawn from its prior at `change_rate` per second, so neighbouring frames share
labels. Difficulty: a per-frame latent g (AR(1) over frames) plus per-(frame, category) noise
gives x_S for the small model; the large model's x_L shares a part of it; U = Phi(x).

- Multi-label: model m detects a present category c iff U < r_mc, r_mc = sigmoid(a_m + beta *
  (logit prior_c - mean)), and reports an absent one iff U > 1 - f_m, f_m = sigmoid(b_m): common
  categories are easier, and a hard frame costs misses and false alarms at once (0-1 EM).
- Context replacement (CRM): prompted with the large model's answer B for frame t - d, the small
  model's probabilities move towards it, p = (1 - w) p_own + w B (same U: a coherent coupling);
  a stale answer about an object that has since left or appeared misleads it, so the staleness
  cost comes from the ground truth's changes. Visual focus (VFM) raises the small model's own
  recall on the categories the large answer located: r + nu (1 - r); GGVR alone a share of it,
  GGVR_SHARE nu (Table 5). The large answer grounds each category it names in a box (ROI_AREA).
- Single-label: model m is right iff U < acc_m (else a seeded wrong class); with context, the
  small model adopts B with probability w, else answers itself (with focus: acc + nu (1 - acc)).
- Scores: logit(p) - logit(U) (present iff > 0), so their size says how sure the model was.
- Cloud latency (Fig. 4): lognormal per frame, AR(1) between neighbouring frames; the trace stores
  the cloud's service time, latency less the 5G link's nominal transfer times, so that the sim's
  link model on the paper's link (211/72 Mbit/s, RTT 42 ms) gives the latency back.

`reference_metrics` runs SVLM-only, LVLM-only and edgeVLM on the generated arrays without the
sim (an independent implementation, used to fit the parameters and to check the sim against).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit, ndtr

from testbed.codec.size import REPLY_BYTES
from testbed.streams.labels import predicted

from testbed.streams.specs import DATASETS, GENERATOR, LINK, NUSCENES, SPECS, TAU_S, StreamSpec  # noqa: F401

GGVR_SHARE = 0.30 / 0.68
"""GGVR's part of visual focus's gain: Table 5 (nuScenes Micro-F1), CRM 70.47 -> +GGVR 70.77 -> +GRVR 71.15."""
ROI_AREA = 49 / 1824
"""A grounded region's share of the frame: Sec. 3.3.1's example, 49 of a 1600 x 900 frame's 1824 tokens
(assumed for every category and dataset)."""


@dataclass(frozen=True)
class Draws:
    """Every random number of one spec's workload, drawn once per seed: the parameters only
    transform them, so a fit is a smooth search over fixed draws."""

    truth: np.ndarray  # (S, n, C) bool or (S, n) int
    u_small: np.ndarray  # (S, n, C) or (S, n)
    u_large: np.ndarray
    wrong_small: np.ndarray  # (S, n) int: the class a wrong single-label answer names
    wrong_large: np.ndarray
    adopt: np.ndarray  # (S, n) uniform: single-label context adoption
    z_latency: np.ndarray  # (S, n) standard normal, AR(1)
    image_bytes: np.ndarray  # (S, n)


def _ar1(rng: np.random.Generator, shape: tuple[int, int], rho: float) -> np.ndarray:
    z = rng.standard_normal(shape)
    out = np.empty(shape)
    out[:, 0] = z[:, 0]
    for t in range(1, shape[1]):
        out[:, t] = rho * out[:, t - 1] + np.sqrt(1 - rho ** 2) * z[:, t]
    return out


def draw(spec: StreamSpec, seed: int, streams: int | None = None) -> Draws:
    rng = np.random.default_rng([seed, 1001, sum(map(ord, spec.name))])
    s, n, c = streams or spec.streams, spec.frames, len(spec.categories)
    prior = np.asarray(spec.prior)
    redraw = 1 - np.exp(-spec.change_rate / spec.fps)
    truth: np.ndarray
    shape: tuple[int, ...]
    if spec.task == "multi-label":
        present = np.empty((s, n, c), dtype=bool)
        present[:, 0] = rng.random((s, c)) < prior
        for t in range(1, n):
            fresh = rng.random((s, c)) < prior
            keep = rng.random((s, c)) >= redraw
            present[:, t] = np.where(keep, present[:, t - 1], fresh)
        truth, shape = present, (s, n, c)
    else:
        p = prior / prior.sum()
        cls = np.empty((s, n), dtype=np.int64)
        cls[:, 0] = rng.choice(c, size=s, p=p)
        for t in range(1, n):
            fresh_cls = rng.choice(c, size=s, p=p)
            keep = rng.random(s) >= redraw
            cls[:, t] = np.where(keep, cls[:, t - 1], fresh_cls)
        truth, shape = cls, (s, n)
    g = _ar1(rng, (s, n), spec.difficulty_rho)
    e_small = rng.standard_normal(shape)
    e_large = rng.standard_normal(shape)
    wrong_small = rng.integers(1, max(c, 2), size=(s, n))
    wrong_large = rng.integers(1, max(c, 2), size=(s, n))
    adopt = rng.random((s, n))
    z_latency = _ar1(rng, (s, n), spec.latency_rho)
    image_bytes = np.maximum(1000, spec.image_kb * 1000 * np.exp(0.15 * rng.standard_normal((s, n)))).astype(np.int64)
    # the latents' mixing is a parameter (frame_corr, model_corr): store the parts, mix in `outcomes`
    return Draws(truth, np.stack([np.broadcast_to(g[..., None] if len(shape) == 3 else g, shape), e_small]),
                 e_large, wrong_small, wrong_large, adopt, z_latency, image_bytes)


@dataclass(frozen=True)
class Outcomes:
    """Per-frame model outputs of one spec: scores (S, n, C); context ones (S, n, D, C)."""

    labels: np.ndarray  # (S, n, C) bool
    small: np.ndarray
    large: np.ndarray
    context: np.ndarray
    context_focus: np.ndarray
    context_ggvr: np.ndarray
    latency_s: np.ndarray  # (S, n)


def _scores(p: np.ndarray, u: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Scores > 0 exactly where the model reports a category: present ones below p, absent ones
    above 1 - p (the false-alarm tail), the size being how far u lies from the threshold."""
    p = np.clip(p, 1e-4, 1 - 1e-4)
    u = np.clip(u, 1e-6, 1 - 1e-6)
    return np.where(present, logit(p) - logit(u), logit(p) - logit(1 - u))


def _one_hot_scores(choice: np.ndarray, c: int, u: np.ndarray) -> np.ndarray:
    """Single-label scores: the chosen class scores 1 + (1 - u) (surer on easier frames), others 0."""
    out = np.zeros((*choice.shape, c))
    np.put_along_axis(out, choice[..., None], (1.0 + (1 - u))[..., None], axis=-1)
    return out


def outcomes(spec: StreamSpec, d: Draws) -> Outcomes:
    """Apply the spec's parameters to the draws."""
    g, e = d.u_small
    x_small = np.sqrt(spec.frame_corr) * g + np.sqrt(1 - spec.frame_corr) * e
    x_large = np.sqrt(spec.model_corr) * x_small + np.sqrt(1 - spec.model_corr) * d.u_large
    u_small, u_large = ndtr(x_small), ndtr(x_large)
    lags = np.arange(1, spec.max_lag + 1)
    c = len(spec.categories)
    latency = spec.latency_median_s * np.exp(spec.latency_sigma * d.z_latency)
    if spec.task == "multi-label":
        truth = d.truth
        common = logit(np.asarray(spec.prior))
        common = common - common.mean()
        r_s, f_s = expit(spec.small_a + spec.beta * common), expit(spec.small_b)
        r_l, f_l = expit(spec.large_a + spec.beta * common), expit(spec.large_b)
        small = _scores(np.where(truth, r_s, f_s), u_small, truth)
        large = _scores(np.where(truth, r_l, f_l), u_large, truth)
        said = large > 0  # (S, n, C): the large answer B for each frame
        ctx = np.empty((*truth.shape[:2], len(lags), c))
        foc, ggvr = np.empty_like(ctx), np.empty_like(ctx)
        w, nu = spec.trust, spec.focus_gain
        for k, lag in enumerate(lags):
            b = np.zeros_like(said)
            b[:, lag:] = said[:, :-lag] if lag < truth.shape[1] else b[:, lag:]
            own = np.where(truth, r_s, f_s)
            own_focus = np.where(truth & b, r_s + nu * (1 - r_s), own)
            own_ggvr = np.where(truth & b, r_s + GGVR_SHARE * nu * (1 - r_s), own)
            ctx[:, :, k] = _scores((1 - w) * own + w * b, u_small, truth)
            foc[:, :, k] = _scores((1 - w) * own_focus + w * b, u_small, truth)
            ggvr[:, :, k] = _scores((1 - w) * own_ggvr + w * b, u_small, truth)
        return Outcomes(truth, small, large, ctx, foc, ggvr, latency)
    truth_cls = d.truth
    labels = np.zeros((*truth_cls.shape, c), dtype=bool)
    np.put_along_axis(labels, truth_cls[..., None], True, axis=-1)

    def answer(acc: float | np.ndarray, u: np.ndarray, wrong: np.ndarray) -> np.ndarray:
        return np.where(u < acc, truth_cls, (truth_cls + wrong) % c)

    small_cls = answer(spec.small_a, u_small, d.wrong_small)
    large_cls = answer(spec.large_a, u_large, d.wrong_large)
    focus_cls = answer(spec.small_a + spec.focus_gain * (1 - spec.small_a), u_small, d.wrong_small)
    ggvr_cls = answer(spec.small_a + GGVR_SHARE * spec.focus_gain * (1 - spec.small_a), u_small, d.wrong_small)
    ctx = np.empty((*truth_cls.shape, len(lags), c))
    foc, ggvr = np.empty_like(ctx), np.empty_like(ctx)
    for k, lag in enumerate(lags):
        b = np.full_like(large_cls, -1)
        b[:, lag:] = large_cls[:, :-lag] if lag < truth_cls.shape[1] else b[:, lag:]
        take = (d.adopt < spec.trust) & (b >= 0)
        ctx[:, :, k] = _one_hot_scores(np.where(take, b, small_cls), c, u_small)
        foc[:, :, k] = _one_hot_scores(np.where(take, b, np.where(b >= 0, focus_cls, small_cls)), c, u_small)
        ggvr[:, :, k] = _one_hot_scores(np.where(take, b, np.where(b >= 0, ggvr_cls, small_cls)), c, u_small)
    return Outcomes(labels, _one_hot_scores(small_cls, c, u_small), _one_hot_scores(large_cls, c, u_large), ctx, foc,
                    ggvr, latency)


def groundings(spec: StreamSpec, large: np.ndarray, seed: int) -> list[np.ndarray]:
    """The large model's grounding of each frame (rows of `large`, scores (F, C)): for each category
    it names, one square box of ROI_AREA of the frame at a uniform place, flattened as (category,
    x0, y0, x1, y1) per region (`large_rois`). Drawn from a stream of its own, so the other
    columns are the same with or without it."""
    rng = np.random.default_rng([seed, 1002, sum(map(ord, spec.name))])
    named = large > 0 if spec.task == "multi-label" else large == large.max(axis=1, keepdims=True)
    side = int(round(np.sqrt(ROI_AREA * spec.width * spec.height)))
    x = rng.integers(0, spec.width - side + 1, size=named.shape)
    y = rng.integers(0, spec.height - side + 1, size=named.shape)
    out = []
    for f in range(len(named)):
        cs = np.flatnonzero(named[f])
        out.append(np.stack([cs, x[f, cs], y[f, cs], x[f, cs] + side, y[f, cs] + side], axis=1).ravel()
                   .astype(np.int32))
    return out


def link_time_s(image_bytes: np.ndarray | int, link: dict[str, float] = LINK) -> np.ndarray:
    """Nominal transfer time of one upload (the frame, plus the prompt, ignored) and its reply on a
    constant-rate link: what the sim's link model adds to the cloud's service time."""
    eff = link["efficiency"]
    up = np.asarray(image_bytes) * 8 / (link["up_mbps"] * 1e6 * eff)
    down = REPLY_BYTES * 8 / (link["down_mbps"] * 1e6 * eff)
    return up + down + link["rtt_ms"] / 1000


# -- the reference policies (no sim): used to fit, and to check the sim against -------------------------------

FRESHNESS = ("call", "reply", "spacing")
"""Three readings of seed 001 Sec. 3.4's K_call: the newest call at most K_call frames back, the newest
reply at most K_call back, or K_call as the minimum spacing between calls."""


def skips(t: int, last_call: int, newest: int, k_call: int, freshness: str) -> bool:
    """Whether edgeVLM's keyframe rule skips frame `t` on K_call alone (see FRESHNESS); -1: none yet."""
    if freshness == "spacing":
        return last_call >= 0 and t - last_call < k_call
    ref = newest if freshness == "reply" else last_call
    return ref >= 0 and t - ref <= k_call


def edgevlm_schedule(latency: np.ndarray, fps: float, k_call: int, k_delay: int, max_lag: int,
                     freshness: str = "call") -> tuple[np.ndarray, np.ndarray]:
    """Which frames edgeVLM uploads and the context lag each frame's small model uses (0: none),
    for one stream whose answer to frame t arrives latency[t] after its capture (Sec. 3.4, 3.2).
    `freshness` (FRESHNESS): skip while the newest call ("call") or reply ("reply") is at most k_call frames
    back, or ("spacing") while the newest call is fewer than k_call frames back (k_call = 1 never skips)."""
    n = len(latency)
    uploaded = np.zeros(n, dtype=bool)
    lag = np.zeros(n, dtype=np.int64)
    in_flight: list[tuple[float, int]] = []  # (arrival, frame) of the uploads not back yet
    newest = last_call = -1
    for t, latency_t in enumerate(np.asarray(latency, dtype=float).tolist()):
        now = t / fps
        if any(a <= now for a, _ in in_flight):
            newest = max(newest, *(f for a, f in in_flight if a <= now))
            in_flight = [(a, f) for a, f in in_flight if a > now]
        if newest >= 0 and t - newest <= max_lag:
            lag[t] = t - newest
        if skips(t, last_call, newest, k_call, freshness):
            continue
        if len(in_flight) >= k_delay:
            continue
        uploaded[t] = True
        last_call = t
        in_flight.append((now + latency_t, t))
    return uploaded, lag


def reference_metrics(spec: StreamSpec, out: Outcomes, k_call: int = 3, k_delay: int = 4,
                      tau_s: float = TAU_S, delta_s: float = 10.0,
                      freshness: str = "call") -> dict[str, dict[str, float]]:
    """Metrics of SVLM-only, LVLM-only and edgeVLM (k_call, k_delay) computed directly on arrays."""
    from testbed.streams.metrics import label_metrics

    timely = out.latency_s <= tau_s
    small_pred = predicted(spec.task, out.small)
    large_pred = predicted(spec.task, out.large)
    lvlm_pred = np.where(timely[..., None], large_pred, False)
    max_lag = min(int(round(delta_s * spec.fps)), spec.max_lag)
    edge_pred = np.empty_like(small_pred)
    calls = lag_sum = lag_n = 0
    for s in range(out.latency_s.shape[0]):
        up, lag = edgevlm_schedule(out.latency_s[s], spec.fps, k_call, k_delay, max_lag, freshness)
        calls += int(up.sum())
        local = np.where(lag[:, None] > 0, predicted(spec.task, out.context_focus[s, np.arange(len(lag)),
                                                                                 np.maximum(lag, 1) - 1]),
                         small_pred[s])
        edge_pred[s] = np.where((up & timely[s])[:, None], large_pred[s], local)
        lag_sum += int(lag.sum())
        lag_n += int((lag > 0).sum())
    frames = out.latency_s.size
    res = {"svlm-only": label_metrics(spec.task, out.labels, small_pred),
           "lvlm-only": label_metrics(spec.task, out.labels, lvlm_pred),
           "edgevlm": label_metrics(spec.task, out.labels, edge_pred)}
    res["svlm-only"]["lcr"] = 0.0
    res["lvlm-only"]["lcr"] = 100.0
    res["edgevlm"]["lcr"] = 100.0 * calls / frames
    res["edgevlm"]["lhl_s"] = lag_sum / max(lag_n, 1) / spec.fps
    return res


# -- the trace -------------------------------------------------------------------------------------------

def recorded_keys(spec: StreamSpec) -> dict[str, float]:
    """Stage times every frame of the spec records: the small model's inference with its own
    history, with CRM and with CRM + VFM (Table 3, encoding included), so tokenizing the frame
    books nothing of its own; at the cloud, the whole service time is the large inference (cloud_s)."""
    from testbed.ledger import frame_infer_key, image_tokenize_key

    own, crm, both = spec.local_s
    return {image_tokenize_key("local"): 0.0,
            image_tokenize_key("edge"): 0.0,
            frame_infer_key("local", "small", False, False): own, frame_infer_key("local", "small", True, False): crm,
            frame_infer_key("local", "small", True, True): both}


def spec_frame(spec: StreamSpec, seed: int, streams: int | None = None) -> pd.DataFrame:
    """The trace rows of one spec: one per frame."""
    d = draw(spec, seed, streams)
    out = outcomes(spec, d)
    s, n, c = out.labels.shape
    cloud = np.maximum(0.01, out.latency_s - link_time_s(d.image_bytes))
    times = np.arange(n) / spec.fps
    keys = sorted(recorded_keys(spec).items())
    rows: dict[str, Any] = {
        "stream_id": np.repeat([f"{spec.name}-{i:04d}" for i in range(s)], n),
        "benchmark": spec.name, "frame_index": np.tile(np.arange(n), s), "frame_time_s": np.tile(times, s),
        "fps": spec.fps, "task": spec.task, "question": spec.question,
        "categories": [list(spec.categories)] * (s * n),
        "labels": [np.flatnonzero(m).astype(np.int32) for m in out.labels.reshape(s * n, c)],
        "width": np.int32(spec.width), "height": np.int32(spec.height), "image_bytes": d.image_bytes.reshape(-1),
        "small_logits": list(out.small.reshape(s * n, c).astype(np.float32)),
        "large_logits": list(out.large.reshape(s * n, c).astype(np.float32)),
        "cloud_s": cloud.reshape(-1),
        "context_logits": [list(x) for x in out.context.reshape(s * n, spec.max_lag, c).astype(np.float32)],
        "context_focus_logits": [list(x) for x in out.context_focus.reshape(s * n, spec.max_lag, c).astype(np.float32)],
        "context_ggvr_logits": [list(x) for x in out.context_ggvr.reshape(s * n, spec.max_lag, c).astype(np.float32)],
        "large_rois": groundings(spec, out.large.reshape(s * n, c), seed),
        "large_latency_s": out.latency_s.reshape(-1),
        "recorded_s": [keys] * (s * n),
    }
    return pd.DataFrame(rows)


def synthetic_streams(datasets: tuple[str, ...], seed: int, streams: int = 0) -> tuple[pd.DataFrame, str, dict]:
    """The calibrated synthetic stream trace: (frame rows, provenance, parameters with sources).
    `streams` > 0 caps the streams per dataset (0: each dataset's own count)."""
    frames = [spec_frame(SPECS[name], seed, streams or None) for name in datasets]
    params: dict[str, Any] = {name: {**{k: v for k, v in asdict(SPECS[name]).items() if k != "sources"},
                     "sources": dict(SPECS[name].sources)} for name in datasets}
    params["link"] = LINK
    params["tau_s"] = TAU_S
    return pd.concat(frames, ignore_index=True), f"synthetic:{GENERATOR}:{seed}", params

