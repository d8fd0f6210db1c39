"""The decision (moola.decision) and the approval rule (moola.approval) on constructed
predictions: never a model another beats significantly, parsimony among the rest, nothing on
no-signal predictions, nothing that is not approved."""

from __future__ import annotations

import numpy as np
import pytest

from moola.approval import approval
from moola.decision import Candidate, balanced_loss, choose, order_key
from moola.verdict import Verdict
from moola.metrics import classification_metrics, paired_delta_ci

ORDER = ("control", "simple", "baseline", "finetuned", "augmented", "ensemble")
K = 3


def _labels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, K, n)


def _model(y: np.ndarray, accuracy: float, seed: int, replicas: int = 2) -> np.ndarray:
    """(R, n) predictions right with probability `accuracy`, else a random other class."""
    rng = np.random.default_rng(seed)
    right = rng.random((replicas, len(y))) < accuracy
    wrong = (y[None, :] + rng.integers(1, K, (replicas, len(y)))) % K
    return np.where(right, y[None, :], wrong)


def _choose(cands, **kw):
    return choose(cands, n_classes=K, order=kw.pop("order", ORDER), alpha=0.01, ci_level=0.95,
                  n_bootstrap=400, seed=kw.pop("seed", 0), **kw)


def test_the_class_balanced_loss_averages_to_one_minus_balanced_accuracy():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 0])
    pred = _model(y, 0.6, seed=3, replicas=3)
    m = classification_metrics(y, pred, K, n_bootstrap=10)
    assert balanced_loss(y, pred, K).mean() == pytest.approx(1 - m["balanced_accuracy"])


def test_parsimony_order_lists_first_then_chain_order():
    key = order_key(["control", "baseline"], ["baseline", "mine", "control", "theirs"])
    assert sorted(["theirs", "mine", "baseline", "control"], key=key) == \
        ["control", "baseline", "mine", "theirs"]


def test_models_not_named_come_before_the_ensemble_that_may_contain_them():
    """User members and their ensemble indistinguishable: a member comes first, not the
    ensemble (the err-together control of gate 7's known answer, test_known_answers_gate_7.py)."""
    order = ["control", "simple", "ensemble"]
    key = order_key(order, ["control", "view0", "view1", "ensemble"])
    assert sorted(["ensemble", "view1", "view0", "simple"], key=key) == \
        ["simple", "view0", "view1", "ensemble"]
    # the ensemble listed before a named model keeps its place; unnamed ones stay before it
    key = order_key(["ensemble", "control"], ["control", "view0", "ensemble"])
    assert sorted(["control", "view0", "ensemble"], key=key) == ["view0", "ensemble", "control"]


@pytest.mark.parametrize("seed", range(6))
def test_never_a_model_another_beats_significantly_and_parsimony_among_the_rest(seed):
    rng = np.random.default_rng(100 + seed)
    y = _labels(int(rng.integers(40, 90)), seed)
    names = ["ensemble", "finetuned", "baseline", "control", "simple"]
    accs = rng.uniform(0.55, 0.95, len(names))
    cands = [Candidate(n, f"gate_{i}", y, _model(y, a, seed * 10 + i), model=n)
             for i, (n, a) in enumerate(zip(names, accs))]
    d = _choose(cands, seed=seed)
    rec = d["recommended"]
    assert rec is not None
    by = {c.name: c for c in cands}
    for other in cands:  # the guarantee, checked with the test every gate uses
        if other.name == rec:
            continue
        ci = paired_delta_ci(y, by[rec].pred, other.pred, metric="balanced_accuracy",
                             n_classes=K, n_bootstrap=400, ci_level=0.95, seed=seed)["ci"]
        assert ci[0] <= 0, (rec, other.name, ci)
    kept = d["indistinguishable"]
    assert rec == kept[0] and kept == sorted(kept, key=ORDER.index)
    for n in kept:  # what is kept is in the confidence set and beaten by none
        assert d["candidates"][n]["beaten_by"] == []


def test_a_clearly_better_model_wins_over_a_simpler_worse_one():
    y = _labels(120, 1)
    cands = [Candidate("control", "gate_2", y, _model(y, 0.55, 1, replicas=1)),
             Candidate("finetuned", "gate_4", y, _model(y, 0.97, 2))]
    d = _choose(cands)
    assert d["recommended"] == "finetuned"
    assert d["candidates"]["control"]["beaten_by"] == ["finetuned"]
    assert "control" not in d["indistinguishable"]
    assert d["candidates"]["control"]["why"] == "beaten significantly by finetuned"


