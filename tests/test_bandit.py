"""The density bandit (testbed/bandit): features on hand-computed inputs, the backbone against a
torch forward pass, posteriors against closed-form Bayesian linear regression, regret on a
synthetic contextual problem with a known best density per context, determinism, and state files
that round-trip or are refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from testbed.bandit import (
    Backbone,
    ContextBuilder,
    CorruptFileError,
    CostModel,
    EpsilonGreedy,
    FixedDensity,
    LinUCB,
    MismatchError,
    NeuralLinearThompson,
    Oracle,
    RawFeatures,
    context_dim,
    context_vector,
    fit_context_builder,
    fit_pca,
    full_information,
    instant_regret,
    load_agent_state,
    load_backbone,
    pca_transform,
    proxy_success,
    relevance_and_complexity,
    save_agent_state,
    save_backbone,
    spectral_entropy,
    train_backbone,
    uncertainty_features,
)
from testbed.bandit.features import CONTEXT_FIELDS, clip_relevance, relevance_features, spectral_complexity
from testbed.errors import TestbedError
from testbed.scenario import REPO_ROOT

D = (2, 4, 8, 16, 32)
H_75_25 = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) / np.log(2)  # normalised entropy of (3/4, 1/4)


# --- features ---------------------------------------------------------------------------------


def test_uncertainty_features_by_hand():
    logits = np.array([[0.0, 0.0, 0.0, 0.0],          # uniform over 4
                       [1.0, 1.0, np.nan, np.nan],    # uniform over the 2 valid options
                       [np.log(3.0), 0.0, np.nan, np.nan],  # p = (3/4, 1/4)
                       [5.0, np.nan, np.nan, np.nan]])  # a single option
    f = uncertainty_features(logits)
    np.testing.assert_allclose(f[0], [0.25, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(f[1], [0.5, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(f[2], [0.75, 0.5, H_75_25], atol=1e-12)
    np.testing.assert_allclose(f[3], [1.0, 1.0, 0.0], atol=1e-12)
    # temperature divides the logits: [2 ln 3, 0] at T = 2 is (3/4, 1/4) again
    np.testing.assert_allclose(uncertainty_features(np.array([[2 * np.log(3.0), 0.0]]), 2.0)[0],
                               [0.75, 0.5, H_75_25], atol=1e-12)


def test_spectral_entropy_by_hand():
    rng = np.random.default_rng(0)
    rank1 = np.outer(rng.standard_normal(6), rng.standard_normal(5))
    assert spectral_entropy(rank1) == pytest.approx(0.0, abs=1e-9)
    assert spectral_entropy(np.eye(4) * 3.0) == pytest.approx(1.0)  # all singular values equal
    assert spectral_entropy(np.diag([3.0, 1.0])) == pytest.approx(H_75_25)  # sigma (3, 1) -> (3/4, 1/4)
    assert spectral_entropy(np.zeros((3, 3))) == 0.0
    batch = spectral_entropy(np.stack([np.eye(3), np.diag([1.0, 0.0, 0.0])]))
    np.testing.assert_allclose(batch, [1.0, 0.0], atol=1e-12)


def test_spectral_complexity_takes_the_top_k_clips_by_relevance():
    flat, rank1 = np.eye(4), np.ones((4, 4))
    clips = [flat, rank1, rank1, rank1]
    assert spectral_complexity(clips, np.array([0.1, 0.9, 0.8, 0.7])) == pytest.approx(0.0, abs=1e-9)
    assert spectral_complexity(clips, np.array([0.9, 0.1, 0.8, 0.7])) == pytest.approx(1 / 3)
    assert spectral_complexity(clips[:2], np.array([0.0, 1.0])) == pytest.approx(0.5)  # fewer than K clips


def test_clip_relevance_and_its_summaries_by_hand():
    h = np.array([1.0, 0.0])
    tokens = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    r = clip_relevance(h, tokens, np.array([0, 0, 1]))
    np.testing.assert_allclose(r, [1.0, 1 / np.sqrt(2)])
    np.testing.assert_allclose(relevance_features(np.array([[1.0, 3.0, np.nan], [2.0, 2.0, 5.0]])),
                               [[3.0, 2.0], [5.0, 3.0]])
    s_max, s_mean, s_cplx = relevance_and_complexity(h, tokens, np.array([0, 0, 1]))
    # clip 0 is diag-like (2, 0; 0, 1): sigma (2, 1); clip 1 is one token: J = 1 -> 0
    h_clip0 = -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3)) / np.log(2)
    assert (s_max, s_mean) == pytest.approx((1.0, (1 + 1 / np.sqrt(2)) / 2))
    assert s_cplx == pytest.approx(h_clip0 / 2)


def test_pca_matches_the_covariance_eigendecomposition():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.standard_normal((6, 3)))[0].T  # 3 orthonormal directions in R^6
    x = (rng.standard_normal((200, 3)) * [5.0, 2.0, 1.0]) @ basis + 7.0
    pca = fit_pca(x, d=4)
    assert pca.components.shape == (4, 6)
    np.testing.assert_allclose(pca.components[3], 0.0)  # only 3 directions of variance
    np.testing.assert_allclose(pca.components[:3] @ pca.components[:3].T, np.eye(3), atol=1e-10)
    z = pca_transform(pca, x)
    eig = np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1][:3]
    np.testing.assert_allclose(z[:, :3].var(axis=0), eig, rtol=1e-8)
    np.testing.assert_allclose(pca_transform(pca, x.mean(axis=0)), 0.0, atol=1e-10)
    again = fit_pca(x[::-1], d=4)  # same data, other order: same signs
    np.testing.assert_allclose(again.components, pca.components, atol=1e-10)
    with pytest.raises(ValueError, match="dimension 5"):
        pca_transform(pca, x[:, :5])


def test_context_vector_order_and_dimension():
    assert context_dim() == len(CONTEXT_FIELDS) == 15
    assert CONTEXT_FIELDS[:4] == ("n", "kappa", "delta", "entropy") and CONTEXT_FIELDS[-3:] == ("s_max", "s_mean",
                                                                                                  "s_cplx")
    c = context_vector(np.array([64, 128]), np.ones((2, 3)), np.full((2, 4), 2.0), np.full((2, 4), 3.0),
                       np.full((2, 3), 4.0))
    np.testing.assert_array_equal(c[0], [64, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4])
    with pytest.raises(ValueError, match="z_vis"):
        context_vector(np.array([1]), np.ones((1, 3)), np.ones((1, 4)), np.ones((1, 3)), np.ones((1, 3)))

    rng = np.random.default_rng(2)
    txt, vis = rng.standard_normal((50, 8)), rng.standard_normal((50, 8))
    builder = fit_context_builder(1.4, txt, vis)
    logits = np.array([[1.0, 0.0, np.nan]])
    one = builder.one(96, logits[0], txt[0], vis[0], 0.5, 0.25, 0.75)
    np.testing.assert_allclose(one[:4], [96, *uncertainty_features(logits, 1.4)[0]])
    np.testing.assert_allclose(one[4:8], pca_transform(builder.pca_txt, txt[:1])[0])  # type: ignore[arg-type]
    np.testing.assert_allclose(one[-3:], [0.5, 0.25, 0.75])
    bare = ContextBuilder(1.0, None, None).one(96, logits[0])  # a trace without context columns
    assert bare.shape == (15,) and (bare[4:] == 0).all()


# --- the synthetic contextual problem ---------------------------------------------------------

COST = CostModel(D, max_frames=512, weight=0.5)


def synthetic_contexts(rng: np.random.Generator, m: int) -> np.ndarray:
    """[n, x0..x4]: frames uniform in 32..512, five standard-normal features."""
    return np.column_stack([rng.integers(32, 513, m).astype(float), rng.standard_normal((m, 5))])


def success_probs(c: np.ndarray) -> np.ndarray:
    """(m, 5) P(correct | c, a): rises with density around a needed log2-density that depends
    non-linearly on the features; with the token cost, the best density varies per context."""
    x = c[:, 1:]
    need = 3.0 + 1.2 * x[:, 0] + 0.8 * x[:, 1] * x[:, 2] + 0.5 * np.sin(2 * x[:, 3])
    return 0.15 + 0.8 / (1 + np.exp(-3.0 * (np.log2(np.array(D))[None, :] - need[:, None])))


@pytest.fixture(scope="module")
def problem():
    """A profiling split (200 queries, every density's outcome) and its trained backbone."""
    rng = np.random.default_rng(0)
    cp = synthetic_contexts(rng, 200)
    yp = (rng.random((200, 5)) < success_probs(cp)).astype(float)
    triples = full_information(cp, yp, D)
    return {"contexts": cp, "correct": yp, "triples": triples, "backbone": train_backbone(*triples, D, seed=0)}


def test_a_cached_backbone_is_the_trained_one_and_a_bad_file_is_refitted(problem, tmp_path):
    from testbed.bandit.backbone import train_cached

    first, hit = train_cached(*problem["triples"], D, tmp_path, seed=0)
    assert not hit and first.fingerprint == problem["backbone"].fingerprint  # what training gives
    again, hit = train_cached(*problem["triples"], D, tmp_path, seed=0)
    assert hit and again.fingerprint == first.fingerprint  # float64 weights: the very fit
    _, hit = train_cached(*problem["triples"], D, tmp_path, seed=1, epochs=3)
    assert not hit  # other settings, another key
    (npz,) = [p for p in tmp_path.glob("backbone-*.npz") if p.stat().st_size and
              load_backbone(p).fingerprint == first.fingerprint]
    npz.write_bytes(b"not an npz")
    refit, hit = train_cached(*problem["triples"], D, tmp_path, seed=0)
    assert not hit and refit.fingerprint == first.fingerprint and load_backbone(npz).fingerprint == first.fingerprint


def thompson(problem, **kw) -> NeuralLinearThompson:
    agent = NeuralLinearThompson(problem["backbone"], COST, **kw)
    agent.warm_start(*problem["triples"])
    return agent


def test_backbone_training_is_seeded_and_numpy_matches_torch(problem, tmp_path):
    import torch

    bb = problem["backbone"]
    assert (bb.dim_in, bb.w1.shape[1], bb.dim, len(bb.densities)) == (6, 128, 64, 5)
    assert train_backbone(*problem["triples"], D, seed=0).fingerprint == bb.fingerprint
    assert train_backbone(*problem["triples"], D, seed=1, epochs=5).fingerprint != bb.fingerprint
    net = torch.nn.Sequential(torch.nn.Linear(6, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 5), torch.nn.Sigmoid()).double()
    with torch.no_grad():
        for layer, (w, b) in zip(net[::2], ((bb.w1, bb.b1), (bb.w2, bb.b2), (bb.w_head, bb.b_head))):
            layer.weight.copy_(torch.from_numpy(w.T))
            layer.bias.copy_(torch.from_numpy(b))
        x = (problem["contexts"] - bb.in_mean) / bb.in_scale
        np.testing.assert_allclose(bb.predict(problem["contexts"]), net(torch.from_numpy(x)).numpy(), rtol=1e-10)
        np.testing.assert_allclose(bb.transform(problem["contexts"]), net[:4](torch.from_numpy(x)).numpy(),
                                   rtol=1e-10)
    # the heads learnt the problem: higher density, higher predicted success, on average
    assert np.all(np.diff(bb.predict(problem["contexts"]).mean(axis=0)) > 0)

    save_backbone(bb, tmp_path / "bb.npz")
    loaded = load_backbone(tmp_path / "bb.npz", densities=D, dim_in=6)
    assert loaded.fingerprint == bb.fingerprint and loaded.info["seed"] == 0
    with pytest.raises(MismatchError, match="densities"):
        load_backbone(tmp_path / "bb.npz", densities=(2, 4, 8))
    with pytest.raises(MismatchError, match="15 context features|takes 6"):
        load_backbone(tmp_path / "bb.npz", dim_in=15)
    (tmp_path / "bb.npz").write_bytes((tmp_path / "bb.npz").read_bytes()[:500])
    with pytest.raises(CorruptFileError, match="bb.npz"):
        load_backbone(tmp_path / "bb.npz")


def test_neural_linear_thompson_regret_on_a_known_problem(problem):
    """5,000 rounds, bandit feedback: Thompson's pseudo-regret is below the best fixed density's
    and epsilon-greedy's (same latent, same warm start), and falls from the first half to the
    second."""
    rng = np.random.default_rng(10)
    t = 5000
    ct = synthetic_contexts(rng, t)
    p = success_probs(ct)
    mu = p - COST.lam * ct[:, :1] * np.array(D)  # expected reward per density
    best = mu.max(axis=1)
    outcomes = rng.random((t, 5)) < p
    assert len(set(mu.argmax(axis=1).tolist())) == 5  # every density is best for some contexts

    def regret(agent) -> np.ndarray:
        r = np.random.default_rng(11)
        out = np.empty(t)
        for i in range(t):
            d = agent.select(ct[i], ct[i, 0], r)
            out[i] = best[i] - mu[i, d.index]
            agent.update(ct[i], d.action, float(outcomes[i, d.index]))
        return out

    ts = regret(thompson(problem))
    eps = EpsilonGreedy(problem["backbone"], COST, epsilon=0.1)
    eps.warm_start(*problem["triples"])
    eps_regret = regret(eps).sum()
    best_fixed = (best.sum() - mu.sum(axis=0)).min()
    print(f"\nregret over {t}: thompson {ts.sum():.1f} (halves {ts[:t // 2].sum():.1f}, {ts[t // 2:].sum():.1f}), "
          f"epsilon-greedy {eps_regret:.1f}, best fixed density {best_fixed:.1f}")
    assert ts.sum() < best_fixed
    assert ts.sum() < eps_regret
    assert ts[t // 2:].sum() < ts[: t // 2].sum()


# --- posterior, sampling, determinism ---------------------------------------------------------


def small_backbone(p: int = 3, h: int = 8, d: int = 4, seed: int = 0) -> Backbone:
    rng = np.random.default_rng(seed)
    return Backbone(D, np.zeros(p), np.ones(p), rng.standard_normal((p, h)), rng.standard_normal(h) + 1.0,
                    rng.standard_normal((h, d)) / 2, np.abs(rng.standard_normal(d)), rng.standard_normal((d, 5)),
                    np.zeros(5))


def test_posterior_equals_closed_form_bayesian_linear_regression():
    bb = small_backbone()
    agent = NeuralLinearThompson(bb, alpha=0.05, lambda0=0.1)
    rng = np.random.default_rng(3)
    warm_c, warm_a, warm_y = rng.standard_normal((12, 3)), rng.choice([4, 16], 12), rng.integers(0, 2, 12)
    agent.warm_start(warm_c, warm_a, warm_y)
    online_c, online_y = rng.standard_normal((9, 3)), rng.random(9)
    for c, y in zip(online_c, online_y):
        agent.update(c, 16, y)
    agent.update(online_c[0], 2, 1.0)

    def closed_form(c: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = bb.transform(c)
        precision = 0.1 * np.eye(4) + u.T @ u
        return np.linalg.solve(precision, u.T @ y), 0.05 ** 2 * np.linalg.inv(precision)

    post = agent.posterior
    for k, (c, y) in {1: (warm_c[warm_a == 4], warm_y[warm_a == 4]),
                      3: (np.vstack([warm_c[warm_a == 16], online_c]),
                          np.concatenate([warm_y[warm_a == 16], online_y])),
                      0: (online_c[:1], np.ones(1)),
                      2: (np.zeros((0, 3)), np.zeros(0))}.items():
        mean, cov = closed_form(c, y)
        np.testing.assert_allclose(post.mu[k], mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(agent.alpha ** 2 * post.A_inv[k], cov, rtol=1e-9, atol=1e-15)
    assert post.counts.tolist() == [1, (warm_a == 4).sum(), 0, (warm_a == 16).sum() + 9, 0]


def test_rank1_inverse_stays_exact_over_many_updates():
    agent = LinUCB(RawFeatures.identity(5))
    rng = np.random.default_rng(4)
    for c in rng.standard_normal((3000, 5)) * 3:
        agent.update(c, 8, float(rng.random()))
    k = agent.index(8)
    np.testing.assert_allclose(agent.posterior.A_inv[k] @ agent.posterior.A[k], np.eye(6), atol=1e-9)
    np.testing.assert_array_equal(agent.posterior.A_inv[k], agent.posterior.A_inv[k].T)


def test_scalar_thompson_draw_matches_drawing_the_full_beta():
    """Drawing u^T beta from its 1-D normal picks densities with the same frequencies as drawing
    beta ~ N(mu, alpha^2 A^-1) in full (Eq. 15-16 as written)."""
    bb = small_backbone()
    agent = NeuralLinearThompson(bb, CostModel(D, weight=0.2), alpha=0.5)
    rng = np.random.default_rng(5)
    agent.warm_start(*full_information(rng.standard_normal((30, 3)), rng.integers(0, 2, (30, 5)), D))
    c, n = rng.standard_normal(3), 300
    u = bb.transform(c)
    post = agent.posterior
    draws = 20000
    full = np.stack([rng.multivariate_normal(post.mu[k], agent.alpha ** 2 * post.A_inv[k], draws) @ u
                     for k in range(5)], axis=1)
    want = np.bincount((np.clip(full, 0, 1) - agent.cost.costs(n)).argmax(axis=1), minlength=5) / draws
    got = agent.action_probs(c, n, np.random.default_rng(6), draws=draws)
    assert want.max() < 0.9  # a non-degenerate choice
    np.testing.assert_allclose(got, want, atol=0.015)
    picks = np.bincount([agent.select(c, n, rng).index for _ in range(5000)], minlength=5) / 5000
    np.testing.assert_allclose(picks, want, atol=0.025)
    for seed in range(20):
        dec = agent.select(c, n, np.random.default_rng(seed))
        assert abs(dec.propensity - want[dec.index]) < 0.02


def test_win_probability_matches_counting_argmax_wins():
    """The conditional Monte Carlo propensity against plain counting, including clipping point
    masses, zero variances and exact ties (which go to the smaller density, as np.argmax)."""
    from testbed.bandit.agents import win_probability

    rng = np.random.default_rng(12)
    cases = [(rng.uniform(-0.5, 1.5, 5), rng.uniform(0.0, 0.6, 5) * (rng.random(5) > 0.2),
              np.sort(rng.uniform(0, 0.3, 5)) * (rng.random() > 0.3)) for _ in range(12)]
    cases.append((np.array([2.0, 3.0, 0.5, -1.0, 2.0]), np.array([0.1, 0.1, 0.0, 0.2, 0.3]), np.zeros(5)))
    for mean, sd, cost in cases:
        draws = np.clip(mean + sd * rng.standard_normal((100_000, 5)), 0, 1) - cost
        counted = np.bincount(draws.argmax(axis=1), minlength=5) / 100_000
        est = [win_probability(mean, sd, cost, i, rng, 200) for i in range(5)]
        np.testing.assert_allclose(est, counted, atol=0.006)  # counting's own standard error is <= 0.0016
    # all five clip to 1 with no cost: the first density always wins the tie
    assert win_probability(np.full(5, 3.0), np.full(5, 0.0), np.zeros(5), 0, rng, 10) == 1.0
    assert win_probability(np.full(5, 3.0), np.full(5, 0.0), np.zeros(5), 1, rng, 10) == 0.0


def test_epsilon_greedy_propensity_is_exact():
    agent = EpsilonGreedy(RawFeatures.identity(3), epsilon=0.2)
    rng = np.random.default_rng(8)
    c = rng.standard_normal(3)
    probs = agent.action_probs(c, 64, rng)
    assert probs.sum() == pytest.approx(1.0) and probs.max() == pytest.approx(0.8 + 0.04)
    decisions = [agent.select(c, 64, rng) for _ in range(4000)]
    freq = np.bincount([d.index for d in decisions], minlength=5) / 4000
    np.testing.assert_allclose(freq, probs, atol=0.025)
    assert all(d.propensity == pytest.approx(probs[d.index]) for d in decisions)


def test_fixed_oracle_cost_and_proxy():
    cost = CostModel(D, max_frames=512)
    assert cost.costs(512)[-1] == pytest.approx(1.0) and cost.lam == 1 / (512 * 32)
    rng = np.random.default_rng(0)
    assert FixedDensity(8).select(np.zeros(3), 100, rng).action == 8
    oracle = Oracle(cost)
    hind = {2: False, 4: True, 8: True, 16: True, 32: True}
    dec = oracle.select(np.zeros(3), 100, rng, hind)
    assert (dec.action, dec.propensity) == (4, 1.0)
    assert instant_regret(hind, 100, 4, cost) == 0.0
    assert instant_regret(hind, 100, 32, cost) == pytest.approx(cost.lam * 100 * 28)
    assert instant_regret(hind, 100, 2, cost) == pytest.approx(1 - cost.lam * 100 * 2)
    assert oracle.select(np.zeros(3), 100, rng, dict.fromkeys(D, False)).action == 2
    with pytest.raises(ValueError, match="hindsight"):
        oracle.select(np.zeros(3), 100, rng)
    assert proxy_success(np.array([np.log(7.0), np.log(3.0)])) == 1.0  # kappa 0.7 > 0.6
    assert proxy_success(np.array([0.0, 0.0])) == 0.0  # kappa 0.5
    assert proxy_success(np.array([np.log(7.0), np.log(3.0)]), temperature=4.0) == 0.0  # flattened below 0.6


def agents_for(problem) -> dict[str, object]:
    raw = RawFeatures.fit(problem["contexts"])

    def warm(agent):
        agent.warm_start(*problem["triples"])
        return agent

    return {"thompson": lambda: thompson(problem, propensity_draws=50),
            "epsilon-greedy": lambda: warm(EpsilonGreedy(problem["backbone"], COST, epsilon=0.2)),
            "linucb": lambda: warm(LinUCB(raw, COST)),
            "fixed": lambda: FixedDensity(16, COST)}


def play(agent, rng, contexts, outcomes, start=0, stop=None):
    out = []
    for i in range(start, len(contexts) if stop is None else stop):
        d = agent.select(contexts[i], contexts[i, 0], rng)
        out.append((d.action, d.propensity))
        agent.update(contexts[i], d.action, float(outcomes[i, d.index]))
    return out


@pytest.mark.parametrize("kind", ["thompson", "epsilon-greedy", "linucb", "fixed"])
def test_same_seed_same_choices_and_save_load_continue(problem, tmp_path, kind):
    make = agents_for(problem)[kind]
    data = np.random.default_rng(20)
    ctx = synthetic_contexts(data, 400)
    outcomes = data.random((400, 5)) < success_probs(ctx)

    straight = play(make(), np.random.default_rng(21), ctx, outcomes)
    assert play(make(), np.random.default_rng(21), ctx, outcomes) == straight
    if kind in ("thompson", "epsilon-greedy"):
        assert play(make(), np.random.default_rng(22), ctx, outcomes) != straight

    first, rng = make(), np.random.default_rng(21)
    head = play(first, rng, ctx, outcomes, stop=150)
    save_agent_state(tmp_path / "state.npz", first, rng, extra={"next_query": 150})
    del first, rng
    resumed = make()
    rng2, extra = load_agent_state(tmp_path / "state.npz", resumed)
    assert extra == {"next_query": 150}
    assert head + play(resumed, rng2, ctx, outcomes, start=150) == straight


# --- refused state files ----------------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo, name: str) -> str:
    msg = str(exc.value)
    assert isinstance(exc.value, TestbedError) and "\n" not in msg and name in msg, msg
    return msg


def test_corrupt_and_mismatched_states_are_refused_in_one_line(problem, tmp_path):
    agent = thompson(problem)
    path = tmp_path / "ts.npz"
    save_agent_state(path, agent, np.random.default_rng(0))
    good, card = path.read_bytes(), path.with_suffix(".json").read_text()
    fresh = thompson(problem)
    before = fresh.posterior.A_inv.copy()

    def refused(error, *parts, into=None):
        with pytest.raises(error) as exc:
            load_agent_state(path, into or fresh)
        msg = one_line(exc, "ts.")
        for part in parts:
            assert part in msg, msg
        np.testing.assert_array_equal(fresh.posterior.A_inv, before)  # nothing changed

    path.write_bytes(good[: len(good) // 2])
    refused(CorruptFileError, "ts.npz", "truncated")
    path.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    refused(CorruptFileError, "SHA-256")
    path.write_bytes(good)
    path.with_suffix(".json").write_text(card[:40])
    refused(CorruptFileError, "ts.json", "JSON")
    path.with_suffix(".json").unlink()
    refused(CorruptFileError, "card not found")
    path.with_suffix(".json").write_text(card)
    load_agent_state(path, fresh)  # intact again

    # a well-formed card whose array really is truncated (card and checksum rewritten to match)
    arrays = dict(np.load(path))
    arrays["A_inv"] = arrays["A_inv"][:3]
    from testbed.bandit._files import write_npz_card

    forged = json.loads(card)
    write_npz_card(tmp_path / "forged.npz", arrays, {k: v for k, v in forged.items() if k not in ("arrays", "sha256")})
    with pytest.raises(MismatchError) as exc:
        load_agent_state(tmp_path / "forged.npz", thompson(problem))
    assert "A_inv" in one_line(exc, "forged.npz")

    cost3 = CostModel((2, 4, 8), 512, 0.5)
    with pytest.raises(MismatchError) as exc:
        load_agent_state(path, NeuralLinearThompson(problem["backbone"], cost3))
    assert "densities [2, 4, 8, 16, 32] in the file, [2, 4, 8] in this run" in one_line(exc, "ts.npz")
    with pytest.raises(MismatchError) as exc:
        load_agent_state(path, NeuralLinearThompson(small_backbone(p=6), COST))
    assert "feature size 64 in the file, 4 in this run" in one_line(exc, "ts.npz")
    with pytest.raises(MismatchError) as exc:
        load_agent_state(path, NeuralLinearThompson(small_backbone(p=6, d=64, seed=9), COST))
    assert "another feature map or backbone" in one_line(exc, "ts.npz")
    with pytest.raises(MismatchError) as exc:
        load_agent_state(path, EpsilonGreedy(problem["backbone"], COST))
    assert "'neural-linear-thompson' agent's state, this run's agent is 'epsilon-greedy'" in one_line(exc, "ts.npz")
    with pytest.raises(MismatchError) as exc:
        load_agent_state(path, NeuralLinearThompson(problem["backbone"], COST, alpha=0.1))
    assert "alpha is 0.05 in the file, 0.1 in this run" in one_line(exc, "ts.npz")


def test_importing_the_bandit_loads_no_torch_or_matplotlib():
    code = "import sys, testbed.bandit; print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_bandit_loads_arrays_without_pickle():
    import re

    for path in Path(REPO_ROOT / "testbed" / "bandit").glob("*.py"):
        for call in re.findall(r"np\.load\(.*", path.read_text()):
            assert "allow_pickle=False" in call, (path, call)


# --- run start from profiling-split arrays ----------------------------------------------------


def fake_split(rng: np.random.Generator, m: int) -> dict:
    """Arrays shaped like trace rows: ragged small logits, large logits per density, answers,
    frames, and the optional context columns; the needed density follows context_s_cplx."""
    k = rng.integers(3, 6, m)
    answers = [int(rng.integers(0, kk)) for kk in k]
    s_cplx = rng.random(m)
    large = []
    for kk, ans, cx in zip(k, answers, s_cplx):
        row = {}
        for a in D:
            logits = rng.standard_normal(kk)
            if rng.random() < 0.2 + 0.7 / (1 + np.exp(-6 * (np.log2(a) - 1 - 3 * cx))):
                logits[ans] += 4.0
            row[a] = logits
        large.append(row)
    return {"n_frames": rng.integers(16, 513, m), "small_logits": [rng.standard_normal(kk) for kk in k],
            "large_logits": large, "answers": answers, "txt": rng.standard_normal((m, 16)).tolist(),
            "vis": rng.standard_normal((m, 16)).tolist(), "s_max": rng.random(m), "s_mean": rng.random(m) / 2,
            "s_cplx": s_cplx}


def test_run_start_from_profiling_arrays_is_deterministic():
    from testbed.bandit import correctness_matrix, fit_profiling, make_agent

    rng = np.random.default_rng(30)
    prof, test = fake_split(rng, 120), fake_split(rng, 60)
    fit = fit_profiling(**prof, small_temperature=1.4, seed=0, epochs=20)
    assert fit.contexts.shape == (120, 15) and fit.correct.shape == (120, 5)
    np.testing.assert_array_equal(fit.correct[0], [np.argmax(prof["large_logits"][0][a]) == prof["answers"][0]
                                                   for a in D])
    assert correctness_matrix(prof["large_logits"], prof["answers"]).mean() == fit.correct.mean()
    again = fit_profiling(**prof, small_temperature=1.4, seed=0, epochs=20)
    assert again.backbone.fingerprint == fit.backbone.fingerprint  # type: ignore[union-attr]

    def run(profiling, kind, seed, **kw):
        agent = make_agent(kind, profiling, CostModel(D, 512, 0.5), **kw)
        r = np.random.default_rng(seed)
        out = []
        for i in range(60):
            c = profiling.builder.one(test["n_frames"][i], test["small_logits"][i], test["txt"][i], test["vis"][i],
                                      test["s_max"][i], test["s_mean"][i], test["s_cplx"][i])
            d = agent.select(c, test["n_frames"][i], r, dict.fromkeys(D, 1.0))
            out.append(d.action)
            agent.update(c, d.action, proxy_success(test["large_logits"][i][d.action], 1.0))
        return out

    for kind, kw in (("neural-linear-thompson", {}), ("epsilon-greedy", {}), ("epsilon-greedy-raw", {}),
                     ("linucb", {}), ("fixed", {"density": 8}), ("oracle", {})):
        assert run(fit, kind, 1, **kw) == run(again, kind, 1, **kw), kind
    bare = fit_profiling(prof["n_frames"], prof["small_logits"], prof["large_logits"], prof["answers"], 1.0,
                         train=False)
    assert bare.backbone is None and (bare.contexts[:, 4:] == 0).all()
    assert len(run(bare, "linucb", 2)) == 60
    with pytest.raises(ValueError, match="needs the backbone"):
        make_agent("neural-linear-thompson", bare)
    with pytest.raises(ValueError, match="context_txt is missing"):
        fit_profiling(**{**prof, "txt": [None] + prof["txt"][1:]}, small_temperature=1.0, train=False)


@pytest.mark.parametrize("field, value", [("arrays", {"w1": 5}), ("hidden", 7), ("densities", 3),
                                          ("training", [1, 2])])
def test_a_card_field_of_the_wrong_form_is_one_line_not_a_traceback(tmp_path, field, value):
    """The SHA-256 covers the arrays, not the card: a hand-edited card field is refused in one line."""
    path = tmp_path / "bb.npz"
    save_backbone(small_backbone(), path)
    card = json.loads(path.with_suffix(".json").read_text())
    card[field] = value if field != "arrays" else {**card["arrays"], **value}
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(TestbedError) as exc:
        load_backbone(path)
    assert "bb." in one_line(exc, "bb.")


def test_without_torch_the_backbone_trains_in_numpy_as_torch_does(problem, monkeypatch):
    """A sim-only install (no torch) trains the same net with the numpy trainer: same initial weights and
    batches, hand-written gradients and torch's Adam; after 20 epochs its predictions stay within float32
    noise of torch autograd's, and it says which trainer made it."""
    import builtins

    torch_fit = train_backbone(*problem["triples"], D, seed=3, epochs=20)
    real_import = builtins.__import__

    def no_torch(name, *args, **kw):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch here")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    numpy_fit = train_backbone(*problem["triples"], D, seed=3, epochs=20)
    monkeypatch.undo()
    assert numpy_fit.info["trainer"] == "numpy" and "trainer" not in torch_fit.info
    c = problem["contexts"]
    np.testing.assert_allclose(numpy_fit.predict(c), torch_fit.predict(c), atol=2e-3)
    assert abs(numpy_fit.info["final_epoch_bce"] - torch_fit.info["final_epoch_bce"]) < 1e-3
