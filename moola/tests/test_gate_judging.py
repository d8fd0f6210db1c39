"""Gate judgement on hand-made work: a one-class model can never pass a classifier gate.

The expensive work of each gate is replaced by fixed predictions (monkeypatching the work
functions), so these tests exercise exactly the judging logic of moola.gates.builtin.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from moola.config import load_config
from moola.gates import builtin, ensemble_work, work
from moola.gates.context import GateContext
from moola.gates.registry import REGISTRY
from moola.testing import judged

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


FOLD_OF = np.array([0] * 15 + [1] * 15)  # two walk-forward folds of 15 scored windows


def _classifier_work(pred: np.ndarray, pred2: np.ndarray | None = None, **extra) -> dict:
    """What a replicated work function returns: 2 seeds x 30 pooled windows."""
    preds = np.stack([pred, pred if pred2 is None else pred2])
    replicas = [{"replica": f"seed{s}_fold{f}", "seed": s, "fold": f, "train_loss_first": 0.7,
                 "train_loss_last": 0.3, "best_epoch": 1, "epochs_run": 2,
                 "stopped_reason": "max_epochs=2 reached", "n_fit": 20, "n_stop": 5,
                 "n_scored": 15, "train_acc": 0.9, "param_devices": extra.pop("param_devices", ["cpu"]),
                 **({"pseudo": extra["pseudo"]} if "pseudo" in extra else {})}
                for s in (17, 1017) for f in (0, 1)]
    return {"y": Y_VAL, "pred": preds, "proba": np.stack([_proba(p) for p in preds]),
            "fold_of": FOLD_OF, "score_idx": np.arange(30), "seeds": np.array([17, 1017]),
            "test_idx": np.zeros(0, np.int64), "replicas": replicas, "model": "fake",
            "artifact": {"key": "k"}, **extra}


@pytest.fixture
def ctx(tmp_path: Path) -> GateContext:
    c = GateContext(cfg=load_config("smoke"), run_id="test", root=tmp_path)
    c.__dict__["dataset"] = SimpleNamespace(classes=CLASSES, fingerprint="f")
    return c


LOAD_OK = {"ok": True, "loaded": 8, "total": 8, "ratio": 1.0}
PSEUDO_OK = {"n_generated": 10, "n_accepted": 8, "rejected": {"quality": 2},
             "ks_pvalues": {"close": 0.5}, "quality_min_accepted": 0.9}


def _patch(monkeypatch, baseline, finetuned, augmented=None, simple=None, random_init=None):
    monkeypatch.setattr(work, "baseline", lambda ctx: baseline)
    monkeypatch.setattr(work, "finetuned", lambda ctx: finetuned)
    # gate 4's random-encoder control: the baseline's predictions unless a test says otherwise
    monkeypatch.setattr(work, "random_init", lambda ctx: random_init or baseline)
    if augmented is not None:
        monkeypatch.setattr(work, "augmented", lambda ctx: augmented)
    if simple is not None:
        monkeypatch.setattr(work, "simple", lambda ctx: simple)


def test_gate_1_fails_one_class_model_and_names_majority_baseline(ctx, monkeypatch):
    _patch(monkeypatch, _classifier_work(_one_class_pred()), None)
    v = judged(ctx, "gate_1_smoke_enhanced")
    assert v.status == "failed"
    assert "predicts essentially one class" in v.reason
    assert "majority-class baseline" in v.reason
    assert v.metrics["degenerate"] is True
    # pooled over 2 seeds x 30 windows
    assert v.metrics["predicted_distribution"] == {"consolidation": 60, "retracement": 0}


def test_gate_1_passes_skilful_model(ctx, monkeypatch):
    _patch(monkeypatch, _classifier_work(_good_pred()), None)
    v = judged(ctx, "gate_1_smoke_enhanced")
    assert v.status == "passed", v.reason
    for key in ("macro_f1", "majority_baseline", "predicted_distribution", "ci", "seed_spread"):
        assert key in v.metrics
    assert v.metrics["n"] == 30 and v.metrics["n_replicas"] == 2


def test_gate_1_says_when_the_outcome_differs_across_seeds(ctx, monkeypatch):
    coin = np.array([0, 1] * 15)  # right on half the windows: no skill at this seed
    _patch(monkeypatch, _classifier_work(_good_pred(), coin), None)
    v = judged(ctx, "gate_1_smoke_enhanced")
    assert "differs across seeds" in v.reason and "pass at seeds 17 and fail at seeds 1017" in v.reason, v.reason


def test_gate_4_cannot_pass_one_class_model_even_with_positive_delta(ctx, monkeypatch):
    # baseline is even worse (all wrong on class 0) so the delta is positive
    bad_base = np.ones_like(Y_VAL)
    _patch(monkeypatch, _classifier_work(bad_base),
           _classifier_work(_one_class_pred(), load_report=LOAD_OK))
    v = judged(ctx, "gate_4_finetune_enhanced")
    assert v.comparison["delta"] > 0
    assert v.status == "failed"
    assert "one class" in v.reason


def test_gate_4_fails_incomplete_encoder_load(ctx, monkeypatch):
    lr = {"ok": False, "loaded": 8, "total": 16, "ratio": 0.5, "message": "layer 1 missing"}
    _patch(monkeypatch, _classifier_work(_one_class_pred()),
           _classifier_work(_good_pred(), load_report=lr))
    v = judged(ctx, "gate_4_finetune_enhanced")
    assert v.status == "failed"
    assert "8/16" in v.reason


def test_gate_5_cannot_pass_one_class_model(ctx, monkeypatch):
    one = _classifier_work(_one_class_pred(), pseudo=PSEUDO_OK)
    _patch(monkeypatch, None, _classifier_work(_one_class_pred(), load_report=LOAD_OK), one)
    v = judged(ctx, "gate_5_augment")
    assert v.comparison["drop_pp"] == 0  # no drop versus gate 4: the old tool passed this
    assert v.status == "failed"
    assert "one class" in v.reason


def test_gate_6_is_inconclusive_when_simple_model_matches(ctx, monkeypatch):
    simple = _classifier_work(_good_pred(), param_devices=["cpu"], device="cpu")
    _patch(monkeypatch, None, _classifier_work(_good_pred(), load_report=LOAD_OK), None, simple)
    v = judged(ctx, "gate_6_baseline_simplelstm")
    assert v.status == "inconclusive" and v.passed
    assert "predict all 30 scored windows identically" in v.reason  # no evidence either way
    near = _good_pred()
    near[20] = 0  # one window apart: a difference too small for 30 windows
    _patch(monkeypatch, None, _classifier_work(near, load_report=LOAD_OK), None, simple)
    v = judged(ctx, "gate_6_baseline_simplelstm")
    assert v.status == "inconclusive" and "could only detect" in v.reason, v.reason


def test_gate_6_warns_when_simple_model_is_significantly_better(ctx, monkeypatch):
    simple = _classifier_work(Y_VAL.copy(), param_devices=["cpu"], device="cpu")
    worse = Y_VAL.copy()
    worse[17:27] = 0  # ten retracements missed
    _patch(monkeypatch, None, _classifier_work(worse, load_report=LOAD_OK), None, simple)
    v = judged(ctx, "gate_6_baseline_simplelstm")
    assert v.status == "warning" and "significantly better" in v.reason, v.reason
    ctx.cfg = ctx.cfg.replace("gates", simple_policy="fail")
    assert judged(ctx, "gate_6_baseline_simplelstm").status == "failed"


def test_gate_6_fails_parameters_off_device(ctx, monkeypatch):
    simple = _classifier_work(_good_pred(), param_devices=["cpu", "cuda"], device="cuda")
    _patch(monkeypatch, None, _classifier_work(_good_pred(), load_report=LOAD_OK), None, simple)
    v = judged(ctx, "gate_6_baseline_simplelstm")
    assert v.status == "failed"
    assert "off-device" in v.reason


def _ensemble_work(members: dict[str, np.ndarray]) -> dict:
    return {"y": Y_VAL, "fold_of": FOLD_OF, "artifact": {"key": "e"},
            "members": {n: {"raw": p, "calibrated": p} for n, p in members.items()},
            "seeds": np.array([17, 1017])}


def test_gate_7_fails_when_every_member_is_one_class(ctx, monkeypatch):
    one = np.stack([_proba(_one_class_pred())] * 2)
    fake = _ensemble_work({"baseline": one, "finetuned": one})
    monkeypatch.setattr(ensemble_work, "calibrated_members", lambda ctx, approved, gate: fake)
    v = judged(ctx, "gate_7_ensemble", {})
    assert v.status == "failed"
    assert "no member remains" in v.reason and "one class" in v.reason
    assert set(v.metrics["excluded"]) == {"baseline", "finetuned"}


def test_gate_7_leaves_a_degenerate_member_out_with_the_reason(ctx, monkeypatch):
    good = np.stack([_proba(_good_pred())] * 2)
    one = np.stack([_proba(_one_class_pred())] * 2)
    fake = _ensemble_work({"baseline": one, "finetuned": good, "simple": good})
    monkeypatch.setattr(ensemble_work, "calibrated_members", lambda ctx, approved, gate: fake)
    v = judged(ctx, "gate_7_ensemble", {})
    assert v.passed, v.reason
    assert set(v.metrics["members_macro_f1"]) == {"finetuned", "simple"}
    assert "left out of the ensemble" in v.reason and "'baseline'" in v.reason
    assert set(v.metrics["ece"]) == {"baseline", "finetuned", "simple", "ensemble"}


def test_thresholds_come_from_configuration(ctx, monkeypatch):
    _patch(monkeypatch, _classifier_work(_good_pred()),
           _classifier_work(_good_pred(), load_report=LOAD_OK))
    ctx.cfg = ctx.cfg.replace("gates", min_delta=0.0)
    # identical predictions: delta 0 with a CI of [0, 0], not above 0, not below -max_harm
    assert judged(ctx, "gate_4_finetune_enhanced").status == "inconclusive"
    ctx.cfg = ctx.cfg.replace("gates", min_delta=-0.01)
    v = judged(ctx, "gate_4_finetune_enhanced")
    assert v.status == "passed", v.reason
    assert v.config["gates"]["min_delta"] == -0.01  # the config is echoed into the verdict


def test_gate_4_three_outcomes(ctx, monkeypatch):
    worse = Y_VAL.copy()
    worse[17:27] = 0  # ten retracements missed by the baseline
    _patch(monkeypatch, _classifier_work(worse), _classifier_work(Y_VAL.copy(), load_report=LOAD_OK))
    v = judged(ctx, "gate_4_finetune_enhanced")
    assert v.status == "passed" and "pretraining helps, significantly" in v.reason, v.reason
    _patch(monkeypatch, _classifier_work(Y_VAL.copy()), _classifier_work(worse, load_report=LOAD_OK))
    ctx.cfg = ctx.cfg.replace("gates", max_harm=0.0)
    v = judged(ctx, "gate_4_finetune_enhanced")
    assert v.status == "failed" and "pretraining hurts" in v.reason, v.reason
    noisy = Y_VAL.copy()
    noisy[20] = 0  # one window apart: the data cannot tell
    _patch(monkeypatch, _classifier_work(Y_VAL.copy()), _classifier_work(noisy, load_report=LOAD_OK))
    v = judged(ctx, "gate_4_finetune_enhanced")
    assert v.status == "inconclusive" and "could only detect" in v.reason, v.reason
    assert v.comparison["detectable"] > 0


def test_gate_5_drop_fails_only_when_significant(ctx, monkeypatch):
    fine = _classifier_work(_good_pred(), load_report=LOAD_OK)
    noisy = _good_pred()
    noisy[20] = 0  # one more mistake: a drop of a few pp, within noise
    _patch(monkeypatch, None, fine, _classifier_work(noisy, pseudo=PSEUDO_OK))
    v = judged(ctx, "gate_5_augment")
    assert v.comparison["drop_pp"] > ctx.cfg.gates.max_drop_pp
    assert v.status == "inconclusive" and "could only detect" in v.reason
    bad = _good_pred()
    bad[17:24] = 0  # seven retracements missed: a real, significant drop
    _patch(monkeypatch, None, fine, _classifier_work(bad, pseudo=PSEUDO_OK))
    v = judged(ctx, "gate_5_augment")
    assert v.status == "failed" and "significant" in v.reason


def test_a_comparison_says_when_one_seed_would_decide_otherwise(ctx, monkeypatch):
    worse = Y_VAL.copy()
    worse[17:27] = 0  # the baseline misses ten retracements at both seeds
    # seed 17 of the finetuned model is perfect (helps); seed 1017 is as bad as the baseline
    _patch(monkeypatch, _classifier_work(worse),
           _classifier_work(Y_VAL.copy(), worse, load_report=LOAD_OK))
    v = judged(ctx, "gate_4_finetune_enhanced")
    assert v.comparison["pretraining"]["per_seed_outcome"] == {17: "passed", 1017: "inconclusive"}
    assert "differs across seeds" in v.reason, v.reason


# ---------------------------------------------------------------------------------------------
# the earlier scripts' record fields: their jq recipes give numbers
# ---------------------------------------------------------------------------------------------


def _encoder_work(pred: np.ndarray) -> dict:
    """What work.encoder returns: a reconstruction report and the three probes' predictions."""
    return {"reconstruction": {"mae_mse": 0.5, "interp_mse": 1.0, "ratio": 0.5, "n_windows": 30},
            "probe_predictions": {"y": Y_VAL, "encoder": pred, "raw": pred,
                                  "random_encoder": _one_class_pred()},
            "probe": {}, "epochs_run": 2, "stopped_reason": "max_epochs", "n_unlabeled": 60,
            "encoder_config": {}, "artifact": {"key": "enc"}, "history": [],
            "encoder_path": "enc.pt"}


