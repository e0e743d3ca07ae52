"""Calibrated SYNTHETIC image-QA workload for seed 003 (Song & Kim): TextVQA-like questions about
small details of large images, with the outcomes of every view the crop policies can send. The
trace is labelled ``synthetic:calibrated-seed003:<seed>`` and every report made from it says so.

Seed 003's text gives no numbers: its Fig. 4 and 5 (LLaVA-1.5-7B on TextVQA and POPE) show an
ordering, which the parameters below follow and cite; every absolute value is assumed. What the
figures claim (entropy-crop above random retransmission at equal bytes; full-resolution accuracy
reached with fewer bytes and less compute) is not put in: it is what the run measures
(`testbed.report.PAPER_FIGURES_003`, held out).

Model of a query (as seed 000's generator): a latent difficulty u ~ N(0, 1). The global view is
right for the lowest round(acc_global n) of sqrt(rho) u + sqrt(1 - rho) e scores per split, with a
calibrated top probability (so its min-entropy separates right from wrong as a calibrated model's
does). A query needs a detail the global view lost with a probability that grows with u; adding
the attention crop recovers such queries (ViCrop's gain) and keeps almost every right answer;
full resolution recovers fewer (its tiles dilute the detail in more tokens: HD below ViCrop on
TextVQA, Fig. 4a); a random crop of the same size recovers a query only where it happens to cover
the detail (a chance equal to the box's share of the image). Bytes: JPEG at an assumed bytes per
pixel, lognormal across images; the crop is the box at full detail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from testbed.crop import GLOBAL_SIDE, box_around, crop_side, view_size
from testbed.query import DENSITIES
from testbed.workload.synthetic import (LARGE_T, LARGE_T_SPREAD, PROFILE_SHARE, SMALL_T, SMALL_T_SPREAD,
                                        _calibrated_conf, _correct, _logits, _wrong_choice)

GENERATOR = "calibrated-seed003"


@dataclass(frozen=True)
class CropSpec:
    """Parameters of the TextVQA-like query set; `sources` cites each or says "assumed"."""

    name: str
    width: int
    height: int
    bytes_per_pixel: float
    view_bytes_per_pixel: float
    acc_global: float
    acc_crop: float
    acc_full: float
    acc_small: float
    harm: float
    rho: float
    crop_scale: float
    options: int
    sources: tuple[tuple[str, str], ...]


TEXTVQA_LIKE = CropSpec(
    name="textvqa-like",
    width=1024, height=768,
    bytes_per_pixel=0.35,
    view_bytes_per_pixel=0.45,
    acc_global=0.47,
    acc_crop=0.56,
    acc_full=0.53,
    acc_small=0.35,
    harm=0.01,
    rho=0.8,
    crop_scale=0.4,
    options=4,
    sources=(
        ("width", "assumed: TextVQA's Open Images photos are about 1024x768 (seed 003 Fig. 4a uses TextVQA)"),
        ("bytes_per_pixel", "assumed: ~275 kB JPEG originals at 1024x768, lognormal sigma 0.3 across images"),
        ("view_bytes_per_pixel", "assumed: a 336 px global view and a full-detail crop, JPEG quality 90"),
        ("acc_global", "assumed: LLaVA-1.5-7B on the 336 px global view (seed 003 Fig. 4a: its lowest point)"),
        ("acc_full", "assumed: LLaVA-1.5-HD above the global view, below the crop's best (seed 003 Fig. 4a ordering)"),
        ("acc_crop", "assumed: global plus attention crop for every query, ViCrop's gain on TextVQA (seed 003 Fig. 4a:"
                     " the proposed curve ends above HD)"),
        ("acc_small", "assumed: the device's small VLM (only its fallback answers; seed 003 has none)"),
        ("harm", "assumed: share of right global answers the second view turns wrong"),
        ("rho", "assumed as seed 000's: a query hard for one view is hard for the others"),
        ("crop_scale", "assumed: the crop box's side is 0.4 of the shorter side (ViCrop's window)"),
        ("options", "assumed: four options per question (TextVQA is open-ended; scored as multiple choice here)"),
        ("random", "the random crop's chance of covering the detail is its box's share of the image (geometry)"),
        ("temperatures", "assumed as seed 000's: the large model's confidence calibrated up to T = 1.2"),
    ),
)


def _texts(i: int, k: int) -> tuple[str, tuple[str, ...]]:
    return (f"[synthetic] what does the small sign in image {i} say?",
            tuple(f"synthetic word {chr(65 + j)}" for j in range(k)))


def _recover(candidates: np.ndarray, need: np.ndarray, count: int) -> np.ndarray:
    """(n,) True for `count` of the candidate queries, those whose detail need is highest."""
    out = np.zeros(len(need), dtype=bool)
    idx = np.flatnonzero(candidates)
    if count > 0 and len(idx):
        out[idx[np.argsort(-need[idx], kind="stable")[:count]]] = True
    return out


def outcomes(spec: CropSpec, n: int, seed: int) -> dict[str, np.ndarray]:
    """Per query: split, whether each view answers right, and the detail latent (what the logits
    are drawn from). Accuracies per split are exact for the global view, near exact for the rest."""
    rng = np.random.default_rng([seed, 3, sum(spec.name.encode())])
    split = np.where(rng.random(n) < PROFILE_SHARE, "profile", "test")
    u = rng.standard_normal(n)
    score = np.sqrt(spec.rho) * u + np.sqrt(1 - spec.rho) * rng.standard_normal(n)
    ok_global = _correct(score, spec.acc_global, split)
    need = 0.7 * u + np.sqrt(1 - 0.49) * rng.standard_normal(n)  # how much the answer hangs on a lost detail
    ok_small = _correct(np.sqrt(spec.rho) * u + np.sqrt(1 - spec.rho) * rng.standard_normal(n), spec.acc_small, split)
    harmed = ok_global & (rng.random(n) < spec.harm)
    ok_crop = ok_global & ~harmed
    ok_full = ok_global & ~(harmed & (rng.random(n) < 0.5))
    for s in np.unique(split):
        m = split == s
        gain_c = int(round(spec.acc_crop * m.sum())) - int(ok_crop[m].sum())
        gain_f = int(round(spec.acc_full * m.sum())) - int(ok_full[m].sum())
        ok_crop |= _recover(m & ~ok_crop, need, gain_c)
        # full resolution recovers queries among the same needy ones, less often (noisier ranking)
        ok_full |= _recover(m & ~ok_full, need + 0.8 * rng.standard_normal(n), gain_f)
    area = crop_side(spec.width, spec.height, spec.crop_scale) ** 2 / (spec.width * spec.height)
    covered = rng.random(n) < area
    ok_random = (ok_global & ~harmed) | (ok_crop & ~ok_global & covered)
    return {"split": split, "global": ok_global, "crop": ok_crop, "full": ok_full, "random": ok_random,
            "small": ok_small}


def generate(spec: CropSpec, n: int, seed: int) -> pd.DataFrame:
    """`n` synthetic image queries as trace rows (testbed.traces, schema v3) with crop outcomes."""
    ok = outcomes(spec, n, seed)
    rng = np.random.default_rng([seed, 4, sum(spec.name.encode())])
    k = spec.options
    side = crop_side(spec.width, spec.height, spec.crop_scale)
    gw, gh = view_size(spec.width, spec.height, GLOBAL_SIDE)
    acc = {v: float(ok[v].mean()) for v in ("global", "crop", "full", "random", "small")}
    rows = []
    for i in range(n):
        q, opts = _texts(i, k)
        answer = int(rng.integers(0, k))
        wrong_global = _wrong_choice(answer, k, rng, None, 0.0)

        def variant(view: str, t: float = LARGE_T, spread: float = LARGE_T_SPREAD) -> list[float]:
            right = bool(ok[view][i])
            choice = answer if right else _wrong_choice(answer, k, rng, wrong_global, 0.6)
            conf = _calibrated_conf(right, k, acc[view], rng)
            return _logits(choice, answer, conf, k, t * float(np.exp(spread * rng.standard_normal())), rng).tolist()

        bpp = spec.bytes_per_pixel * float(np.exp(0.3 * rng.standard_normal()))
        vpp = spec.view_bytes_per_pixel * bpp / spec.bytes_per_pixel
        box = box_around(rng.uniform(0, spec.width), rng.uniform(0, spec.height), side, spec.width, spec.height)
        crop_bytes = int(round(vpp * side * side * float(np.exp(0.1 * rng.standard_normal()))))
        random_bytes = int(round(vpp * side * side * float(np.exp(0.1 * rng.standard_normal()))))
        global_logits = variant("global")
        nbytes = int(round(bpp * spec.width * spec.height))
        rows.append({
            "query_id": f"{spec.name}-{i:05d}", "benchmark": spec.name, "split": str(ok["split"][i]),
            "duration_s": 0.0, "fps": 1.0, "n_frames": 1, "width": spec.width, "height": spec.height,
            "file_bytes": nbytes, "keyframes": [0], "question": q, "options": list(opts), "answer": answer,
            "small_logits": variant("small", SMALL_T, SMALL_T_SPREAD),
            # the edge's own tokenizer on the uploaded image sees what the global view shows
            "large_native_logits": global_logits, **{f"large_logits_a{a}": global_logits for a in DENSITIES},
            "image_width": spec.width, "image_height": spec.height, "image_bytes": nbytes,
            "view_global_logits": global_logits, "view_crop_logits": variant("crop"),
            "view_random_logits": variant("random"), "view_full_logits": variant("full"), "view_box": list(box),
            "view_global_bytes": int(round(vpp * gw * gh)), "view_crop_bytes": crop_bytes,
            "view_random_bytes": random_bytes,
        })
    frame = pd.DataFrame(rows)
    for c in ("image_width", "image_height"):
        frame[c] = frame[c].astype("int32")
    return frame


def synthetic_crop_workload(n: int, seed: int) -> tuple[pd.DataFrame, str, dict]:
    """Frame, provenance and parameters of the calibrated synthetic crop workload."""
    params = {"generator": GENERATOR, "seed": seed, "n_per_benchmark": n, "profile_share": PROFILE_SHARE,
              "large_temperature": LARGE_T, "global_side": GLOBAL_SIDE, "benchmarks": {TEXTVQA_LIKE.name:
                                                                                       asdict(TEXTVQA_LIKE)}}
    return generate(TEXTVQA_LIKE, n, seed), f"synthetic:{GENERATOR}:{seed}", params
