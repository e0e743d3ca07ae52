"""Temperature scaling and ECE against independent references."""

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
