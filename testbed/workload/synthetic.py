"""Calibrated synthetic workload: three benchmark-like query sets whose parameters reproduce
figures of seed 000 (QuickGrasp). Every parameter names its source; the trace is labelled
``synthetic:calibrated-seed000:<seed>`` and every report made from it says so.

Model of a query: a latent difficulty u ~ N(0, 1) shared by all models; model m scores
sqrt(rho) * u + sqrt(1 - rho) * e_m and the lowest round(acc_m * n) scores per (benchmark, split)
are correct, so accuracies hit their targets exactly. Option probabilities are drawn calibrated
given correctness (confidence of correct answers ~ c*g(c)/acc, of wrong ones ~ (1-c)*g(c)/(1-acc)),
then sharpened by a per-query temperature around T = 1.4 into raw logits: temperature scaling
with T ~ 1.4 recalibrates them (Fig. 7).

The input signals' columns (signal_spatial_info, signal_edge_density, signal_colourfulness; seed 002,
read by the input-aware router) are noisy readings of whether the small model errs, with correlation
`VIDEO_SIGNAL` (assumed), also from a generator of their own.

The density bandit's context columns (context_txt, context_vis, context_s_max, context_s_mean,
context_s_cplx; seed 000 Eq. 4-10) carry what SIII-C says the features carry: which density a query
needs. Per query that is the oracle density in hindsight, the cheapest density at which the large
model answers correctly (the cheapest of all when none does; the argmax of Eq. 3's per-query
reward). Each column is a noisy reading of it whose correlation with it is `CONTEXT_SIGNAL`, the
one assumed parameter here; they are drawn from a generator of their own, so every other column
is the same whatever the signal strength.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from testbed.query import DENSITIES

GENERATOR = "calibrated-seed000"


@dataclass(frozen=True)
class Subset:
    """A share of a benchmark's queries whose videos come from a source unlike the rest (its own
    durations, resolution, bitrate and GOP); `sources` cites each parameter."""

    name: str
    share: float
    duration: tuple[str, tuple[float, ...]]
    fps: float
    width: int
    height: int
    bitrate_mbps: float
    bitrate_sigma: float
    gop_s: float
    sources: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class BenchmarkSpec:
    """Parameters of one benchmark-like query set; `sources` cites the figure behind each. The
    media parameters describe the queries outside `subsets`."""

    name: str
    options: tuple[int, ...]
    option_weights: tuple[float, ...]
    duration: tuple[str, tuple[float, ...]]  # ("lognormal", (median, sigma, lo, hi)) | ("thirds", (lo1,hi1,...))
    fps: float
    width: int
    height: int
    bitrate_mbps: float  # median video bitrate
    bitrate_sigma: float
    gop_s: float  # mean keyframe interval
    acc_small: float
    acc_large_native: float
    acc_large: tuple[float, ...]  # shared-encoder large model at each density in DENSITIES
    rho: float  # latent correlation of model correctness
    same_wrong: float  # chance a wrong model picks the query's shared wrong option (else any wrong one)
    sources: tuple[tuple[str, str], ...]
    subsets: tuple[Subset, ...] = ()


PERCEPTION_TEST = Subset(
    name="perception-test",
    share=4 / 19,
    duration=("lognormal", (22.0, 0.30, 10.0, 35.0)),
    fps=30.0, width=1280, height=720,
    bitrate_mbps=4.0, bitrate_sigma=0.30, gop_s=4.0,
    sources=(
        ("share", "MVBench's data list (OpenGVLab/Ask-Anything, video_chat2 mvbench): 4 of the 19 tasks with video "
                  "files (object shuffle, action count, state change, character order) use Perception Test "
                  "videos; seed 000 drops the 20th (episodic reasoning, TVQA frames), leaving 3,800 queries"),
        ("duration", "Perception Test (Patraucean et al., NeurIPS 2023): 23 s average length; SV-A: MVBench clips "
                     "< 35 s (lognormal median 22 s, sigma 0.30 assumed)"),
        ("bitrate_mbps", "Perception Test's video archives (google-deepmind/perception_test README: train 26.5 GB, "
                         "valid 70.2 GB, test 41.8 GB for 11.6k videos) hold ~11.9 MB per 23-s video, 4.1 Mbit/s; "
                         "MVBench's perception.zip is 11.2 GB (HF OpenGVLab/MVBench); sigma 0.30 assumed"),
        ("width", "assumed: 1280x720, the resolution YouTube recommends uploading at ~5 Mbit/s (480p: 2.5)"),
        ("gop_s", "assumed: as the rest of MVBench"),
    ),
)
MVBENCH = BenchmarkSpec(
    name="mvbench",
    options=(3, 4, 5), option_weights=(0.3, 0.5, 0.2),
    duration=("lognormal", (8.0, 0.70, 1.0, 35.0)),
    fps=30.0, width=480, height=360,
    bitrate_mbps=1.0, bitrate_sigma=0.2, gop_s=4.0,
    acc_small=0.699, acc_large_native=0.742,
    acc_large=(0.672, 0.705, 0.727, 0.737, 0.722),
    rho=0.80, same_wrong=0.5,
    sources=(
        ("options", "SV-A: up to 5 candidate options (split over 3-5 assumed)"),
        ("duration", "SV-A: clips < 35 s; SV-B: ~20% of all clips under 5 s, none of them Perception Test's, so "
                     "25% of the rest (lognormal median 8 s, sigma 0.70)"),
        ("bitrate_mbps", "SV-B: 5-s clips under 821 KiB (<= 1.34 Mbit/s); 1 Mbit/s is YouTube's recommended "
                         "upload bitrate at 360p; the rest of MVBench's sources (CLEVRER, SSv2, Moments in Time, "
                         "Charades at 480p, ...) hold ~1.3-1.6 MB per video (HF OpenGVLab/MVBench archive sizes)"),
        ("acc_small", "SIII-B: VideoChat-Flash-2B 69.9 on MVBench"),
        ("acc_large_native", "SIII-B: VideoChat-Flash-7B 74.2 on MVBench"),
        ("acc_large", "SIII-B: VLM7B-Encoder2B 73.7 at the default density 16; Fig. 11 inverted U peaking at 16 "
                      "(other points assumed)"),
        ("rho", "SII-C / Fig. 3: small and large agree on 60-76% of queries"),
        ("gop_s", "assumed: ~4 s GOP of web video; MVBench clips have too few keyframes, "
                  "so Alg. 1 falls back to 1 FPS"),
    ),
    subsets=(PERCEPTION_TEST,),
)
VIDEOMME = BenchmarkSpec(
    name="videomme",
    options=(4,), option_weights=(1.0,),
    duration=("thirds", (11.0, 120.0, 240.0, 900.0, 1800.0, 3600.0)),
    fps=30.0, width=640, height=360,
    bitrate_mbps=0.75, bitrate_sigma=0.3, gop_s=4.1,
    acc_small=0.574, acc_large_native=0.647,
    acc_large=(0.560, 0.585, 0.600, 0.609, 0.598),
    rho=0.80, same_wrong=0.5,
    sources=(
        ("options", "SV-A: 4 candidate options"),
        ("duration", "SII-B: short < 2 min, medium 4-15 min, long 30-60 min, 11 s to 1 h (a third each, log-uniform)"),
        ("bitrate_mbps", "SI: uploading Video-MME videos at 59 Mbit/s takes ~15 s on average"),
        ("gop_s", "Fig. 6: keyframe-aligned sampling cuts median frames 486 -> 124"),
        ("acc_small", "SIII-A pilot: 57.4 with keyframe-aligned sampling (57.1 at 1 FPS)"),
        ("acc_large_native", "SIII-B: VideoChat-Flash-7B 64.7"),
        ("acc_large", "SIII-B: VLM7B-Encoder2B 60.9 at density 16; Fig. 11 inverted U peaking at 16 "
                      "(other points assumed)"),
        ("rho", "SII-C / Fig. 3: small and large agree on 60-76% of queries"),
    ),
)
MLVU = BenchmarkSpec(
    name="mlvu",
    options=(6,), option_weights=(1.0,),
    duration=("lognormal", (1000.0, 0.8, 187.0, 8206.0)),
    fps=30.0, width=640, height=360,
    bitrate_mbps=0.80, bitrate_sigma=0.3, gop_s=4.1,
    acc_small=0.530, acc_large_native=0.603,
    acc_large=(0.560, 0.588, 0.601, 0.597, 0.585),
    rho=0.90, same_wrong=0.6,
    sources=(
        ("options", "SV-A: 6 candidate options"),
        ("duration", "SV-A: 187 s to 8,206 s (lognormal median 1000 s assumed)"),
        ("acc_large_native", "SV-B: EdgeHosted/Collaborative 60.3 on MLVU-Test"),
        ("acc_large", "SV-B: QuickGrasp 59.9; Fig. 11 inverted U peaking at 8 on MLVU (other points assumed)"),
        ("acc_small", "assumed: Fig. 3 gap between 2B and 7B grows with video length"),
        ("bitrate_mbps", "assumed equal to Video-MME"),
    ),
)
BENCHMARKS = {b.name: b for b in (MVBENCH, VIDEOMME, MLVU)}

SMALL_T = 1.4
"""Fig. 7: temperature T = 1.4 calibrates VideoChat-Flash-2B on MVBench."""
SMALL_T_SPREAD = 0.12
"""Per-query log-temperature spread: leaves the residual miscalibration that one T cannot remove,
so the ECE falls by about 77% (Fig. 7) rather than to zero."""
LARGE_T = 1.2
"""Assumed: seed 000 calibrates the large model too (SV-D) but gives no T."""
LARGE_T_SPREAD = 0.12
CONCENTRATION = 4.0
"""Assumed spread of confidences (Beta concentration); sets how well confidence separates right from wrong."""
PROFILE_SHARE = 0.3
"""SV-A: each benchmark split 3:7 into a profiling set and a test set."""

CONTEXT_SIGNAL = 0.8
"""Assumed: the correlation of each context reading (each scalar column; each embedding along its
signal direction) with the density the query needs. Seed 000 gives no figure for how predictive its
features are, only that adaptive density beats every fixed one (Fig. 11); 0 makes the columns pure
noise. `workload.context_signal` sets it per scenario."""
EMBED_DIM = 16
"""Width D of the pooled question and vision embeddings. Seed 000's LM width is D = 1536 (SIII-C),
but only the top d = 4 principal components reach the agent (Eq. 6); 16 keeps directions for the
PCA to discard at a hundredth of the trace size."""
EMBED_SIGNAL_SD = 2.0
"""Spread of an embedding along its signal direction, against 1 along every other: the direction
the features vary most in is the one the PCA keeps first (Eq. 6, top-d components of the
profiling split)."""
CLIP_TOKENS = 16
"""Vision tokens per clip behind the relevance sums R_t (Eq. 7): one frame at the default density
16 (SIII-C), so |R_t| <= 16. Locations and spreads of the scalar columns below are immaterial:
every agent standardises its inputs with the profiling split's mean and scale."""