def _recon(ratios: list[float]) -> dict:
    """A reconstruction report whose windows' MAE errors are `ratios` x interpolation's."""
    interp = np.linspace(1.0, 2.0, len(ratios))
    mae = interp * np.asarray(ratios)
    return {"mae_mse": mae.sum() / 100, "interp_mse": interp.sum() / 100,
            "ratio": mae.sum() / interp.sum(), "n_windows": len(ratios),
            "per_window": {"mae_sq": mae.tolist(), "interp_sq": interp.tolist()}}


@pytest.mark.parametrize("policy,status", [("fail", "failed"), ("warn", "warning")])
def test_a_reconstruction_significantly_not_better_than_interpolation_follows_its_policy(
        ctx, monkeypatch, policy, status):
    enc = _encoder_work(_good_pred())
    # (its random encoder predicts one class: nothing else makes the verdict inconclusive)
    monkeypatch.setattr(work, "encoder", lambda ctx: enc)
    ctx.cfg = ctx.cfg.replace("gates", recon_margin=0.0, recon_policy=policy)
    enc["reconstruction"] = _recon([1.01, 1.02, 1.03] * 10)  # worse on every window
    v = judged(ctx, "gate_3_pretrain_bilstm")
    assert v.status == status, v.reason
    assert "does not beat interpolation" in v.reason and f"policy '{policy}'" in v.reason
    assert "30 held-out windows that chose no epoch" in v.reason
    lo, hi = v.metrics["reconstruction"]["ratio_ci"]
    assert 1.0 < lo < hi < 1.04 and "per_window" not in v.metrics["reconstruction"]
    # better on every window: the check passes
    enc["reconstruction"] = _recon([0.97, 0.98, 0.99] * 10)
    assert judged(ctx, "gate_3_pretrain_bilstm").status == "passed"


