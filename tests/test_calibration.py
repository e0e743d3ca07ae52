"""Temperature scaling and ECE against independent references."""

import json

import numpy as np
import pytest

from testbed.router.calibration import confidence, ece, fit_temperature, option_probs


def test_option_probs_ignore_padding():
    p = option_probs(np.array([[0.0, 0.0, np.nan]]))
    assert p.tolist() == [[0.5, 0.5, 0.0]]


def test_ece_hand_example():
    # bin (0.8, 0.9]: conf 0.85 x2, one right -> |0.5 - 0.85| * 2; bin (0.3, 0.4]: conf 0.35, right -> 0.65
    conf = np.array([0.85, 0.85, 0.35])
    correct = np.array([1, 0, 1])
    assert ece(conf, correct) == pytest.approx((2 * 0.35 + 0.65) / 3)


def test_fit_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(0)
    true_t = 1.7
    logits = rng.normal(0, 3, size=(20_000, 4))
    p = option_probs(logits, true_t)
    labels = np.array([rng.choice(4, p=row) for row in p])
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(true_t, rel=0.05)
    ok = logits.argmax(1) == labels
    assert ece(confidence(logits, t), ok) < 0.3 * ece(confidence(logits), ok)


def test_fit_calibration_reuses_the_temperatures_an_equal_fit_left_in_its_cache(tmp_path, monkeypatch):
    """A second fit on the same profiling split reads the first's temperatures (the very floats) from the
    cache instead of fitting; other logits fit anew; a damaged entry is refitted and replaced."""
    from testbed.router import calibration as cal
    from testbed.traces import table_to_workload, to_table
    from testbed.workload.synthetic import synthetic_workload

    def profiling(seed: int) -> list:
        return table_to_workload(to_table(*synthetic_workload(("mvbench",), 200, seed))).split("profile")

    records = profiling(3)
    want = cal.fit_calibration(records)
    assert cal.fit_calibration(records, tmp_path) == want  # fitted and cached
    (entry,) = tmp_path.glob("temperatures-*.json")
    fitted = []
    monkeypatch.setattr(cal, "fit_temperature", lambda z, y: fitted.append(1) or 1.5)
    assert cal.fit_calibration(records, tmp_path) == want and not fitted  # read, not fitted
    other = profiling(4)
    assert cal.fit_calibration(other, tmp_path) == cal.Calibration(1.5, 1.5) and len(fitted) == 2
    for damaged in ("{", {"format": "x", "small_t": 1.0, "large_t": 1.0},
                    {"format": cal.CACHE_FORMAT, "small_t": -1.0, "large_t": 1.0}):
        entry.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
        assert cal.fit_calibration(records, tmp_path) == cal.Calibration(1.5, 1.5)
    assert len(list(tmp_path.glob("temperatures-*.json"))) == 2 and not list(tmp_path.glob("*.tmp"))
