"""The calibrated synthetic workload reproduces the seed-000 figures its parameters cite."""

import numpy as np
import pytest

from testbed.router.calibration import fit_calibration
from testbed.query import DENSITIES
from testbed.router.calibration import confidence, ece
from testbed.tokenizer.sampling import DEFAULT_SAMPLER, KEYFRAME_SAMPLER, sample_indices
from testbed.traces import read_trace, table_to_workload, to_table, write_trace
from testbed.workload.synthetic import BENCHMARKS, synthetic_workload


@pytest.fixture(scope="module")
def workload():
    frame, prov, params = synthetic_workload(("mvbench", "videomme", "mlvu"), 1500, 11)
    return table_to_workload(to_table(frame, prov, params))


def _bench(wl, name, split=None):
    return [r for r in wl.records if r.query.benchmark == name and (split is None or r.split == split)]


def _acc(records, logits_of):
    return np.mean([int(np.argmax(logits_of(r))) == r.answer for r in records]) * 100


def test_labelled_synthetic(workload):
    assert workload.synthetic and workload.provenance == "synthetic:calibrated-seed000:11"
    assert all(r.query.question.startswith("[synthetic]") for r in workload.records)
    assert "sources" in workload.parameters["benchmarks"]["mvbench"]


def _both(acc_a: float, acc_b: float, rho: float) -> tuple[float, float]:
    """P(both correct), P(both wrong) for two models whose scores are standard normals with
    correlation rho, each correct on the lowest acc share of scores (a Gaussian copula)."""
    from scipy.stats import multivariate_normal, norm

    za, zb = norm.ppf(acc_a), norm.ppf(acc_b)
    cov = [[1.0, rho], [rho, 1.0]]
    return (float(multivariate_normal.cdf([za, zb], cov=cov)), float(multivariate_normal.cdf([-za, -zb], cov=cov)))


@pytest.mark.parametrize("name", ["mvbench", "videomme", "mlvu"])
def test_small_and_native_large_agree_as_the_latent_model_predicts(workload, name):
    """Agreement of the small and the native large model's answers against its closed form: both
    correct, or both wrong on the same option. A wrong model picks the query's shared wrong option
    with probability f = same_wrong + (1 - same_wrong) / (k - 1), else one of the other k - 2, so
    two wrong models agree with probability f^2 + (1 - f)^2 / (k - 2)."""
    spec = BENCHMARKS[name]
    rs = _bench(workload, name)
    got = np.mean([np.argmax(r.small_logits) == np.argmax(r.large_native_logits) for r in rs])
    both_right, both_wrong = _both(spec.acc_small, spec.acc_large_native, spec.rho)

    def agree_wrong(k: int) -> float:
        f = spec.same_wrong + (1 - spec.same_wrong) / (k - 1)
        return f * f + (1 - f) ** 2 / (k - 2)

    same = sum(w * agree_wrong(k) for k, w in zip(spec.options, spec.option_weights))
    assert got == pytest.approx(both_right + both_wrong * same, abs=0.035)  # ~3 sd at n = 1500


@pytest.mark.parametrize("name", ["mvbench", "mlvu"])
def test_density_variants_share_errors_as_the_latent_model_predicts(workload, name):
    """The shared-encoder variants at two densities share a hybrid factor (weight 0.8 of their own
    noise), so their scores correlate rho + (1 - rho) * 0.8: the joint correctness follows."""
    spec = BENCHMARKS[name]
    rs = _bench(workload, name)
    a8, a16 = spec.acc_large[DENSITIES.index(8)], spec.acc_large[DENSITIES.index(16)]
    got = np.mean([(np.argmax(r.large_logits[8]) == r.answer) and (np.argmax(r.large_logits[16]) == r.answer)
                   for r in rs])
    both_right, _ = _both(a8, a16, spec.rho + (1 - spec.rho) * 0.8)
    assert got == pytest.approx(both_right, abs=0.035)


@pytest.mark.parametrize("name", ["mvbench", "videomme"])
def test_small_and_large_agree_on_60_to_76_percent(workload, name):
    rs = _bench(workload, name)
    agree = np.mean([np.argmax(r.small_logits) == np.argmax(r.large_native_logits) for r in rs])
    assert 0.60 <= agree <= 0.76


def test_temperature_14_corrects_small_model_overconfidence():
    frame, prov, params = synthetic_workload(("mvbench",), 6000, 5)
    wl = table_to_workload(to_table(frame, prov, params))
    cal = fit_calibration(wl.split("profile"))
    assert cal.small_t == pytest.approx(1.4, abs=0.1)
    test = wl.split("test")
    logits = np.array([r.small_logits for r in test if len(r.small_logits) == 4])
    ok = np.array([np.argmax(r.small_logits) == r.answer for r in test if len(r.small_logits) == 4])
    raw, cal_ece = ece(confidence(logits), ok), ece(confidence(logits, cal.small_t), ok)
    assert np.mean(confidence(logits)) > ok.mean() + 0.03  # overconfident before
    assert 0.65 <= 1 - cal_ece / raw <= 0.90  # Fig. 7: ECE down about 77%


def test_durations_options_and_sizes(workload):
    mv = _bench(workload, "mvbench")
    d = np.array([r.query.media.duration_s for r in mv])
    assert d.max() <= 35 and np.mean(d < 5) == pytest.approx(0.20, abs=0.04)
    short = [r for r in mv if r.query.media.duration_s < 5]
    assert np.mean([r.query.media.file_bytes < 821 * 1024 for r in short]) > 0.9
    assert {len(r.query.options) for r in mv} <= {3, 4, 5}
    vm = _bench(workload, "videomme")
    dv = np.array([r.query.media.duration_s for r in vm])
    assert dv.min() >= 11 and dv.max() <= 3600 and {len(r.query.options) for r in vm} == {4}
    upload_s = np.mean([r.query.media.file_bytes for r in vm]) * 8 / (59e6 / 1.055)
    assert upload_s == pytest.approx(15, rel=0.15)  # SI: ~15 s to upload at 59 Mbit/s
    ml = _bench(workload, "mlvu")
    dm = np.array([r.query.media.duration_s for r in ml])
    assert dm.min() >= 187 and dm.max() <= 8206 and {len(r.query.options) for r in ml} == {6}


def test_keyframe_sampling_cuts_median_frames_486_to_124(workload):
    vm = _bench(workload, "videomme")

    def frames(r, s):
        v = r.query.media
        return len(sample_indices(v.n_frames, v.fps, v.keyframe_array, s))

    assert np.median([frames(r, DEFAULT_SAMPLER) for r in vm]) == pytest.approx(486, rel=0.10)
    assert np.median([frames(r, KEYFRAME_SAMPLER) for r in vm]) == pytest.approx(124, rel=0.10)


def test_same_seed_same_workload_other_seed_differs():
    a = synthetic_workload(("mvbench",), 50, 1)[0]
    b = synthetic_workload(("mvbench",), 50, 1)[0]
    c = synthetic_workload(("mvbench",), 50, 2)[0]
    assert a.equals(b) and not a.equals(c)


def test_trace_round_trip(tmp_path):
    frame, prov, params = synthetic_workload(("mvbench",), 40, 3)
    write_trace(frame, tmp_path / "w.parquet", prov, params)
    wl = read_trace(tmp_path / "w.parquet")
    assert wl.provenance == prov and len(wl.records) == 40
    r0 = wl.records[0]
    assert r0.query.query_id == frame.query_id[0]
    np.testing.assert_allclose(r0.small_logits, np.asarray(frame.small_logits[0], dtype=np.float32))
    assert list(r0.query.media.keyframes) == list(frame.keyframes[0])