def test_a_reconstruction_the_windows_cannot_tell_from_interpolation_is_inconclusive(
        ctx, monkeypatch):
    enc = _encoder_work(_good_pred())
    monkeypatch.setattr(work, "encoder", lambda ctx: enc)
    ctx.cfg = ctx.cfg.replace("gates", recon_margin=0.01, recon_policy="fail")
    enc["reconstruction"] = _recon([0.7, 1.3, 0.8, 1.25, 0.9, 1.1, 0.95, 1.05])  # 8 windows
    v = judged(ctx, "gate_3_pretrain_bilstm")
    assert v.status == "inconclusive", v.reason
    assert "whether the reconstruction beats interpolation by 1%" in v.reason
    lo, hi = v.metrics["reconstruction"]["ratio_ci"]
    assert lo < 0.99 < hi


def _verdicts_of_every_gate(ctx, monkeypatch) -> list:
    good = _classifier_work(_good_pred())
    control = {"y": Y_VAL, "pred": _good_pred()[None], "proba": _proba(_good_pred())[None],
               "score_idx": np.arange(30), "seeds": np.array([17]), "train_acc": [0.8, 1.0],
               "artifact": {"key": "c"}}
    _patch(monkeypatch, good, _classifier_work(_good_pred(), load_report=LOAD_OK),
           _classifier_work(_good_pred(), pseudo=PSEUDO_OK),
           _classifier_work(_good_pred(), device="cpu"))
    monkeypatch.setattr(work, "control", lambda ctx: control)
    monkeypatch.setattr(work, "encoder", lambda ctx: _encoder_work(_good_pred()))
    p = np.stack([_proba(_good_pred())] * 2)
    monkeypatch.setattr(ensemble_work, "calibrated_members",
                        lambda ctx, approved, gate: _ensemble_work({"finetuned": p, "simple": p}))
    return [judged(ctx, name) for name in REGISTRY.chain()
            if name not in ("gate_0_env", "decision")]


