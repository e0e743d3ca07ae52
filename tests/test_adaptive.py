"""Adaptive density end to end (issue 11): the Describe effect, the context columns of traces and of
the synthetic workload, the quickgrasp policies driven by hand and in the sim, determinism under
concurrency, regret and decision logs in the results folder, `testbed ope`, and saved agent states."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from testbed.cli.main import main
from testbed.sim.engine import load_workload, profiling_fit, run_scenario
from testbed.bandit import FixedDensity, fit_records, load_log, sampled_frames, start_run
from testbed.errors import TestbedError, TraceError
from testbed.policies.base import PolicyContext, RunState, ThompsonKnobs
from testbed.policies.driver import drive, run_sync
from testbed.policies.effects import Compress, ContextInputs, Describe, Inference, Infer, Offload, Tokenize, Tokens
from testbed.policies.registry import resolve
from testbed.query import DENSITIES, Query, VideoMeta
from testbed.ledger import density_regret, regret_cost
from testbed.router.calibration import Calibration, fit_calibration
from testbed.scenario import with_overrides
from testbed.traces import read_trace, table_to_workload, to_table, write_trace
from testbed.workload.synthetic import needed_density, synthetic_workload

VIDEO = VideoMeta(60.0, 30.0, 1800, 640, 360, 5_000_000, tuple(range(0, 1800, 120)))
QUERY = Query("q1", "bench", VIDEO, "what?", ("a", "b", "c", "d"))
TOKENS = Tokens(64, 1800, 0, "local")
SMALL = {"workload": {"queries_per_benchmark": 60},
         "policies": {"run": ["quickgrasp", "quickgrasp-eps", "quickgrasp-linucb", "quickgrasp-fixed16"]}}


def logits(conf_top):
    p = np.array([conf_top] + [(1 - conf_top) / 3] * 3)
    return np.log(p)


@pytest.fixture(scope="module")
def small_profiling():
    frame, prov, params = synthetic_workload(("mvbench", "videomme"), 40, 0)
    wl = table_to_workload(to_table(frame, prov, params))
    prof = wl.split("profile")
    cal = fit_calibration(prof)
    return wl, cal, fit_records(prof, [sampled_frames(r.query.media) for r in prof], cal.small_t, 0, epochs=20)


# --- the policy, driven by hand ---------------------------------------------------------------


def drive_quickgrasp(bandit, small_conf, large_conf, knobs=None):
    spec = resolve("quickgrasp")
    ctx = PolicyContext(knobs or ThompsonKnobs(), RunState(Calibration(1.0, 1.0), bandit))
    effects = []
    inputs = ContextInputs(np.ones(16), np.ones(16), 3.0, 2.0, 0.7)

    def perform(eff):
        effects.append(eff)
        if isinstance(eff, Tokenize):
            return TOKENS
        if isinstance(eff, Infer):
            return Inference("small", logits(small_conf))
        if isinstance(eff, Describe):
            return inputs
        if isinstance(eff, Compress):
            from testbed.policies.effects import Payload
            return Payload("tokens", 1000, 2000, eff.tokens.frames, eff.density)
        return Inference("large", logits(large_conf))

    return effects, run_sync(drive(spec.fn(QUERY, ctx), perform))


def test_quickgrasp_asks_the_agent_for_the_density_and_learns_from_the_proxy(small_profiling):
    _, cal, prof = small_profiling
    bandit = start_run("linucb", prof, seed=0, large_temperature=1.0)
    counts = bandit.agent.posterior.counts.copy()  # type: ignore[attr-defined]
    effects, ans = drive_quickgrasp(bandit, 0.4, 0.9)
    tok, inf, desc, comp, off = effects
    assert desc == Describe(TOKENS, 16, QUERY.question)
    assert comp.density == ans.density and ans.served_by == "edge" and ans.density in DENSITIES
    assert isinstance(off, Offload) and off.steps[1].density == ans.density
    i = DENSITIES.index(ans.density)
    assert bandit.agent.posterior.counts[i] == counts[i] + 1  # type: ignore[attr-defined]
    log = bandit.decision_log()
    assert log is not None and len(log) == 1 and log.actions[0] == ans.density
    # the proxy: confidence 0.9 > tau_proxy 0.6 is a success, minus the token cost
    assert log.rewards[0] == pytest.approx(1.0 - bandit.cost.lam * TOKENS.frames * ans.density)
    effects, _ = drive_quickgrasp(bandit, 0.4, 0.5)
    assert bandit.decision_log().rewards[1] == pytest.approx(-bandit.cost.lam * TOKENS.frames * effects[3].density)


def test_confident_queries_stay_local_without_a_decision(small_profiling):
    _, _, prof = small_profiling
    bandit = start_run("linucb", prof, seed=0)
    effects, ans = drive_quickgrasp(bandit, 0.95, 0.9)
    assert len(effects) == 2 and ans.served_by == "local" and bandit.decision_log() is None


def test_frozen_agents_log_but_do_not_learn(small_profiling):
    _, _, prof = small_profiling
    bandit = start_run("linucb", prof, seed=0, online=False)
    before = bandit.agent.posterior.counts.copy()  # type: ignore[attr-defined]
    drive_quickgrasp(bandit, 0.4, 0.9)
    np.testing.assert_array_equal(bandit.agent.posterior.counts, before)  # type: ignore[attr-defined]
    assert len(bandit.decision_log()) == 1


def test_an_adaptive_policy_without_its_agent_is_an_error():
    with pytest.raises(TestbedError, match="density agent"):
        drive_quickgrasp(None, 0.4, 0.9)


# --- saved states -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["neural-linear-thompson", "epsilon-greedy", "linucb"])
def test_save_load_continue_equals_the_uninterrupted_run(small_profiling, tmp_path, kind):
    wl, _, prof = small_profiling
    test = wl.split("test")

    def step(bandit, rec):
        c = bandit.context(sampled_frames(rec.query.media), rec.small_logits, rec.context)
        d = bandit.choose(c, sampled_frames(rec.query.media))
        bandit.learn(rec.query.query_id, c, sampled_frames(rec.query.media), d, rec.large_logits[d.action])
        return d.action, d.propensity

    whole = start_run(kind, prof, seed=[0, 7])
    straight = [step(whole, r) for r in test]
    first = start_run(kind, prof, seed=[0, 7])
    head = [step(first, r) for r in test[:20]]
    first.save(tmp_path / "state.npz")
    again = start_run(kind, prof, seed=[9, 9], load_state=tmp_path / "state.npz")  # the seed is the file's
    assert head + [step(again, r) for r in test[20:]] == straight
    assert len({a for a, _ in straight}) > 1


# --- traces and the synthetic workload --------------------------------------------------------


def test_context_columns_round_trip_and_bad_values_are_refused(tmp_path):
    frame, prov, params = synthetic_workload(("mvbench",), 30, 3)
    write_trace(frame, tmp_path / "w.parquet", prov, params)
    r0 = read_trace(tmp_path / "w.parquet").records[0]
    np.testing.assert_allclose(r0.context.txt, np.asarray(frame.context_txt[0], dtype=np.float32))
    assert r0.context.vis.shape == (16,) and r0.context.s_cplx == pytest.approx(frame.context_s_cplx[0])
    bare = frame.drop(columns=[c for c in frame.columns if c.startswith("context_")])
    rb = table_to_workload(to_table(bare, prov, params)).records[0]
    assert rb.context == ContextInputs() and rb.context.txt is None
    bad = frame.copy()
    bad.loc[0, "context_s_max"] = float("inf")  # (NaN reads as null: unknown)
    with pytest.raises(TraceError, match="context_s_max must be finite"):
        table_to_workload(to_table(bad, prov, params))


def test_synthetic_context_carries_the_needed_density_at_the_set_strength():
    full, _, params = synthetic_workload(("videomme",), 1500, 4, 0.8)
    half, _, _ = synthetic_workload(("videomme",), 1500, 4, 0.4)
    none, _, _ = synthetic_workload(("videomme",), 1500, 4, 0.0)
    ctx = [c for c in full.columns if c.startswith("context_")]
    assert len(ctx) == 5 and params["context"]["signal"] == 0.8
    pd.testing.assert_frame_equal(full.drop(columns=ctx), half.drop(columns=ctx))  # other columns do not move
    correct = {a: np.array([int(np.argmax(x)) == y for x, y in zip(full[f"large_logits_a{a}"], full.answer)])
               for a in DENSITIES}
    need = needed_density(correct)
    assert 0 < (need > 0).mean() < 0.5
    corr = {s: float(np.corrcoef(need, f.context_s_cplx)[0, 1]) for s, f in ((0.8, full), (0.4, half), (0.0, none))}
    # the column reads the standardised need with correlation s (a little less: s_cplx is clipped to [0, 1])
    assert corr[0.8] == pytest.approx(0.8, abs=0.05) and corr[0.4] == pytest.approx(0.4, abs=0.06)
    assert abs(corr[0.0]) < 0.06


# --- the sim ----------------------------------------------------------------------------------


def test_same_seed_same_choices_with_several_poisson_clients(scenario_factory):
    sc = scenario_factory({**SMALL, "arrivals": {"kind": "poisson", "clients": 3, "rate_per_client": 0.5}})
    a, b = run_scenario(sc), run_scenario(sc)
    pd.testing.assert_frame_equal(a.queries, b.queries)
    q = a.queries[a.queries.policy == "quickgrasp"]
    assert q.density[q.served_by == "edge"].nunique() > 1  # choices vary: the equality above means something
    for name in ("quickgrasp", "quickgrasp-eps", "quickgrasp-linucb"):
        la, lb = a.logs[name], b.logs[name]
        np.testing.assert_array_equal(la.actions, lb.actions)
        np.testing.assert_array_equal(la.propensities, lb.propensities)
        assert len(la) == (a.queries[a.queries.policy == name].served_by == "edge").sum()
    # overlapping queries: several decisions were made before earlier ones were learnt from
    assert (q.submit_s.to_numpy()[1:] < q.done_s.to_numpy()[:-1]).any()
    c = run_scenario(with_overrides(sc, {"seed": 1})).queries
    assert not a.queries[["query_id", "density"]].equals(c[["query_id", "density"]])


def test_regret_is_exact_and_only_for_density_decisions(scenario_factory):
    sc = scenario_factory({**SMALL, "policies": {"run": ["quickgrasp", "quickgrasp-fixed8", "device-native",
                                                         "oracle"]}})
    run = run_scenario(sc)
    q = run.queries
    assert q[q.policy.isin(["device-native", "oracle"])].regret.isna().all()
    for name in ("quickgrasp", "quickgrasp-fixed8"):
        d = q[q.policy == name]
        assert d.regret.notna().eq(d.served_by == "edge").all() and (d.regret.dropna() >= -1e-12).all()
    records = {r.query.query_id: r for r in load_workload(sc).records}
    row = q[(q.policy == "quickgrasp") & q.regret.notna()].iloc[0]
    rec = records[row.query_id]
    cost = regret_cost(sc.policies.knobs_for("quickgrasp"))
    ok = {a: float(int(np.argmax(rec.large_logits[a])) == rec.answer) for a in DENSITIES}
    best = max(ok[a] - cost.lam * row.frames * a for a in DENSITIES)
    assert row.regret == pytest.approx(best - (ok[row.density] - cost.lam * row.frames * row.density))
    from testbed.policies.effects import Answer
    assert np.isnan(density_regret(rec, Answer(0, "local", 16), 64, cost))


def test_the_results_folder_holds_the_logs_and_ope_evaluates_other_agents(tmp_path, capsys):
    sc = tmp_path / "a.toml"
    sc.write_text('[workload]\nqueries_per_benchmark = 60\n[policies]\nrun = ["quickgrasp-eps", '
                  '"quickgrasp-fixed8"]\n[policies.quickgrasp-eps]\nepsilon = 0.3\n')
    assert main(["sim", str(sc), "--out", str(tmp_path / "r")]) == 0
    (run,) = (tmp_path / "r" / "a").iterdir()
    names = {p.name for p in run.iterdir()}
    assert {"decisions-quickgrasp-eps.npz", "decisions-quickgrasp-eps.json", "profiling.npz", "backbone.npz",
            "cumulative_regret.png"} <= names
    log = load_log(run / "decisions-quickgrasp-eps.npz")
    assert log.meta["policy"] == "quickgrasp-eps" and not np.isnan(log.all_rewards).any()
    q = pd.read_parquet(run / "queries.parquet")
    assert (q[q.served_by == "edge"].regret.notna()).all()
    capsys.readouterr()
    for agent in ("fixed8", "quickgrasp", "linucb"):
        assert main(["ope", str(run / "decisions-quickgrasp-eps.npz"), "--agent", agent, "--draws", "50"]) == 0
        out = capsys.readouterr().out
        assert "IPS" in out and "doubly robust" in out and "exact value" in out
    assert main(["ope", str(run / "decisions-quickgrasp-eps.npz"), "--agent", "fixed3"]) == 2
    assert main(["ope", str(run / "decisions-quickgrasp-eps.npz"), "--agent", "oracle"]) == 2
    (run / "profiling.npz").write_bytes((run / "profiling.npz").read_bytes()[:100])
    assert main(["ope", str(run / "decisions-quickgrasp-eps.npz"), "--agent", "fixed8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "profiling.npz" in err.splitlines()[-1]


def test_save_state_and_load_state_knobs(tmp_path, capsys):
    base = '[workload]\nqueries_per_benchmark = 60\n[policies]\nrun = ["quickgrasp"]\n[policies.quickgrasp]\n'
    (tmp_path / "save.toml").write_text(base + 'save_state = "state/qg.npz"\n')
    assert main(["sim", str(tmp_path / "save.toml"), "--out", str(tmp_path / "r")]) == 0
    card = json.loads((tmp_path / "state" / "qg.json").read_text())
    assert card["kind"] == "neural-linear-thompson" and card["extra"]["policy"] == "quickgrasp"
    (tmp_path / "load.toml").write_text(base + 'load_state = "state/qg.npz"\n')
    assert main(["sim", str(tmp_path / "load.toml"), "--out", str(tmp_path / "r")]) == 0
    (tmp_path / "other.toml").write_text(base + 'load_state = "state/qg.npz"\nalpha = 0.1\n')
    capsys.readouterr()
    assert main(["sim", str(tmp_path / "other.toml"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "qg.npz" in err and "alpha" in err
    (tmp_path / "missing.toml").write_text(base + 'load_state = "state/nothing.npz"\n')
    assert main(["sim", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "r")]) == 2
    assert "nothing.json" in capsys.readouterr().err


def test_the_profiling_fit_is_shared_and_needs_a_profiling_split(scenario_factory):
    sc = scenario_factory(SMALL)
    wl = load_workload(sc)
    cal = fit_calibration(wl.split("profile"))
    assert profiling_fit(wl.split("profile"), cal, 0) is profiling_fit(wl.split("profile"), cal, 0)
    test_only = type(wl)(tuple(r for r in wl.records if r.split == "test"), wl.provenance)
    with pytest.raises(TestbedError, match="profiling split"):
        run_scenario(sc, workload=test_only)


def test_fixed_agent_through_the_run_state_matches_the_fixed_policy(small_profiling):
    _, _, prof = small_profiling
    bandit = start_run("fixed", prof, seed=0, density=8)
    assert isinstance(bandit.agent, FixedDensity)
    _, ans = drive_quickgrasp(bandit, 0.4, 0.9)
    assert ans.density == 8


def test_the_shipped_pocket_bandit_scenario_replays_real_signals_with_intervals(tmp_path):
    """scenarios/pocket_bandit.toml: the pocket pair's recorded answers on 100 easy-VQA clips (real context
    inputs, every density's real correctness); its own replications key gives replications.csv, and the
    oracle, which takes the cheapest correct action per query, is never less accurate than a fixed density."""
    from testbed.cli.main import main
    from testbed.scenario import load_scenario
    from testbed.traces import read_trace

    sc = load_scenario("pocket_bandit")
    assert sc.replications == 5
    trace = read_trace(sc.resolve_path(sc.workload.path))
    assert trace.provenance.startswith("live:") and ":pocket@" in trace.provenance and len(trace.records) == 100
    assert all(r.context.vis is not None for r in trace.records)  # recorded, not generated
    assert main(["sim", "pocket_bandit", "--replications", "2", "--out", str(tmp_path)]) == 0
    (run,) = (tmp_path / "pocket_bandit").iterdir()
    table = pd.read_csv(run / "replications.csv")
    acc = table[(table.benchmark == "all") & (table.metric == "accuracy")].set_index("policy")["mean"]
    assert set(acc.index) >= {"quickgrasp", "oracle", *(f"quickgrasp-fixed{a}" for a in (2, 4, 8, 16, 32))}
    assert all(acc["oracle"] >= acc[f"quickgrasp-fixed{a}"] for a in (2, 4, 8, 16, 32))