VIDEO_SIGNAL = 0.3
"""Assumed: correlation of the frames' image-complexity latent with the small model erring on a
query (seed 002 routes images; nothing measures this for video)."""
SIGNAL_NOISE = 0.35
"""Assumed: each image signal's own noise around the image-complexity latent (log scale)."""


def signal_values(c_img: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The signal_* columns from an image-complexity latent (n,), standardised: spatial information
    around 45 (ITU-T P.910 SI of natural images, 0-255 luma), edge density around 0.12 and
    colourfulness around 35 (Hasler and Suesstrunk's "moderately colourful"); scales assumed."""
    noise = rng.standard_normal((3, len(c_img)))
    return {"signal_spatial_info": np.exp(np.log(45.0) + 0.30 * c_img + SIGNAL_NOISE * 0.5 * noise[0]),
            "signal_edge_density": 1 / (1 + np.exp(-(-2.0 + 0.6 * c_img + SIGNAL_NOISE * noise[1]))),
            "signal_colourfulness": np.exp(np.log(35.0) + 0.25 * c_img + SIGNAL_NOISE * noise[2])}


def signal_columns(spec: BenchmarkSpec, small_ok: np.ndarray, seed: int, signal: float = VIDEO_SIGNAL
                   ) -> dict[str, list]:
    """The signal_* columns of one benchmark's queries, each a noisy reading of the small model
    erring, from a generator of their own (no other column depends on them)."""
    rng = np.random.default_rng([seed, sum(spec.name.encode()), 6])
    hard = (~np.asarray(small_ok, bool)).astype(np.float64)
    nu = (hard - hard.mean()) / (hard.std() or 1.0)
    c_img = signal * nu + np.sqrt(1 - signal ** 2) * rng.standard_normal(len(nu))
    return {k: v.tolist() for k, v in signal_values(c_img, rng).items()}


def _durations(duration: tuple[str, tuple[float, ...]], n: int, rng: np.random.Generator) -> np.ndarray:
    kind, p = duration
    if kind == "lognormal":
        median, sigma, lo, hi = p
        return np.clip(median * np.exp(sigma * rng.standard_normal(n)), lo, hi)
    bands = np.asarray(p).reshape(-1, 2)
    which = rng.integers(0, len(bands), n)
    lo, hi = np.log(bands[which, 0]), np.log(bands[which, 1])
    return np.exp(lo + (hi - lo) * rng.random(n))


def _keyframes(n_frames: int, fps: float, gop_s: float, rng: np.random.Generator, keyint_max: int = 250) -> np.ndarray:
    """Keyframes at scene-cut-like irregular intervals (gamma, mean gop_s), capped by x264's keyint 250."""
    mean = gop_s * fps
    need = int(n_frames / mean * 1.5) + 8
    gaps = np.clip(np.round(rng.gamma(4.0, mean / 4.0, need)), 1, keyint_max).astype(np.int64)
    keys = np.concatenate([[0], np.cumsum(gaps)])
    while keys[-1] < n_frames:
        more = np.clip(np.round(rng.gamma(4.0, mean / 4.0, need)), 1, keyint_max).astype(np.int64)
        keys = np.concatenate([keys, keys[-1] + np.cumsum(more)])
    return keys[keys < n_frames]


def _correct(scores: np.ndarray, acc: float, groups: np.ndarray) -> np.ndarray:
    """Lowest round(acc * n) scores are correct within each group: accuracy hits acc exactly."""
    out = np.zeros(len(scores), dtype=bool)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        k = int(round(acc * len(idx)))
        out[idx[np.argsort(scores[idx], kind="stable")[:k]]] = True
    return out


def _calibrated_conf(correct: bool, k: int, acc: float, rng: np.random.Generator) -> float:
    """Top-option probability c in (1/K, 1) such that P(correct | c) = c across the benchmark."""
    mu = np.clip((acc - 1.0 / k) / (1.0 - 1.0 / k), 0.02, 0.98)
    a, b = mu * CONCENTRATION, (1 - mu) * CONCENTRATION
    if correct:
        w_plain = (1.0 / k) / (1.0 / k + (1 - 1.0 / k) * mu)
        u = rng.beta(a, b) if rng.random() < w_plain else rng.beta(a + 1, b)
    else:
        u = rng.beta(a, b + 1)
    return float(np.clip(1.0 / k + (1 - 1.0 / k) * u, 1.0 / k + 1e-3, 1 - 1e-6))


def _logits(choice: int, answer: int, conf: float, k: int, t: float, rng: np.random.Generator) -> np.ndarray:
    """Raw logits whose temperature-t softmax puts `conf` on `choice` and spreads the rest below it.

    When `choice` is wrong, the true answer takes one of the remaining shares drawn in proportion to
    its size, so every option's probability is calibrated, not only the top one (NLL fits T = t)."""
    w = rng.dirichlet(np.ones(k - 1))
    cap = conf / (1 - conf) * 0.999
    if w.max() > cap:
        lam = (cap - 1 / (k - 1)) / (w.max() - 1 / (k - 1))
        w = lam * w + (1 - lam) / (k - 1)
    others = [j for j in range(k) if j != choice]
    if choice != answer:
        slot = int(rng.choice(k - 1, p=w))
        rest = [j for j in others if j != answer]
        rng.shuffle(rest)
        others = rest[:slot] + [answer] + rest[slot:]
    p = np.empty(k)
    p[choice] = conf
    p[others] = (1 - conf) * w
    z = np.log(np.clip(p, 1e-9, None))
    return (t * (z - z.mean())).astype(np.float32)


def _wrong_choice(answer: int, k: int, rng: np.random.Generator, follow: int | None, same_wrong: float) -> int:
    if follow is not None and follow != answer and rng.random() < same_wrong:
        return follow
    pick = int(rng.integers(0, k - 1))
    return pick + (pick >= answer)


def needed_density(large_ok: dict[int, np.ndarray]) -> np.ndarray:
    """(n,) index into DENSITIES of the density each query needs: the cheapest at which the large
    model is correct, 0 (the cheapest) where none is."""
    ok = np.stack([large_ok[a] for a in DENSITIES], axis=1)
    return np.where(ok.any(axis=1), ok.argmax(axis=1), 0)


def context_columns(spec: BenchmarkSpec, large_ok: dict[int, np.ndarray], seed: int,
                    signal: float = CONTEXT_SIGNAL) -> dict[str, list]:
    """The context_* columns of one benchmark's queries from their per-density correctness, drawn
    from a generator of their own (the other columns do not depend on it or on `signal`)."""
    if not 0.0 <= signal <= 1.0:
        raise ValueError(f"context signal must be in [0, 1], got {signal}")
    need = needed_density(large_ok).astype(np.float64)
    n = len(need)
    rng = np.random.default_rng([seed, sum(spec.name.encode()), 4])
    nu = (need - need.mean()) / (need.std() or 1.0)
    noise_w = np.sqrt(1.0 - signal ** 2)

    def reading() -> np.ndarray:
        return signal * nu + noise_w * rng.standard_normal(n)

    def embedding() -> np.ndarray:
        direction = rng.standard_normal(EMBED_DIM)
        direction /= np.linalg.norm(direction)
        e = rng.standard_normal((n, EMBED_DIM))
        e -= np.outer(e @ direction, direction)  # unit noise off the signal direction
        return (e + EMBED_SIGNAL_SD * np.outer(reading(), direction)).astype(np.float32)

    txt, vis = embedding(), embedding()
    s_mean = CLIP_TOKENS * np.clip(0.25 + 0.1 * reading(), -1.0, 1.0)
    s_max = np.minimum(s_mean + CLIP_TOKENS * 0.1 * np.abs(rng.standard_normal(n)), CLIP_TOKENS)
    s_cplx = np.clip(0.7 + 0.05 * reading(), 0.0, 1.0)
    return {"context_txt": txt.tolist(), "context_vis": vis.tolist(), "context_s_max": s_max.tolist(),
            "context_s_mean": s_mean.tolist(), "context_s_cplx": s_cplx.tolist()}


def generate(spec: BenchmarkSpec, n: int, seed: int, context_signal: float = CONTEXT_SIGNAL) -> pd.DataFrame:
    """`n` synthetic queries of one benchmark, as trace rows (see testbed.traces)."""
    rng = np.random.default_rng([seed, sum(spec.name.encode())])
    ks = rng.choice(spec.options, size=n, p=spec.option_weights)
    durations = _durations(spec.duration, n, rng)
    split = np.where(rng.random(n) < PROFILE_SHARE, "profile", "test")
    u = rng.standard_normal(n)

    def score(shared: np.ndarray | None = None) -> np.ndarray:
        e = rng.standard_normal(n) if shared is None else np.sqrt(0.8) * shared + np.sqrt(0.2) * rng.standard_normal(n)
        return np.sqrt(spec.rho) * u + np.sqrt(1 - spec.rho) * e

    small_ok = _correct(score(), spec.acc_small, split)
    native_ok = _correct(score(), spec.acc_large_native, split)
    hybrid = rng.standard_normal(n)
    large_ok = {a: _correct(score(hybrid), acc, split) for a, acc in zip(DENSITIES, spec.acc_large)}
    bitrate = spec.bitrate_mbps * np.exp(spec.bitrate_sigma * rng.standard_normal(n))
    media = [(spec.fps, spec.width, spec.height, spec.gop_s, "")] * n
    if spec.subsets:  # drawn after everything else, so a benchmark without subsets keeps its numbers
        pick = rng.random(n)
        edge = 0.0
        for sub in spec.subsets:
            idx = np.flatnonzero((pick >= edge) & (pick < edge + sub.share))
            edge += sub.share
            durations[idx] = _durations(sub.duration, len(idx), rng)
            bitrate[idx] = sub.bitrate_mbps * np.exp(sub.bitrate_sigma * rng.standard_normal(len(idx)))
            for j in idx.tolist():
                media[j] = (sub.fps, sub.width, sub.height, sub.gop_s, sub.name)

    rows = []
    for i in range(n):
        k = int(ks[i])
        fps, width, height, gop_s, _ = media[i]
        n_frames = max(1, int(round(durations[i] * fps)))
        answer = int(rng.integers(0, k))
        s_choice = answer if small_ok[i] else _wrong_choice(answer, k, rng, None, 0.0)

        def variant(ok: bool, acc: float, t: float, spread: float) -> np.ndarray:
            choice = answer if ok else _wrong_choice(answer, k, rng, s_choice, spec.same_wrong)
            conf = _calibrated_conf(ok, k, acc, rng)
            return _logits(choice, answer, conf, k, t * float(np.exp(spread * rng.standard_normal())), rng)

        row = {
            "query_id": f"{spec.name}-{i:05d}",
            "benchmark": spec.name,
            "split": str(split[i]),
            "duration_s": n_frames / fps,
            "fps": fps,
            "n_frames": n_frames,
            "width": width,
            "height": height,
            "file_bytes": int(durations[i] * bitrate[i] * 1e6 / 8),
            "keyframes": _keyframes(n_frames, fps, gop_s, rng).astype(np.int32).tolist(),
            "question": f"[synthetic] {spec.name}-like question {i}: what happens in the video?",
            "options": [f"synthetic option {chr(65 + j)}" for j in range(k)],
            "answer": answer,
            "small_logits": variant(bool(small_ok[i]), spec.acc_small, SMALL_T, SMALL_T_SPREAD).tolist(),
            "large_native_logits": variant(bool(native_ok[i]), spec.acc_large_native, LARGE_T, LARGE_T_SPREAD).tolist(),
        }
        for a, acc in zip(DENSITIES, spec.acc_large):
            row[f"large_logits_a{a}"] = variant(bool(large_ok[a][i]), acc, LARGE_T, LARGE_T_SPREAD).tolist()
        rows.append(row)
    frame = pd.DataFrame(rows)
    for col, values in context_columns(spec, large_ok, seed, context_signal).items():
        frame[col] = values
    for col, values in signal_columns(spec, small_ok, seed).items():
        frame[col] = values
    return frame


def synthetic_workload(benchmarks: tuple[str, ...], n_per_benchmark: int, seed: int,
                       context_signal: float = CONTEXT_SIGNAL) -> tuple[pd.DataFrame, str, dict]:
    """Frame, provenance and parameters of the calibrated synthetic workload."""
    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; allowed: {', '.join(BENCHMARKS)}")
    frame = pd.concat([generate(BENCHMARKS[b], n_per_benchmark, seed, context_signal) for b in benchmarks],
                      ignore_index=True)
    params = {
        "generator": GENERATOR, "seed": seed, "n_per_benchmark": n_per_benchmark,
        "small_temperature": SMALL_T, "small_temperature_spread": SMALL_T_SPREAD, "large_temperature": LARGE_T,
        "concentration": CONCENTRATION, "profile_share": PROFILE_SHARE,
        "signals": {"signal": VIDEO_SIGNAL, "signal_source": "assumed (VIDEO_SIGNAL)", "noise": SIGNAL_NOISE},
        "context": {"signal": context_signal, "signal_source": "assumed (CONTEXT_SIGNAL)", "embed_dim": EMBED_DIM,
                    "embed_signal_sd": EMBED_SIGNAL_SD, "clip_tokens": CLIP_TOKENS,
                    "need": "index of the cheapest density the large model answers correctly (0 if none)"},
        "benchmarks": {b: asdict(BENCHMARKS[b]) for b in benchmarks},
    }
    return frame, f"synthetic:{GENERATOR}:{seed}", params