def test_classifier_records_carry_the_scripts_fields_and_their_jq_recipes_give_numbers(
        ctx, monkeypatch):
    import shutil
    import subprocess

    from moola.report.records import records_from_json_report
    from moola.report.results import append_records, read_records, results_path

    verdicts = {v.gate: v for v in _verdicts_of_every_gate(ctx, monkeypatch)}
    # two mistakes in 30 windows, both seeds: pooled accuracy 28/30, macro-F1 of that table
    f1 = 2 * 15 / (2 * 15 + 2) / 2 + 2 * 13 / (2 * 13 + 2) / 2
    for gate in ("gate_1_smoke_enhanced", "gate_4_finetune_enhanced", "gate_5_augment",
                 "gate_6_baseline_simplelstm"):
        m = verdicts[gate].metrics
        assert m["val_f1"] == pytest.approx(f1) and m["val_f1"] == m["macro_f1"], gate
        assert m["val_acc"] == pytest.approx(28 / 30), gate
        assert m["train_acc"] == pytest.approx(0.9), gate  # the replicas' mean
    assert verdicts["gate_2_control_minirocket"].metrics["train_acc"] == pytest.approx(0.9)
    assert verdicts["gate_7_ensemble"].metrics["val_f1"] == pytest.approx(f1)
    assert "train_acc" not in verdicts["gate_7_ensemble"].metrics  # no training rows of its own
    assert not {"val_f1", "val_acc", "train_acc"} & set(verdicts["gate_3_pretrain_bilstm"].metrics)

    # the results log as a run writes it: gate 0 (no classifier) and every verdict above
    tests = [{"nodeid": "test_gate_0_env.py::test_env", "outcome": "passed",
              "metadata": {"gate": "gate_0_env"}}]
    tests += [{"nodeid": f"{g}.py::t", "outcome": "passed",
               "metadata": {"gate": g, "verdict": v.to_dict()}} for g, v in verdicts.items()]
    path = results_path(ctx.root / "reports")
    append_records(path, records_from_json_report({"tests": tests}, ctx))
    recs = read_records(path)
    assert {r["gate"]: "val_f1" in r["metrics"] for r in recs} == {
        "gate_0_env": False, "gate_1_smoke_enhanced": True, "gate_2_control_minirocket": True,
        "gate_3_pretrain_bilstm": False, "gate_4_finetune_enhanced": True, "gate_5_augment": True,
        "gate_6_baseline_simplelstm": True, "gate_7_ensemble": True}
    if shutil.which("jq") is None:
        return  # the records themselves are checked above; jq is not a dependency of moola

    def jq(*args: str) -> str:
        return subprocess.run(["jq", *args, str(path)], capture_output=True, text=True,
                              check=True).stdout

    pairs = [json.loads(line)
             for line in jq("-c", "{gate: .gate, f1: .metrics.val_f1}").splitlines()]
    assert [p["gate"] for p in pairs] == [g for g in REGISTRY.chain() if g != "decision"]
    assert all(isinstance(p["f1"], float) for p in pairs if p["gate"] not in (
        "gate_0_env", "gate_3_pretrain_bilstm"))
    best = json.loads(jq("-s", "max_by(.metrics.val_f1 // 0)"))
    assert best["metrics"]["val_f1"] == pytest.approx(f1)


