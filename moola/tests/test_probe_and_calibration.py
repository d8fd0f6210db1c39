"""Gate 3's probe baselines and gate 7's cross-fitted calibration, on real arrays."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from moola.config import load_config
from moola.ensemble import cross_fitted_calibration
from moola.gates import builtin, work
from moola.gates.context import GateContext
from moola.models.encoder import BiLSTMEncoder, EncoderConfig
from moola.pretrain import probe_baselines
from moola.protocol import walk_forward_folds
from moola.testing import judged



def _separable(n: int = 90, T: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows whose class is a ramp a linear model reads at once from the raw values."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    ramp = np.linspace(-1, 1, T)[None, :, None]
    X = rng.normal(0, 0.3, (n, T, 1)) + np.where(y[:, None, None] == 1, ramp, -ramp)
    return X.astype(np.float32), y.astype(np.int64)


def _zeroed_encoder(cfg: EncoderConfig) -> BiLSTMEncoder:
    """An 'encoder' that forgot everything: every weight 0, so every window encodes the same."""
    enc = BiLSTMEncoder(cfg)
    with torch.no_grad():
        for p in enc.parameters():
            p.zero_()
    return enc


@pytest.fixture
def probes():
    X, y = _separable()
    cfg = EncoderConfig(input_features=1, hidden=8, layers=1)
    folds = walk_forward_folds(np.arange(len(y)), 3)
    return probe_baselines(_zeroed_encoder(cfg), cfg, X, y, folds, "cpu", seed=0), folds


def test_probe_baselines_score_three_representations_on_the_same_windows(probes):
    out, folds = probes
    scored = np.concatenate([f.score_idx for f in folds])
    a = out["arrays"]
    assert np.array_equal(a["score_idx"], scored)
    assert {"encoder", "raw", "random_encoder"} <= set(a) and set(out["macro_f1"]) == {
        "encoder", "raw", "random_encoder"}
    for name in ("encoder", "raw", "random_encoder"):
        assert a[name].shape == scored.shape
    assert out["macro_f1"]["raw"] > 0.9  # the ramp is linear in the raw values
    assert out["macro_f1"]["random_encoder"] > 0.6  # random LSTM features: a real baseline
    assert len(np.unique(a["encoder"])) == 1  # the zeroed encoder carries nothing


def _ctx(tmp_path: Path) -> GateContext:
    ctx = GateContext(cfg=load_config("smoke"), run_id="t", root=tmp_path)
    ctx.__dict__["dataset"] = SimpleNamespace(classes=["a", "b"], fingerprint="f")
    return ctx


def _encoder_work(out: dict) -> dict:
    return {"reconstruction": {"mae_mse": 0.5, "interp_mse": 1.0, "ratio": 0.5,
                               "n_windows": 30}, "probe": {},
            "probe_predictions": out["arrays"], "epochs_run": 3, "stopped_reason": "done",
            "n_unlabeled": 100, "encoder_config": {}, "artifact": {"key": "e"}, "history": [],
            "encoder_path": "e.pt"}


def test_gate_3_fails_an_encoder_worse_than_the_raw_windows(tmp_path, monkeypatch, probes):
    out, _ = probes
    monkeypatch.setattr(work, "encoder", lambda ctx: _encoder_work(out))
    v = judged(_ctx(tmp_path), "gate_3_pretrain_bilstm")
    assert v.status == "failed"
    assert "significantly worse for a linear probe than the raw normalised windows" in v.reason
    assert set(v.metrics["probe_macro_f1"]) == {"encoder", "raw", "random_encoder"}
    assert v.comparison["vs_raw"]["delta_ci"][1] < 0


def test_gate_3_is_inconclusive_when_the_encoder_adds_nothing_over_a_random_one(
        tmp_path, monkeypatch, probes):
    out, _ = probes
    a = dict(out["arrays"])
    # a skilful probe, but exactly what a random encoder (and the raw windows) give
    a["encoder"], a["random_encoder"] = a["raw"].copy(), a["raw"].copy()
    monkeypatch.setattr(work, "encoder", lambda ctx: _encoder_work({"arrays": a}))
    v = judged(_ctx(tmp_path), "gate_3_pretrain_bilstm")
    assert v.status == "inconclusive", v.reason
    # identical predictions: the reason says so (not "could only detect about 0.00")
    assert "predict all" in v.reason and "identically" in v.reason, v.reason
    assert "could only detect" not in v.reason.split("; what the encoder adds")[0]


# ---------------------------------------------------------------------------------------------
# cross-fitted calibration
# ---------------------------------------------------------------------------------------------


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    right = rng.random(n) < 0.7
    pred = np.where(right, y, 1 - y)
    p = np.full((n, 2), 0.02)
    p[np.arange(n), pred] = 0.98
    return p, y


def test_a_folds_own_labels_never_shape_its_calibrated_probabilities():
    p, y = _overconfident(120, seed=1)
    groups = np.repeat(np.arange(4), 30)
    proba = np.stack([p, p[::-1]])  # two replicas
    cal = cross_fitted_calibration(proba, y, groups)
    y2 = y.copy()
    y2[groups == 2] = 1 - y2[groups == 2]
    cal2 = cross_fitted_calibration(proba, y2, groups)
    np.testing.assert_allclose(cal[:, groups == 2], cal2[:, groups == 2])
    assert not np.allclose(cal[:, groups != 2], cal2[:, groups != 2])  # the others do move
    np.testing.assert_allclose(cal.sum(axis=2), 1.0)


def test_cross_fitted_calibration_lowers_the_ece_of_an_overconfident_model():
    from moola.metrics import expected_calibration_error as ece

    p, y = _overconfident(400, seed=2)
    cal = cross_fitted_calibration(p[None], y, np.repeat(np.arange(4), 100))[0]
    assert ece(y, cal) < ece(y, p) / 2


def test_a_fold_whose_complement_is_one_class_keeps_its_raw_probabilities():
    p, _ = _overconfident(20, seed=3)
    y = np.array([0] * 10 + [1] * 10)
    groups = np.array([0] * 10 + [1] * 10)  # each fold's complement holds one class only
    np.testing.assert_allclose(cross_fitted_calibration(p[None], y, groups)[0], p)
