"""Gate judgement on hand-made work: a one-class model can never pass a classifier gate.

The expensive work of each gate is replaced by fixed predictions (monkeypatching the work
functions), so these tests exercise exactly the judging logic of moola.gates.chain.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from moola.config import load_config
from moola.gates import chain, ensemble_work, work
from moola.gates.context import GateContext

CLASSES = ["consolidation", "retracement"]
# 30 validation windows, 17/13, like the smoke split
Y_VAL = np.array([0] * 17 + [1] * 13)


def _good_pred() -> np.ndarray:
    p = Y_VAL.copy()
    p[:2] = 1  # two mistakes: a skilful model
    return p


def _one_class_pred() -> np.ndarray:
    return np.zeros_like(Y_VAL)


def _proba(pred: np.ndarray) -> np.ndarray:
    p = np.full((len(pred), 2), 0.2)
    p[np.arange(len(pred)), pred] = 0.8
    return p


def _classifier_work(pred: np.ndarray, **extra) -> dict:
    return {"y_val": Y_VAL, "val_pred": pred, "val_proba": _proba(pred), "history":
            [{"train_loss": 0.7}, {"train_loss": 0.3}], "train_loss_first": 0.7,
            "train_loss_last": 0.3, "epochs_run": 2, "best_epoch": 1,
            "stopped_reason": "max_epochs=2 reached", "model": "fake",
            "artifact": {"key": "k"}, **extra}


@pytest.fixture
def ctx(tmp_path: Path) -> GateContext:
    c = GateContext(cfg=load_config("smoke"), run_id="test", root=tmp_path)
    c.__dict__["dataset"] = SimpleNamespace(classes=CLASSES, fingerprint="f")
    return c


LOAD_OK = {"ok": True, "loaded": 8, "total": 8, "ratio": 1.0}
PSEUDO_OK = {"n_generated": 10, "n_accepted": 8, "rejected": {"quality": 2},
             "ks_pvalues": {"close": 0.5}, "quality_min_accepted": 0.9}


def _patch(monkeypatch, baseline, finetuned, augmented=None, simple=None):
    monkeypatch.setattr(work, "baseline", lambda ctx: baseline)
    monkeypatch.setattr(work, "finetuned", lambda ctx: finetuned)
    if augmented is not None:
        monkeypatch.setattr(work, "augmented", lambda ctx: augmented)
    if simple is not None:
        monkeypatch.setattr(work, "simple", lambda ctx: simple)


def test_gate_1_fails_one_class_model_and_names_majority_baseline(ctx, monkeypatch):
    _patch(monkeypatch, _classifier_work(_one_class_pred()), None)
    v = chain.gate_1_smoke_enhanced(ctx)
    assert v.status == "failed"
    assert "predicts essentially one class" in v.reason
    assert "majority-class baseline" in v.reason
    assert v.metrics["degenerate"] is True
    assert v.metrics["predicted_distribution"] == {"consolidation": 30, "retracement": 0}


def test_gate_1_passes_skilful_model(ctx, monkeypatch):
    _patch(monkeypatch, _classifier_work(_good_pred()), None)
    v = chain.gate_1_smoke_enhanced(ctx)
    assert v.status == "passed", v.reason
    for key in ("macro_f1", "majority_baseline", "predicted_distribution", "ci"):
        assert key in v.metrics


def test_gate_4_cannot_pass_one_class_model_even_with_positive_delta(ctx, monkeypatch):
    # baseline is even worse (all wrong on class 0) so the delta is positive
    bad_base = np.ones_like(Y_VAL)
    _patch(monkeypatch, _classifier_work(bad_base),
           _classifier_work(_one_class_pred(), load_report=LOAD_OK))
    v = chain.gate_4_finetune_enhanced(ctx)
    assert v.comparison["delta"] > 0
    assert v.status == "failed"
    assert "one class" in v.reason


def test_gate_4_fails_incomplete_encoder_load(ctx, monkeypatch):
    lr = {"ok": False, "loaded": 8, "total": 16, "ratio": 0.5, "message": "layer 1 missing"}
    _patch(monkeypatch, _classifier_work(_one_class_pred()),
           _classifier_work(_good_pred(), load_report=lr))
    v = chain.gate_4_finetune_enhanced(ctx)
    assert v.status == "failed"
    assert "8/16" in v.reason


def test_gate_5_cannot_pass_one_class_model(ctx, monkeypatch):
    one = _classifier_work(_one_class_pred(), pseudo=PSEUDO_OK)
    _patch(monkeypatch, None, _classifier_work(_one_class_pred(), load_report=LOAD_OK), one)
    v = chain.gate_5_augment(ctx)
    assert v.comparison["drop_pp"] == 0  # no drop versus gate 4: the old tool passed this
    assert v.status == "failed"
    assert "one class" in v.reason


def test_gate_6_warns_when_simple_model_matches(ctx, monkeypatch):
    simple = _classifier_work(_good_pred(), param_devices=["cpu"], device="cpu")
    _patch(monkeypatch, None, _classifier_work(_good_pred(), load_report=LOAD_OK), None, simple)
    v = chain.gate_6_baseline_simplelstm(ctx)
    assert v.status == "warning" and v.passed
    assert "matches or beats" in v.reason


def test_gate_6_fails_parameters_off_device(ctx, monkeypatch):
    simple = _classifier_work(_good_pred(), param_devices=["cpu", "cuda"], device="cuda")
    _patch(monkeypatch, None, _classifier_work(_good_pred(), load_report=LOAD_OK), None, simple)
    v = chain.gate_6_baseline_simplelstm(ctx)
    assert v.status == "failed"
    assert "off-device" in v.reason


def test_gate_7_cannot_pass_one_class_ensemble(ctx, monkeypatch):
    one = _proba(_one_class_pred())
    fake = {"y_val": Y_VAL, "artifact": {"key": "e"},
            "members": {n: {"raw": one, "calibrated": one, "oof": one}
                        for n in ("baseline", "finetuned")}}
    monkeypatch.setattr(ensemble_work, "ensemble", lambda ctx, approved: fake)
    v = chain.gate_7_ensemble(ctx, {})
    assert v.status == "failed"
    assert "one class" in v.reason
    assert set(v.metrics["ece"]) == {"baseline", "finetuned", "ensemble"}


def test_thresholds_come_from_configuration(ctx, monkeypatch):
    _patch(monkeypatch, _classifier_work(_good_pred()),
           _classifier_work(_good_pred(), load_report=LOAD_OK))
    ctx.cfg = ctx.cfg.replace("gates", min_delta=0.0)
    assert chain.gate_4_finetune_enhanced(ctx).status == "failed"  # delta 0 is not > 0
    ctx.cfg = ctx.cfg.replace("gates", min_delta=-0.01)
    v = chain.gate_4_finetune_enhanced(ctx)
    assert v.status == "passed", v.reason
    assert v.config["gates"]["min_delta"] == -0.01  # the config is echoed into the verdict


def test_gate_5_drop_fails_only_when_significant(ctx, monkeypatch):
    fine = _classifier_work(_good_pred(), load_report=LOAD_OK)
    noisy = _good_pred()
    noisy[20] = 0  # one more mistake: a drop of a few pp, within noise
    _patch(monkeypatch, None, fine, _classifier_work(noisy, pseudo=PSEUDO_OK))
    v = chain.gate_5_augment(ctx)
    assert v.comparison["drop_pp"] > ctx.cfg.gates.max_drop_pp
    assert v.status == "warning" and "within noise" in v.reason
    bad = _good_pred()
    bad[17:24] = 0  # seven retracements missed: a real, significant drop
    _patch(monkeypatch, None, fine, _classifier_work(bad, pseudo=PSEUDO_OK))
    v = chain.gate_5_augment(ctx)
    assert v.status == "failed" and "significant" in v.reason