COIN = np.array([0, 1] * 15)  # right on half the windows, both classes predicted: no skill


def test_no_skill_fails_gate_1_but_leaves_later_gates_inconclusive(ctx, monkeypatch):
    """Gate 1 stops a chain whose baseline shows no skill. A later model that is not
    degenerate but falls short of the skill test is inconclusive, never exported: on GunPoint
    the finetuned model gave p 0.0105 and 0.0140 at two seeds (balanced accuracy 0.745 on 24
    windows) and used to stop the chain there only."""
    from moola.export.exporter import export_after_gate

    _patch(monkeypatch, _classifier_work(COIN), None)
    v = judged(ctx, "gate_1_smoke_enhanced")
    assert v.status == "failed" and "no significant skill" in v.reason, v.reason
    # what these windows could have shown: "no skill shown" is not "no signal in your data"
    assert "was needed to show skill at gates.skill_alpha = 0.01" in v.reason, v.reason

    all_wrong = 1 - Y_VAL  # a worse baseline: the finetuned coin beats it significantly
    _patch(monkeypatch, _classifier_work(all_wrong),
           _classifier_work(COIN, load_report=LOAD_OK))
    v = judged(ctx, "gate_4_finetune_enhanced")
    assert v.comparison["delta_ci"][0] > ctx.cfg.gates.min_delta  # the comparison alone passes
    assert v.status == "inconclusive", v.reason
    assert "no significant skill" in v.reason and "neither exported" in v.reason, v.reason
    assert "the comparison alone passes" in v.reason  # the gain is not hidden
    # inconclusive lets the chain go on (Verdict.passed), but the model is never deployed
    assert v.passed and v.metrics["skill_shown"] is False
    out = export_after_gate(ctx, v)
    assert out["path"] is None and "skill over chance is not shown" in out["reason"]

    ctx.cfg = ctx.cfg.replace("gates", max_drop_pp=100.0)  # no drop bound can fail gate 5
    _patch(monkeypatch, None, _classifier_work(COIN, load_report=LOAD_OK),
           _classifier_work(COIN, pseudo=PSEUDO_OK))
    v = judged(ctx, "gate_5_augment")
    assert v.status == "inconclusive" and "no significant skill" in v.reason, v.reason
    assert v.metrics["skill_shown"] is False and export_after_gate(ctx, v)["path"] is None


