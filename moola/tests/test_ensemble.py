"""Gate-7 building blocks: isotonic calibration and averaging (cross-fitting:
test_probe_and_calibration.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from moola.ensemble import IsotonicCalibrator, average_proba


def _ece(y_true, proba, n_bins=10):
    """Top-label ECE; moola.metrics' version when it is importable, else this reference."""
    try:
        from moola.metrics import expected_calibration_error
    except ImportError:
        q = np.asarray(proba, dtype=float)
        conf, correct = q.max(axis=1), (q.argmax(axis=1) == np.asarray(y_true)).astype(float)
        bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
        return float(sum(abs(correct[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean()
                         for b in range(n_bins) if (bins == b).any()))
    return expected_calibration_error(y_true, proba, n_bins=n_bins)


def overconfident(n: int, seed: int, k: int = 2, temp: float = 4.0):
    """Labels drawn from softmax(z) and a classifier reporting softmax(temp * z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.0, size=(n, k))
    p_true = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in p_true])
    s = np.exp(temp * z)
    return s / s.sum(axis=1, keepdims=True), y



def test_calibration_lowers_ece_of_overconfident_classifier():
    oof, y_tr = overconfident(600, seed=0)
    val, y_val = overconfident(400, seed=1)
    cal = IsotonicCalibrator().fit(oof, y_tr)
    out = cal.transform(val)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert np.all((out >= 0) & (out <= 1))
    before, after = _ece(y_val, val), _ece(y_val, out)
    assert after < 0.6 * before, (before, after)


def test_calibration_matches_sklearn_and_round_trips_through_json():
    oof, y_tr = overconfident(200, seed=2, k=3)
    val, _ = overconfident(50, seed=3, k=3)
    cal = IsotonicCalibrator().fit(oof, y_tr)
    manual = np.stack([
        IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(oof[:, k], y_tr == k).predict(val[:, k])
        for k in range(3)
    ], axis=1)
    manual = manual / manual.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(cal.transform(val), manual, atol=1e-12)
    state = json.loads(json.dumps(cal.state_dict()))
    np.testing.assert_array_equal(IsotonicCalibrator.from_state_dict(state).transform(val), cal.transform(val))


def test_calibration_handles_a_missing_class_and_zero_rows():
    oof, _ = overconfident(60, seed=4, k=3)
    y_tr = np.r_[np.zeros(30, int), np.ones(30, int)]  # class 2 never seen
    cal = IsotonicCalibrator().fit(oof, y_tr)
    out = cal.transform(overconfident(20, seed=5, k=3)[0])
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    # every class mapped to 0 for this input: the row falls back to the uncalibrated proba
    zero = IsotonicCalibrator.from_state_dict(
        {"kind": "isotonic_ovr", "x_thresholds": [[0, 1]] * 2, "y_thresholds": [[0, 0]] * 2}
    )
    np.testing.assert_allclose(zero.transform(np.array([[0.3, 0.7]])), [[0.3, 0.7]])


def test_calibrator_refuses_validation_arrays():
    oof, y = overconfident(20, seed=6)
    with pytest.raises(ValueError, match="training"):
        IsotonicCalibrator().fit(oof, y, split="val")
    with pytest.raises(RuntimeError, match="fit"):
        IsotonicCalibrator().transform(oof)


def test_average_proba_weights_and_errors():
    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    b = np.array([[0.5, 0.5], [0.6, 0.4]])
    np.testing.assert_allclose(average_proba([a, b]), (a + b) / 2)
    np.testing.assert_allclose(average_proba([a, b], weights=[3, 1]), 0.75 * a + 0.25 * b)
    with pytest.raises(ValueError, match="different shapes"):
        average_proba([a, b[:1]])
    with pytest.raises(ValueError, match="weights"):
        average_proba([a, b], weights=[-1, 1])


