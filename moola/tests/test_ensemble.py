"""Gate-7 building blocks: OOF predictions, isotonic calibration, averaging, report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from moola.ensemble import (
    IsotonicCalibrator,
    average_proba,
    calibrate_and_report,
    ensemble_report,
    out_of_fold_proba,
)


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


# --- out-of-fold ----------------------------------------------------------------------------


def test_oof_covers_every_index_once_and_never_trains_on_it():
    X = np.arange(30, dtype=float)[:, None, None]
    y = np.r_[np.zeros(18, int), np.ones(12, int)]
    seen: list[np.ndarray] = []

    def fit_predict(X_tr, y_tr, X_te):
        te = X_te[:, 0, 0].astype(int)
        assert not set(te) & set(X_tr[:, 0, 0].astype(int)), "test windows leaked into training"
        seen.append(te)
        out = np.zeros((len(te), 2))
        out[:, 0] = te / 100.0  # encodes the window id
        out[:, 1] = 1 - out[:, 0]
        return out

    oof = out_of_fold_proba(fit_predict, X, y, n_splits=5, seed=0)
    idx = np.concatenate(seen)
    assert len(seen) == 5 and sorted(idx.tolist()) == list(range(30))
    np.testing.assert_allclose(oof[:, 0], np.arange(30) / 100.0)


def test_oof_reduces_splits_for_small_classes_and_refuses_singletons():
    X = np.zeros((13, 4, 1))
    y = np.r_[np.zeros(10, int), np.ones(3, int)]
    calls = []
    oof = out_of_fold_proba(lambda a, b, c: calls.append(1) or np.full((len(c), 2), 0.5), X, y, n_splits=5)
    assert len(calls) == 3 and np.isfinite(oof).all()
    with pytest.raises(ValueError, match="at least 2"):
        out_of_fold_proba(lambda a, b, c: np.full((len(c), 2), 0.5), X[:11], np.r_[np.zeros(10, int), 1])


def test_oof_rejects_wrong_proba_shape():
    X, y = np.zeros((10, 3, 1)), np.r_[np.zeros(5, int), np.ones(5, int)]
    with pytest.raises(ValueError, match="K=2"):
        out_of_fold_proba(lambda a, b, c: np.full((len(c), 3), 1 / 3), X, y, n_splits=2)


# --- isotonic calibration -------------------------------------------------------------------


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


def test_calibration_uses_only_training_data():
    oof_a, y_tr = overconfident(200, seed=7)
    oof_b, _ = overconfident(200, seed=8)
    val_a, y_val = overconfident(60, seed=9)
    val_b, _ = overconfident(60, seed=10)
    members = {"a": (oof_a, val_a), "b": (oof_b, val_b)}
    rep1, cals1 = calibrate_and_report(members, y_tr, y_val, ece_fn=_ece)
    rep2, cals2 = calibrate_and_report(members, y_tr, 1 - y_val, ece_fn=_ece)  # val labels changed
    for name in members:
        assert cals1[name].state_dict() == cals2[name].state_dict()
        np.testing.assert_array_equal(cals1[name].transform(members[name][1]),
                                      cals2[name].transform(members[name][1]))
    assert rep1["ensemble"]["macro_f1"] != rep2["ensemble"]["macro_f1"]  # only the scoring moved


# --- averaging and report -------------------------------------------------------------------


def test_average_proba_weights_and_errors():
    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    b = np.array([[0.5, 0.5], [0.6, 0.4]])
    np.testing.assert_allclose(average_proba([a, b]), (a + b) / 2)
    np.testing.assert_allclose(average_proba([a, b], weights=[3, 1]), 0.75 * a + 0.25 * b)
    with pytest.raises(ValueError, match="different shapes"):
        average_proba([a, b[:1]])
    with pytest.raises(ValueError, match="weights"):
        average_proba([a, b], weights=[-1, 1])


def test_ensemble_report_fields_best_member_and_drop():
    y = np.array([0, 0, 0, 1, 1, 1])
    perfect = np.eye(2)[y] * 0.8 + 0.1
    wrong = np.eye(2)[1 - y] * 0.98 + 0.01
    rep = ensemble_report({"good": (perfect, perfect), "bad": (wrong, wrong)}, y, max_drop_pp=1.0, ece_fn=_ece)
    assert rep["best_member"] == "good" and rep["best_member_macro_f1"] == pytest.approx(1.0)
    assert rep["members"]["bad"]["macro_f1_raw"] == pytest.approx(0.0)
    assert rep["drop_pp"] == pytest.approx(100.0 * (1.0 - rep["ensemble"]["macro_f1"]))
    assert rep["warn"] is True and rep["drop_pp"] > 1.0
    assert set(rep["members"]["good"]) == {"macro_f1_raw", "macro_f1_calibrated", "ece_raw", "ece_calibrated"}
    json.dumps(rep)
    solo = ensemble_report({"good": (perfect, perfect)}, y, max_drop_pp=1.0)  # moola.metrics ECE
    assert solo["drop_pp"] == pytest.approx(0.0) and solo["warn"] is False
    assert solo["ensemble"]["ece"] == pytest.approx(0.1)