def test_a_model_significantly_worse_than_what_it_builds_on_fails_gate_5_and_is_never_deployed(
        ctx, monkeypatch):
    """Destructive pseudo-samples: within a generous drop bound, yet worse on every resample.
    The verdict says so with the figures; the model is not exported and joins no ensemble."""
    from moola.approval import approval
    from moola.export.exporter import export_after_gate

    ctx.cfg = ctx.cfg.replace("gates", max_drop_pp=100.0)
    _patch(monkeypatch, None, _classifier_work(_good_pred(), load_report=LOAD_OK),
           _classifier_work(COIN, pseudo=PSEUDO_OK))
    v = judged(ctx, "gate_5_augment")
    assert v.status == "failed", v.reason
    assert "significantly worse than gate_4_finetune_enhanced's model: macro-F1" in v.reason
    assert v.comparison["builds_on"] == "gate_4_finetune_enhanced"
    assert v.comparison["delta_ci"][1] < 0
    assert "gates.skip" in v.reason and "augment.ratio (now 2.0)" in v.reason
    assert approval(v).approved is False and export_after_gate(ctx, v) is None
    members, excluded = builtin.approved_members({"gate_5_augment": v})
    assert "augmented" not in members and "its gate failed" in excluded["augmented"]


@pytest.mark.parametrize("gate,status", [("gate_7_ensemble", "passed"),
                                         ("gate_6_baseline_simplelstm", "passed"),
                                         ("gate_4_finetune_enhanced", "warning")])
def test_no_verdict_without_shown_skill_is_exported(ctx, gate, status):
    """Whatever its status, a verdict recording skill_shown False exports nothing: the check
    comes before the ensemble's branch and before any refit."""
    from moola.export.exporter import export_after_gate
    from moola.verdict import Verdict

    v = Verdict(gate=gate, status=status, reason="r", metrics={"skill_shown": False,
                                                                "members_macro_f1": {"a": 0.9}})
    out = export_after_gate(ctx, v)
    assert out["path"] is None and "skill over chance is not shown" in out["reason"]


def test_a_degenerate_later_model_still_fails(ctx, monkeypatch):
    _patch(monkeypatch, _classifier_work(_good_pred()),
           _classifier_work(_one_class_pred(), load_report=LOAD_OK))
    ctx.cfg = ctx.cfg.replace("gates", max_harm=1.0)  # the comparison cannot fail it
    v = judged(ctx, "gate_4_finetune_enhanced")
    assert v.status == "failed" and "one class" in v.reason
    assert "no significant skill" not in v.reason  # one reason, not two
    assert v.metrics["skill_shown"] is False  # recorded as measured, whatever fails the gate


