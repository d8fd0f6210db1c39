"""Hand-computed checks of moola.metrics, starting with the case the earlier tool got wrong."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from moola import metrics as M

# The seed case: 20 validation windows, 14 of class A and 6 of class B.
Y_SEED = np.array([0] * 14 + [1] * 6)
NAMES = ["A", "B"]


def seed_metrics(pred, **kw):
    return M.classification_metrics(Y_SEED, pred, 2, class_names=NAMES, **kw)


def test_constant_predictor_is_exposed():
    m = seed_metrics(np.zeros(20, dtype=int))
    assert m["accuracy"] == pytest.approx(0.700)
    # F1(A) = 2*14 / (2*14 + 6) = 0.8235, F1(B) = 0
    assert m["per_class"]["A"]["f1"] == pytest.approx(28 / 34)
    assert m["per_class"]["B"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx(0.4118, abs=1e-4)
    # the figure the earlier tool reported as "F1" and passed
    assert m["weighted_f1"] == pytest.approx(0.5765, abs=1e-4)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["degenerate"] is True
    assert m["predicted_distribution"] == {"A": 20, "B": 0}
    assert m["chance_balanced_accuracy"] == 0.5
    assert m["ci"]["balanced_accuracy"][1] <= 0.5  # never exceeds chance
    significant, p, chance = M.skill_over_chance(m, 0.01)
    assert (significant, p, chance) == (False, 1.0, 0.5)  # 1/K under every permutation
    base = m["majority_baseline"]
    assert base["class"] == "A" and base["share"] == pytest.approx(0.7)
    assert base["macro_f1"] == pytest.approx(m["macro_f1"])
    assert base["weighted_f1"] == pytest.approx(m["weighted_f1"])


def test_perfect_predictor():
    m = seed_metrics(Y_SEED.copy())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1"):
        assert m[key] == 1.0, key
    assert all(m["ci"][k] == [1.0, 1.0] for k in M.CI_METRICS)  # degenerate bootstrap -> [v, v]
    assert m["degenerate"] is False
    assert M.skill_over_chance(m, 0.01)[0] is True
    assert m["confusion_matrix"] == [[14, 0], [0, 6]]


def test_guesser_beats_majority_macro_f1_but_shows_no_skill():
    # predictions independent of the truth: half of each class is called A, half B
    pred = np.array([0] * 7 + [1] * 7 + [0] * 3 + [1] * 3)
    m = seed_metrics(pred)
    # F1(A) = 14/24, F1(B) = 6/16
    assert m["macro_f1"] == pytest.approx((14 / 24 + 6 / 16) / 2)
    assert m["macro_f1"] > m["majority_baseline"]["macro_f1"]
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["degenerate"] is False
    assert M.skill_over_chance(m, 0.01)[0] is False


def test_random_guessers_are_rarely_significant():
    rng = np.random.default_rng(1)
    ps = [seed_metrics(rng.integers(0, 2, 20), n_bootstrap=300, seed=s)["skill_p_value"]
          for s in range(200)]
    hits = sum(p < 0.01 for p in ps)
    assert hits <= 6  # an exact test at 1%: about 2 of 200 expected
    assert 0.3 < np.median(ps) < 0.7  # p-values of no-signal guessers are uniform


def test_real_skill_is_significant():
    y = np.repeat([0, 1, 2], 30)
    pred = y.copy()
    pred[::6] = (pred[::6] + 1) % 3  # 15 of 90 wrong
    m = M.classification_metrics(y, pred, 3)
    ok, p, chance = M.skill_over_chance(m, 0.01)
    assert ok and p < 0.001 and chance == pytest.approx(1 / 3)


def test_per_class_numbers_three_classes():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 2, 2])
    m = M.classification_metrics(y, p, 3, class_names=["x", "y", "z"])
    pc = m["per_class"]
    assert pc["x"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert pc["y"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert pc["z"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 2 / 3) / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_confusion_matrix_counts_absent_class():
    y = np.array([0, 0, 1, 1])
    p = np.array([0, 1, 1, 1])
    m = M.classification_metrics(y, p, 3, class_names=["a", "b", "c"], n_bootstrap=50)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert m["predicted_distribution"] == {"a": 1, "b": 3, "c": 0}
    assert m["per_class"]["c"]["support"] == 0
    assert m["chance_balanced_accuracy"] == pytest.approx(1 / 3)


def test_degenerate_threshold():
    pred = np.zeros(20, dtype=int)
    pred[-1] = 1  # 19 of 20 = 0.95 predicted A
    assert seed_metrics(pred, n_bootstrap=50)["degenerate"] is False
    assert seed_metrics(pred, n_bootstrap=50, max_predicted_share=0.9)["degenerate"] is True
    # one predicted class is degenerate whatever the threshold
    assert seed_metrics(np.ones(20, int), n_bootstrap=50, max_predicted_share=1.0)["degenerate"]


def test_majority_baseline_from_train_class():
    b = M.majority_baseline(Y_SEED, 2, majority_class=1, class_names=NAMES)
    assert b["class"] == "B" and b["share"] == pytest.approx(0.3)
    assert b["accuracy"] == pytest.approx(0.3)
    assert b["macro_f1"] == pytest.approx((12 / 26) / 2)  # F1(B) = 2*6/(2*6+14)
    assert b["balanced_accuracy"] == pytest.approx(0.5)
    assert M.majority_baseline(Y_SEED, 2)["class"] == "0"


def test_vectorised_statistics_match_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 4, 15)
        p = rng.integers(0, 4, 15)
        cm = M._batch_confusion(y, p, np.arange(15)[None, :], 4)
        stat = lambda name: float(M._stat_from_confusion(cm, name)[0])  # noqa: E731
        assert stat("accuracy") == pytest.approx(np.mean(y == p))
        assert stat("macro_f1") == pytest.approx(f1_score(y, p, average="macro"))
        assert stat("weighted_f1") == pytest.approx(f1_score(y, p, average="weighted"))
        with warnings.catch_warnings():  # sklearn: "y_pred contains classes not in y_true"
            warnings.simplefilter("ignore")
            assert stat("balanced_accuracy") == pytest.approx(balanced_accuracy_score(y, p))


def test_ci_is_reproducible_and_contains_estimate():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 50)
    p = np.where(rng.random(50) < 0.8, y, 1 - y)
    a = M.classification_metrics(y, p, 2, seed=5)
    b = M.classification_metrics(y, p, 2, seed=5)
    assert a["ci"] == b["ci"]
    for k in M.CI_METRICS:
        lo, hi = a["ci"][k]
        assert lo <= a[k] <= hi and np.isfinite([lo, hi]).all()


def test_paired_delta_identical_predictions():
    p = np.array([0] * 7 + [1] * 7 + [0] * 3 + [1] * 3)
    d = M.paired_delta_ci(Y_SEED, p, p.copy())
    assert d["delta"] == 0.0 and d["ci"] == [0.0, 0.0] and d["significant"] is False


def test_paired_delta_perfect_over_constant():
    d = M.paired_delta_ci(Y_SEED, np.zeros(20, int), Y_SEED, metric="macro_f1")
    assert d["delta"] == pytest.approx(1 - 28 / 34 / 2)
    assert d["a"] == pytest.approx(0.4118, abs=1e-4) and d["b"] == 1.0
    assert d["significant"] and d["ci"][0] > 0
    swapped = M.paired_delta_ci(Y_SEED, Y_SEED, np.zeros(20, int))
    assert swapped["delta"] == pytest.approx(-d["delta"]) and swapped["significant"]


def test_paired_delta_rejects_unknown_metric():
    with pytest.raises(ValueError, match="allowed"):
        M.paired_delta_ci(Y_SEED, Y_SEED, Y_SEED, metric="f1")


def test_ece_hand_example_with_empty_bins():
    y = np.array([1, 0, 1, 0])
    p1 = np.array([0.95, 0.95, 0.35, 0.35])  # probability of class 1
    # predictions 1, 1, 0, 0 with confidences 0.95, 0.95, 0.65, 0.65; correct: yes, no, no, yes
    # bin (0.9, 1.0]: half the windows, accuracy 1/2, confidence 0.95 -> 0.5 * 0.45
    # bin (0.6, 0.7]: half the windows, accuracy 1/2, confidence 0.65 -> 0.5 * 0.15
    # the other 8 bins are empty and weigh nothing
    expected = 0.5 * 0.45 + 0.5 * 0.15
    assert M.expected_calibration_error(y, p1, n_bins=10) == pytest.approx(expected)
    two_col = np.stack([1 - p1, p1], axis=1)
    assert M.expected_calibration_error(y, two_col, n_bins=10) == pytest.approx(expected)


def test_ece_multiclass_and_edges():
    proba = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0]])
    y = np.array([0, 2, 2, 0])
    # confidences 0.6 (right), 0.8 (wrong), 0.6 (right), 1.0 (right)
    # bin (0.5, 0.6]: 2/4 x |1 - 0.6|; bin (0.7, 0.8]: 1/4 x |0 - 0.8|; bin (0.9, 1.0]: 0
    assert M.expected_calibration_error(y, proba, 10) == pytest.approx(0.4 * 0.5 + 0.8 * 0.25)
    assert M.expected_calibration_error(y, proba, 1) == pytest.approx(abs(0.75 - 0.75))
    perfect = np.eye(3)[y]
    assert M.expected_calibration_error(y, perfect) == 0.0
    assert np.isfinite(M.expected_calibration_error([0], [[0.0, 1.0]], 10))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: M.classification_metrics([0, 1], [0], 2), "must match"),
        (lambda: M.classification_metrics([0, 3], [0, 1], 2), r"\[0, 2\)"),
        (lambda: M.classification_metrics([], [], 2), "empty"),
        (lambda: M.classification_metrics(["a"], ["a"], 2), "integer"),
        (lambda: M.expected_calibration_error([0, 1], [[0.5, 0.5]]), "rows"),
        (lambda: M.expected_calibration_error([0], [[np.nan, 1.0]]), "finite"),
        (lambda: M.skill_over_chance({}, 0.01), "classification_metrics"),
    ],
    ids=["length", "range", "empty", "strings", "ece-rows", "ece-nan", "skill-input"],
)
def test_bad_input_is_explained(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_replicas_of_one_window_are_not_independent_samples():
    """R identical replicas carry no more evidence than one: the window bootstrap's CI is the
    same (a bootstrap over R x n predictions would shrink it by sqrt(R))."""
    from moola.metrics import classification_metrics, paired_delta_ci

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 40)
    p = np.where(rng.random(40) < 0.75, y, 1 - y)
    one = classification_metrics(y, p, 2, n_bootstrap=500, seed=1)
    five = classification_metrics(y, np.stack([p] * 5), 2, n_bootstrap=500, seed=1)
    assert five["ci"] == one["ci"] and five["n"] == 40 and five["n_replicas"] == 5
    q = np.where(rng.random(40) < 0.6, y, 1 - y)
    d1 = paired_delta_ci(y, q, p, n_classes=2, n_bootstrap=500, seed=1)
    d5 = paired_delta_ci(y, np.stack([q] * 5), np.stack([p] * 5), n_classes=2,
                         n_bootstrap=500, seed=1)
    assert d5["ci"] == pytest.approx(d1["ci"]) and d5["detectable"] == pytest.approx(
        d1["detectable"])
    assert d1["detectable"] > 0.1  # 40 windows cannot see a few points of macro-F1


def test_block_bootstrap_widens_the_ci_of_dependent_windows():
    """Runs of identical neighbours (overlapping windows) are one piece of evidence: resampling
    them in blocks gives a wider CI than treating each window as independent."""
    from moola.metrics import classification_metrics

    rng = np.random.default_rng(3)
    y0 = rng.integers(0, 2, 20)
    right = rng.random(20) < 0.75
    y = np.repeat(y0, 5)  # every window repeated by its 4 overlapping neighbours
    p = np.repeat(np.where(right, y0, 1 - y0), 5)
    plain = classification_metrics(y, p, 2, n_bootstrap=1000, seed=1)
    blocks = classification_metrics(y, p, 2, n_bootstrap=1000, seed=1, block=5)
    width = lambda m: m["ci"]["macro_f1"][1] - m["ci"]["macro_f1"][0]  # noqa: E731
    assert width(blocks) > 1.5 * width(plain)
    assert blocks["macro_f1"] == plain["macro_f1"]  # the point estimate does not move


def test_expanded_level_widens_small_samples_only():
    assert M.expanded_level(0.95, 8) == pytest.approx(0.9885, abs=1e-4)
    assert M.expanded_level(0.95, 24) == pytest.approx(0.9654, abs=1e-4)
    levels = [M.expanded_level(0.95, n) for n in (3, 8, 24, 100, 1000, 100_000)]
    assert levels == sorted(levels, reverse=True), "the expansion shrinks as n grows"
    assert levels[-1] == pytest.approx(0.95, abs=1e-4) and levels[-1] > 0.95
    assert M.expanded_level(0.95, 1) == 0.95 and M.expanded_level(0.9, 0) == 0.9
    with pytest.raises(ValueError, match="ci_level"):
        M.expanded_level(1.0, 8)


def test_small_sample_ci_covers_its_level():
    """The mean of 8 draws from a skewed population: a plain 95% percentile interval covers
    the true mean in under 0.89 of 300 samples (seeded), the expanded one in over 0.92."""
    from scipy import stats

    rng = np.random.default_rng(11)
    expanded = plain = 0
    for t in range(300):
        x = rng.exponential(1.0, 8)  # true mean 1
        (lo, hi), _ = M.window_bootstrap(lambda idx: x[idx].mean(axis=-1), 8, n_bootstrap=1000,
                                   ci_level=0.95, seed=t)
        expanded += lo <= 1.0 <= hi
        ci = stats.bootstrap((x,), np.mean, n_resamples=1000, confidence_level=0.95,
                             method="percentile", rng=np.random.default_rng(t)).confidence_interval
        plain += ci.low <= 1.0 <= ci.high
    assert plain / 300 < 0.89 and expanded / 300 > 0.92, (plain / 300, expanded / 300)