def test_indistinguishable_models_go_to_the_simplest():
    y = _labels(40, 2)
    same = _model(y, 0.85, 5)
    cands = [Candidate("ensemble", "gate_7", y, same), Candidate("baseline", "gate_1", y, same),
             Candidate("control", "gate_2", y, same[:1])]
    d = _choose(cands)
    assert d["recommended"] == "control"
    assert set(d["indistinguishable"]) == {"control", "baseline", "ensemble"}
    assert d["expected"]["n_windows"] == 40 and "deploy control" in d["reason"]


@pytest.mark.parametrize("seed", range(5))
def test_no_signal_recommends_nothing_and_says_what_the_windows_could_detect(seed):
    y = _labels(48, seed)
    rng = np.random.default_rng(seed + 1000)  # not the labels' stream
    cands = [Candidate(n, f"g{i}", y, rng.integers(0, K, (2, len(y))))
             for i, n in enumerate(["baseline", "control", "finetuned", "simple"])]
    d = _choose(cands, seed=seed)
    assert d["recommended"] is None and d["indistinguishable"] == []
    assert d["reason"].startswith("deploy nothing")
    assert 1 / K < d["detectable_balanced_accuracy"] < 1
    assert d["alpha_corrected"] == pytest.approx(0.01 / 4)


def test_a_model_its_gate_does_not_approve_is_never_recommended_however_good():
    y = _labels(60, 3)
    cands = [Candidate("augmented", "gate_5", y, _model(y, 0.99, 1), approved=False,
                     why="it is significantly worse than gate_4's model"),
             Candidate("baseline", "gate_1", y, _model(y, 0.8, 2))]
    d = _choose(cands)
    assert d["recommended"] == "baseline"
    assert not d["candidates"]["augmented"]["eligible"]
    assert "significantly worse" in d["candidates"]["augmented"]["why"]


def test_what_each_step_bought_is_a_paired_difference_with_its_outcome():
    y = _labels(80, 4)
    cands = [Candidate("baseline", "gate_1", y, _model(y, 0.6, 1)),
             Candidate("finetuned", "gate_4", y, _model(y, 0.95, 2))]
    refs = {"random_init": Candidate("random_init", "gate_4", y, _model(y, 0.6, 3))}
    d = _choose(cands, references=refs)
    step = d["steps"]["pretraining"]
    assert step["reference"] == "random_init" and step["new"] == "finetuned"
    assert step["outcome"] == "helped" and step["delta_ci"][0] > 0
    assert d["steps"]["pretrained over scratch"]["outcome"] == "helped"


# ---------------------------------------------------------------------------------------------
# the approval rule
# ---------------------------------------------------------------------------------------------

def _v(status="passed", **metrics):
    cmp = metrics.pop("comparison", None)
    return Verdict(gate="g", status=status, reason="why", metrics=metrics, comparison=cmp)


@pytest.mark.parametrize("verdict, approved, words", [
    (_v(), True, "approved"),
    (_v("inconclusive", skill_shown=True), True, "approved"),
    (_v("skipped"), False, "not judged"),
    (_v("failed"), False, "its gate failed"),
    (_v("failed", model_failed=False, skill_shown=True), True, "approved"),
    (_v("inconclusive", degenerate=True), False, "one class"),
    (_v("inconclusive", skill_shown=False), False, "skill over chance is not shown"),
    (_v("inconclusive", comparison={"builds_on": "gate_4", "delta": -0.08,
                                    "delta_ci": [-0.17, -0.01], "ci_level": 0.95,
                                    "model_macro_f1": 0.896, "builds_on_macro_f1": 0.979}),
     False, "significantly worse than gate_4's model: macro-F1 0.896 vs 0.979"),
    (_v("inconclusive", comparison={"builds_on": "gate_4", "delta": -0.08,
                                    "delta_ci": [-0.17, 0.01], "ci_level": 0.95}), True,
     "approved"),
    (_v("inconclusive", comparison={"delta": -0.08, "delta_ci": [-0.17, -0.01],
                                    "ci_level": 0.95}), True, "approved"),
])
def test_the_approval_rule(verdict, approved, words):
    ok, why = approval(verdict)
    assert ok is approved and words in why, why
    assert approval(verdict.to_dict()) == (ok, why)  # a results record reads the same
