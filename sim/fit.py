"""Fit a hardware profile so the sim reproduces seed 000's delay figures (the `paper-fitted` profile).

Ten free parameters (local stage costs, and edge/local speed ratios for CPU decode, GPU and LM
size) are fitted by scipy.optimize.least_squares to log-ratio residuals against the figures of
testbed.report.PAPER_FIGURES marked "fitted" (TARGETS), by running the sim itself on a subsample of
the synthetic workload of one seed (FIT_SEED). The figures marked "held-out" are never fitted:
they are predictions, reported on another workload seed.
"""

from __future__ import annotations

from dataclasses import replace
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from testbed.sim.costs import tokenize_cost
from testbed.sim.engine import load_workload, policy_context, simulate_policy
from testbed.policies.registry import BASELINES, resolve
from testbed.query import QueryRecord
from testbed.report import DN, PAPER_FIGURES, paper_comparison
from testbed.router.calibration import fit_calibration
from testbed.profiles import STAGES, Curve, DeviceProfile, HardwareProfile, Power, Radio
from testbed.scenario import Scenario
from testbed.tokenizer.sampling import DEFAULT_SAMPLER

PARAMS = ("decode_s_per_mpx", "seek_s", "preprocess_s_per_frame", "encode_s_per_frame", "prefill_s",
          "prefill_s_per_token", "generate_s_per_token", "edge_cpu_speedup", "edge_gpu_speedup", "large_lm_cost")
INITIAL = (8.16e-4, 1.27e-4, 3.56e-3, 4.47e-3, 0.269, 2.25e-5, 0.0292, 0.772, 1.33, 1.39)
"""Start of the search (a previous fit; any positive values converge, more slowly)."""
SPANS = {"decode": 1e5, "seek": 1e3, "preprocess": 1e3, "encode": 1e3, "prefill": 1e5, "generate": 100,
         "merge": 1e3, "compress": 1e9, "decompress": 1e9}
FIXED = {"merge": 1e-4, "compress": 1e-9, "decompress": 4e-10}
"""Token merging ~0.1 ms/frame and zstd ~1 GB/s: seed 000 Fig. 13 puts selection + compression at
~0.5% of delay, so these are set, not fitted."""


PAPER_POWER = {
    "local": Power({"tokenize": 300.0, "infer": 350.0, "compress": 150.0, "decompress": 150.0, "describe": 350.0,
                    "inspect": 150.0}, 60.0),
    "edge": Power({"tokenize": 400.0, "infer": 500.0, "compress": 120.0, "decompress": 120.0, "describe": 500.0,
                   "inspect": 120.0}, 70.0),
}
"""Assumed, not fitted (seed 000 reports no energy): the rated power of the parts seed 000 names
(local RTX 4090, 450 W, with an i9-14900K; edge RTX PRO 6000, 600 W, with a Core Ultra 7 265K)."""
PAPER_RADIO = Radio(1e-7, 5e-8)
"""Assumed: the device's network interface, the order of Wi-Fi's energy per bit."""