def test_a_member_without_shown_skill_never_joins_the_ensemble(ctx, monkeypatch):
    from moola.verdict import Verdict

    good = np.stack([_proba(_good_pred())] * 2)
    seen = {}

    def members(ctx, approved, gate):
        seen["approved"] = set(approved)
        return _ensemble_work({n: good for n in approved})

    monkeypatch.setattr(ensemble_work, "calibrated_members", members)
    upstream = {"gate_4_finetune_enhanced": Verdict(
        gate="gate_4_finetune_enhanced", status="inconclusive", reason="no skill shown",
        metrics={"skill_shown": False})}
    v = judged(ctx, "gate_7_ensemble", upstream)
    assert "finetuned" not in seen["approved"] and "baseline" in seen["approved"]
    assert "finetuned" in v.metrics["excluded"], v.reason
    assert "skill over chance is not shown" in v.reason, v.reason
    assert "finetuned" not in v.metrics["members_macro_f1"]


def test_gate_6_records_a_simplelstm_without_shown_skill(ctx, monkeypatch):
    simple = _classifier_work(COIN, param_devices=["cpu"], device="cpu")
    _patch(monkeypatch, None, _classifier_work(_good_pred(), load_report=LOAD_OK), None, simple)
    v = judged(ctx, "gate_6_baseline_simplelstm")
    assert v.metrics["skill_shown"] is False  # not a gate 6 criterion: status from the comparison
    assert "SimpleLSTM is neither exported nor ensembled" in v.reason, v.reason
    good = _classifier_work(_good_pred(), param_devices=["cpu"], device="cpu")
    _patch(monkeypatch, None, _classifier_work(_good_pred(), load_report=LOAD_OK), None, good)
    assert judged(ctx, "gate_6_baseline_simplelstm").metrics["skill_shown"] is True


def test_gate_2_judges_the_control_alone_when_gate_1_was_left_out(ctx, monkeypatch):
    """gates.skip = ["gate_1_smoke_enhanced"]: the baseline is neither trained nor read; the
    control is judged on its own, so it can still be the answer."""
    from moola.verdict import Verdict

    control = {"y": Y_VAL, "pred": _good_pred()[None], "proba": _proba(_good_pred())[None],
               "score_idx": np.arange(30), "seeds": np.array([17]), "train_acc": [0.8, 1.0],
               "artifact": {"key": "c"}}
    monkeypatch.setattr(work, "control", lambda ctx: control)

    def no_baseline(ctx):
        raise AssertionError("the baseline must not be built when gate 1 was left out")

    monkeypatch.setattr(work, "baseline", no_baseline)
    left_out = Verdict(gate="gate_1_smoke_enhanced", status="skipped",
                       reason="skipped: left out on purpose (gates.skip)")
    v = judged(ctx, "gate_2_control_minirocket", {"gate_1_smoke_enhanced": left_out})
    assert v.status == "passed" and "gate 1 was left out" in v.reason, v.reason
    assert v.metrics["skill_shown"] and v.metrics["model_failed"] is False and v.comparison is None


def test_gate_2_says_when_the_baseline_is_significantly_behind_within_the_margin(ctx,
                                                                                monkeypatch):
    """Behind MiniRocket for certain (the CI below 0), but not by more than the margin for
    certain (the CI reaches above it): inconclusive, saying the first plainly."""
    control = {"y": Y_VAL, "pred": Y_VAL[None], "proba": _proba(Y_VAL)[None],
               "score_idx": np.arange(30), "seeds": np.array([17]), "train_acc": [1.0, 1.0],
               "artifact": {"key": "c"}}
    behind = Y_VAL.copy()
    behind[[0, 1, 2, 17, 18, 19]] = 1 - behind[[0, 1, 2, 17, 18, 19]]  # six windows wrong
    monkeypatch.setattr(work, "control", lambda ctx: control)
    _patch(monkeypatch, _classifier_work(behind), None)
    ctx.cfg = ctx.cfg.replace("gates", control_margin=0.2)
    v = judged(ctx, "gate_2_control_minirocket", {})
    lo, hi = v.comparison["delta_ci"]
    assert lo < -0.2 < hi < 0, v.comparison
    assert v.status == "inconclusive", v.reason
    assert "significantly behind MiniRocket" in v.reason, v.reason