def build_profile(x: np.ndarray, name: str = "paper-fitted", notes: str = "") -> HardwareProfile:
    """Profile from the ten parameters (linear curves through 0 and each stage's span)."""
    p = dict(zip(PARAMS, (float(v) for v in x)))
    cpu, gpu, lm = p["edge_cpu_speedup"], p["edge_gpu_speedup"], p["large_lm_cost"]
    local = {"decode": (0.0, p["decode_s_per_mpx"]), "seek": (0.0, p["seek_s"]),
             "preprocess": (0.0, p["preprocess_s_per_frame"]), "encode": (0.0, p["encode_s_per_frame"]),
             "prefill": (p["prefill_s"], p["prefill_s_per_token"]), "generate": (0.0, p["generate_s_per_token"]),
             **{k: (0.0, v) for k, v in FIXED.items()}}
    edge = dict(local)
    edge["decode"] = (0.0, p["decode_s_per_mpx"] / cpu)
    edge["seek"] = (0.0, p["seek_s"] / cpu)
    edge["preprocess"] = (0.0, p["preprocess_s_per_frame"] / gpu)
    edge["encode"] = (0.0, p["encode_s_per_frame"] / gpu)
    edge["prefill"] = (p["prefill_s"] * lm / gpu, p["prefill_s_per_token"] * lm / gpu)
    edge["generate"] = (0.0, p["generate_s_per_token"] * lm / gpu)

    def dev(desc: str, table: dict[str, tuple[float, float]], power: Power) -> DeviceProfile:
        return DeviceProfile(desc, {s: Curve.linear(*table[s], SPANS[s]) for s in STAGES}, power)

    return HardwareProfile(
        name, "paper-fitted:seed000",
        dev("local: RTX 4090 + i9-14900K, VideoChat-Flash-2B (seed 000 SIV), fitted to its figures", local,
            PAPER_POWER["local"]),
        dev("edge: RTX PRO 6000 + Core Ultra 7 265K, VideoChat-Flash-7B (seed 000 SIV), fitted to its figures", edge,
            PAPER_POWER["edge"]),
        notes, radio=PAPER_RADIO)


FIT_SEED = 1000
"""Workload seed the profile is fitted on, far from the seeds scenarios and replications use (0, 1,
...), so every figure a run reports, fitted or held-out, is measured on queries the fit never saw."""
WEIGHTS = {"QuickGrasp mean delay (ms)": 2.0, "DeviceNative mean delay (ms)": 2.0,
           "DeviceNative decode share of delay": 0.5, "2B delay, long videos / MVBench": 0.5,
           "7B edge compute, long videos / MVBench": 0.5}
"""Residual weights (default 1): the two absolute MVBench delays anchor the scale; Fig. 2's structure
is read off a plot, so it weighs less."""
MARGIN = {"clips < 5 s: EdgeHosted / DeviceNative delay": 0.95}
"""A range's upper end the fit aims inside of, so that "EdgeHosted fastest" holds with some room."""
TARGETS = tuple(f for f in PAPER_FIGURES if f.role == "fitted" and "generator input" not in f.source)
"""The fitted figures whose values depend on the profile (the accuracy rows are the generator's inputs)."""
FIT_POLICIES = tuple(dict.fromkeys(p for f in TARGETS for p in f.policies))
ALL_POLICIES = tuple(dict.fromkeys(p for f in PAPER_FIGURES for p in f.policies))


def figure_frame(q: pd.DataFrame, records: Sequence[QueryRecord], profile: HardwareProfile,
                 chunk_frames: int) -> pd.DataFrame:
    """Result rows with what the figures need besides them: each query's media duration and, for
    DeviceNative rows, the decode part of its tokenization (from the profile, as the sim timed it)."""
    by_id = {r.query.query_id: r for r in records}
    out = q.copy()
    out["duration_s"] = [getattr(by_id[i].query.media, "duration_s", 0.0) for i in out.query_id]
    dn = (out.policy == DN).to_numpy()
    out["decode_s"] = 0.0
    out.loc[dn, "decode_s"] = [tokenize_cost(profile.local, by_id[i].query.media, DEFAULT_SAMPLER, False,
                                             chunk_frames).decode_s for i in out.loc[dn, "query_id"]]
    return out


def comparison(sc: Scenario, queries: pd.DataFrame, profile: HardwareProfile) -> pd.DataFrame:
    """The paper comparison of one run of `sc` (testbed.report.paper_comparison on its figure frame)."""
    wl = load_workload(sc)
    return paper_comparison(figure_frame(queries, wl.records, profile, sc.nodes.chunk_frames), wl.synthetic)


def simulate_for_fit(sc: Scenario, profile: HardwareProfile, per_benchmark: int | None = None,
                     policies: Sequence[str] = FIT_POLICIES) -> pd.DataFrame:
    """Figure-frame rows of `policies` on the first `per_benchmark` test queries of each benchmark."""
    wl = load_workload(sc)
    cal = fit_calibration(wl.split("profile"))
    test = list(wl.split("test"))
    if per_benchmark:
        test = [r for b in wl.benchmarks() for r in [r for r in test if r.query.benchmark == b][:per_benchmark]]
    frames = []
    for name in policies:
        ctx = policy_context(sc, name, cal, wl.split("profile"))
        rows, _ = simulate_policy(sc, profile, resolve(name), ctx, test)
        frames.append(pd.DataFrame(rows))
    return figure_frame(pd.concat(frames, ignore_index=True), test, profile, sc.nodes.chunk_frames)


def residuals(q: pd.DataFrame) -> np.ndarray:
    """Weighted log-ratio residual of each target: log(sim / paper) for a point, the log distance
    outside a range (0 inside)."""
    out = []
    for t in TARGETS:
        sim = t.measure(q)
        lo, hi = t.paper
        hi = MARGIN.get(t.label, hi)
        r = np.log(sim / lo) if sim < lo else np.log(sim / hi) if sim > hi else 0.0
        out.append(WEIGHTS.get(t.label, 1.0) * r)
    return np.asarray(out)


def fit_scenario(sc: Scenario, seed: int = FIT_SEED) -> Scenario:
    """`sc` as the fit runs it: one closed-loop client (the paper's setup) on workload seed `seed`,
    with every policy the figures need."""
    knobs = {k: v for k, v in sc.policies.knobs.items() if k in ALL_POLICIES}
    policies = replace(sc.policies, run=ALL_POLICIES, baselines=BASELINES, knobs=knobs)
    return replace(sc, seed=seed, arrivals=replace(sc.arrivals, kind="closed", clients=1), policies=policies)


def fit(sc: Scenario, per_benchmark: int = 150, max_nfev: int = 150, seed: int = FIT_SEED,
        log: Callable[[str], None] = print) -> tuple[HardwareProfile, pd.DataFrame]:
    """Least-squares fit on workload seed `seed`; returns the profile and report()'s table."""
    fit_sc = fit_scenario(sc, seed)

    def f(logx: np.ndarray) -> np.ndarray:
        r = residuals(simulate_for_fit(fit_sc, build_profile(np.exp(logx)), per_benchmark))
        log(f"  cost {0.5 * float(r @ r):.4f}")
        return r

    from scipy.optimize import least_squares  # at the fit, not at import: a run that fits nothing skips it

    res = least_squares(f, np.log(np.asarray(INITIAL)), diff_step=0.05, max_nfev=max_nfev, x_scale=1.0)
    x = np.exp(res.x)
    profile = build_profile(x, notes=f"fitted by `testbed fit-profile` on workload seed {seed}: " + ", ".join(
        f"{k}={v:.4g}" for k, v in zip(PARAMS, x)))
    return profile, report(sc, profile, seed)


def report(sc: Scenario, profile: HardwareProfile, fit_seed: int = FIT_SEED,
           eval_seed: int | None = None) -> pd.DataFrame:
    """Every figure on the full workload of the fit's seed and of another seed (the scenario's, or
    fit_seed + 1 if they coincide): role, benchmark, figure, paper, sim on each, and the error on
    the other seed."""
    eval_seed = eval_seed if eval_seed is not None else (sc.seed if sc.seed != fit_seed else fit_seed + 1)
    tables = []
    for seed in (fit_seed, eval_seed):
        s = fit_scenario(sc, seed)
        tables.append(paper_comparison(simulate_for_fit(s, profile, None, ALL_POLICIES)))
    a, b = tables
    out = b[["role", "benchmark", "figure", "paper"]].copy()
    out[f"sim seed {fit_seed} (fit)"] = a.sim.round(3).to_numpy()
    out[f"sim seed {eval_seed}"] = b.sim.round(3).to_numpy()
    out["error"] = b.error.round(3).to_numpy()
    return out
