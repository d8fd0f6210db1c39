"""Classifier metrics that cannot be fooled by a constant predictor.

Every verdict in moola is judged with these. The earlier tool scored a model that answered the
majority class for every window with *weighted* F1 (0.7 x 0.8235 = 0.576) and let it pass. So:

- the headline score is **macro-F1** (weighted-F1 is reported, never judged on);
- every score comes with the **majority-class baseline** on the same windows;
- the **predicted-class distribution** is reported and a model that (almost) always predicts one
  class is **degenerate**;
- skill is judged against **chance** (balanced accuracy 1/K) *with its uncertainty*: a
  permutation test (labels permuted across windows), with a bootstrap confidence interval
  reported. With 20 validation windows a few points of F1 are noise.

Replicas: a model trained at several seeds predicts the same windows several times. Those
predictions are not independent samples, so ``y_pred`` may be (R, n) (R replicas of n windows)
and the bootstrap resamples *windows*: a resampled window brings all R of its predictions
(a cluster bootstrap; Field & Welsh 2007). Point estimates pool the R x n predictions.

Bootstrap: indices of the evaluation windows are resampled with ``scipy.stats.bootstrap``
(percentile method, its tails expanded for small samples: :func:`expanded_level`) and every
statistic is computed for all resamples at once from confusion counts with numpy. A Python
statistic called 1000 times through sklearn takes seconds; the vectorised one takes milliseconds
(n = 200, 1000 resamples: ~10 ms). Percentile rather than BCa because the statistics are
discrete and bounded: with a few dozen windows BCa's bias correction is often infinite (every
resample >= the observed value) and the interval is undefined.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

CI_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
DELTA_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1")


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _labels(name: str, y: Any, n_classes: int | None = None) -> np.ndarray:
    """y as a 1-D int64 array; labels must lie in [0, n_classes)."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class indices, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name}: is empty; metrics need at least one window")
    if not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise ValueError(
                f"{name}: expected integer class indices (dtype {a.dtype}); map labels to 0..K-1"
            )
    a = a.astype(np.int64, copy=False)
    if n_classes is not None and (a.min() < 0 or a.max() >= n_classes):
        raise ValueError(
            f"{name}: class indices must lie in [0, {n_classes}), found "
            f"[{a.min()}, {a.max()}]; pass the right n_classes"
        )
    return a


def _pair(y_true: Any, y_pred: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    t = _labels("y_true", y_true, n_classes)
    p = _labels("y_pred", y_pred, n_classes)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} windows but y_pred has {p.size}; they must match")
    return t, p


def _pair_replicas(y_true: Any, y_pred: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """t (n,), P (R, n): y_pred may be (n,) (one model) or (R, n) (R replicas, same windows)."""
    a = np.asarray(y_pred)
    if a.ndim == 2:
        if a.shape[0] < 1:
            raise ValueError("y_pred: (R, n) replicas with R = 0; give at least one replica")
        rows = [_pair(y_true, row, n_classes)[1] for row in a]
        return _labels("y_true", y_true, n_classes), np.stack(rows)
    t, p = _pair(y_true, a, n_classes)
    return t, p[None, :]


def _replica_confusion(t: np.ndarray, P: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Confusion counts (B, K, K) over every replica's predictions of the resampled windows."""
    return sum(_batch_confusion(t, row, idx, k) for row in P)


def _names(class_names: Sequence[str] | None, n_classes: int) -> list[str]:
    if class_names is None:
        return [str(k) for k in range(n_classes)]
    names = [str(c) for c in class_names]
    if len(names) != n_classes:
        raise ValueError(f"class_names has {len(names)} names for n_classes={n_classes}")
    return names


# ---------------------------------------------------------------------------------------------
# Vectorised statistics: (B, n) index resamples -> (B,) values
# ---------------------------------------------------------------------------------------------


def _batch_confusion(y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Confusion counts (B, K, K) [true, pred] for each row of resampled indices idx (B, n)."""
    idx = np.atleast_2d(idx)
    b = idx.shape[0]
    codes = y_true[idx] * k + y_pred[idx]  # (B, n)
    flat = codes + (np.arange(b, dtype=np.int64) * k * k)[:, None]
    return np.bincount(flat.ravel(), minlength=b * k * k).reshape(b, k, k)


def _stat_from_confusion(cm: np.ndarray, metric: str) -> np.ndarray:
    """accuracy / balanced_accuracy / macro_f1 / weighted_f1 from confusion counts (B, K, K).

    Matches sklearn's defaults: balanced accuracy averages recall over classes present in y_true;
    macro-F1 averages over classes present in y_true or y_pred.
    """
    cm = cm.astype(np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)  # (B, K)
    support = cm.sum(axis=2)  # true counts
    predicted = cm.sum(axis=1)
    n = support.sum(axis=1)
    if metric == "accuracy":
        return tp.sum(axis=1) / n
    if metric == "balanced_accuracy":
        present = support > 0
        recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
        return recall.sum(axis=1) / present.sum(axis=1)
    denom = support + predicted  # 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    if metric == "macro_f1":
        return f1.sum(axis=1) / (denom > 0).sum(axis=1)
    if metric == "weighted_f1":
        return (f1 * support).sum(axis=1) / n
    raise ValueError(
        f"unknown metric {metric!r}; allowed: accuracy, balanced_accuracy, macro_f1, weighted_f1"
    )


def expanded_level(ci_level: float, n: int) -> float:
    """The level at which to read a percentile bootstrap of `n` independent units so that it
    covers about `ci_level` (Hesterberg's expanded percentile interval, 2015).

    A plain percentile interval is too narrow at small n: the bootstrap spreads resamples by
    the plug-in (divide-by-n) spread and reads normal, not t, tails. Measured on the
    reconstruction ratio of gate 3 (subsamples of 594 scored windows, docs/JUDGING.md), a plain
    95% interval covered 0.90 at n = 8 and 24; read at this level, 0.95 and 0.92. The tails are
    taken at Phi(-sqrt(n / (n - 1)) t_{n-1}(1 - alpha / 2)) instead of alpha / 2; the level tends
    to `ci_level` as n grows (0.9885 at n = 8, 0.9654 at 24, 0.9519 at 200 for 0.95). Written
    by hand: scipy's bootstrap has no such method. n < 2: `ci_level` unchanged (scipy needs two
    units). n = 2 gives 1.0: the interval is then the resamples' minimum to maximum, as wide as
    two units can make it."""
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must lie in (0, 1), got {ci_level}")
    if n < 2:
        return float(ci_level)
    t = stats.t.ppf(1 - (1 - ci_level) / 2, n - 1)
    return float(1 - 2 * stats.norm.sf(np.sqrt(n / (n - 1)) * t))


def _units(n: int, block: int) -> int:
    """Independent units one resample of n windows draws: windows, or ceil(n / block) blocks."""
    return -(-n // max(1, min(int(block), n)))


def window_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    n_bootstrap: int,
    ci_level: float,
    seed: int,
    block: int = 1,
) -> tuple[list[float], float]:
    """([low, high], standard error) of statistic(idx (B, n)) -> (B,) over resampled window
    indices (percentile CI read at :func:`expanded_level` for the number of independent units
    drawn: windows, or blocks when `block` > 1). A degenerate bootstrap distribution (all values
    equal, e.g. a perfect predictor) has no spread; scipy warns and may return NaN: then [v, v]
    and 0.

    `block` > 1: a moving-block bootstrap (Kuensch 1989) for windows in time order that overlap
    or are otherwise dependent: runs of `block` consecutive windows are drawn together, ceil(n /
    block) of them, truncated to n. scipy draws the block starts (it resamples as many starts
    as there are; the first ceil(n / block) of an i.i.d. draw are an i.i.d. draw).
    """
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must lie in (0, 1), got {ci_level}")
    block = max(1, min(int(block), n))
    idx = np.arange(n - block + 1, dtype=np.int64)  # block starts (window indices when block=1)
    per_sample = _units(n, block)
    level = expanded_level(ci_level, per_sample)

    def stat(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        starts = np.moveaxis(np.asarray(sample, dtype=np.int64), axis, -1)
        if block == 1:
            return statistic(starts)
        runs = starts[..., :per_sample, None] + np.arange(block)  # (B, m, block)
        return statistic(runs.reshape(*runs.shape[:-2], -1)[..., :n])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            (idx,),
            stat,
            n_resamples=n_bootstrap,
            vectorized=True,
            confidence_level=level,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    dist = np.asarray(res.bootstrap_distribution)
    if np.ptp(dist) == 0.0:
        v = float(dist[0])
        return [v, v], 0.0
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):  # never hand NaN to a verdict
        lo, hi = (float(q) for q in np.quantile(dist, [(1 - level) / 2, (1 + level) / 2]))
    return [lo, hi], float(np.std(dist, ddof=1))


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def majority_baseline(
    y_true: Any,
    n_classes: int,
    majority_class: int | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Scores of the constant predictor of one class on these windows.

    `majority_class=None` takes the most frequent class of `y_true` (ties: lowest index); pass the
    training split's majority class to score the predictor a lazy model would actually learn.
    Returns {class, share, accuracy, macro_f1, weighted_f1, balanced_accuracy}; `share` is that
    class's share of `y_true`.
    """
    t = _labels("y_true", y_true, n_classes)
    names = _names(class_names, n_classes)
    counts = np.bincount(t, minlength=n_classes)
    c = int(np.argmax(counts)) if majority_class is None else int(majority_class)
    if not 0 <= c < n_classes:
        raise ValueError(f"majority_class {c} is outside [0, {n_classes})")
    pred = np.full_like(t, c)
    return {
        "class": names[c],
        "share": float(counts[c] / t.size),
        "accuracy": float(accuracy_score(t, pred)),
        "macro_f1": float(f1_score(t, pred, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(t, pred, average="weighted", zero_division=0)),
        "balanced_accuracy": float(_balanced_accuracy(t, pred)),
    }


def _balanced_accuracy(t: np.ndarray, p: np.ndarray) -> float:
    """sklearn's balanced accuracy without its 'y_pred contains classes not in y_true' warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(t, p))


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    n_classes: int,
    *,
    n_bootstrap: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
    max_predicted_share: float = 0.95,
    class_names: Sequence[str] | None = None,
    majority_class: int | None = None,
    block: int = 1,
) -> dict[str, Any]:
    """Everything a classifier verdict needs, JSON-ready.

    Keys: accuracy, balanced_accuracy, macro_f1, weighted_f1, per_class (name -> precision,
    recall, f1, support), confusion_matrix (K x K, rows = true, absent classes included),
    majority_baseline, predicted_distribution ({name: count}), predicted_max_share, degenerate,
    chance_balanced_accuracy (1/K), ci ({metric: [low, high]} for accuracy, balanced_accuracy,
    macro_f1), n, n_classes, ci_level, n_bootstrap.

    `degenerate` is True when the most frequent predicted class takes more than
    `max_predicted_share` of predictions, and always when only one class is predicted (K > 1).

    `y_pred` (R, n): R replicas (seeds) of the same n windows. Point metrics pool all R x n
    predictions, CIs resample windows (all replicas of a window together), ``n`` counts windows,
    ``n_replicas`` is R, and ``per_replica_macro_f1`` lists each replica's own macro-F1.
    `block` > 1 resamples runs of that many consecutive windows (moving-block bootstrap).
    """
    t, P = _pair_replicas(y_true, y_pred, n_classes)
    names = _names(class_names, n_classes)
    k, n, r = n_classes, t.size, P.shape[0]
    labels = list(range(k))
    per_replica = [float(f1_score(t, row, average="macro", zero_division=0)) for row in P]
    t_all, p = np.tile(t, r), P.ravel()  # pooled predictions for the point estimates
    t_one = t
    t = t_all

    prec, rec, f1, sup = precision_recall_fscore_support(
        t, p, labels=labels, zero_division=0
    )
    per_class = {
        names[i]: {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(sup[i]),
        }
        for i in range(k)
    }
    pred_counts = np.bincount(p, minlength=k)
    max_share = float(pred_counts.max() / p.size)
    one_class = k > 1 and int((pred_counts > 0).sum()) == 1

    def ci_of(metric: str) -> list[float]:
        return window_bootstrap(
            lambda idx: _stat_from_confusion(_replica_confusion(t_one, P, idx, k), metric),
            n,
            n_bootstrap=n_bootstrap,
            ci_level=ci_level,
            seed=seed,
            block=block,
        )[0]

    return {
        "n": int(n),
        "n_classes": int(k),
        "accuracy": float(accuracy_score(t, p)),
        "balanced_accuracy": _balanced_accuracy(t, p),
        "macro_f1": float(f1_score(t, p, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(t, p, average="weighted", zero_division=0)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(t, p, labels=labels).tolist(),
        "majority_baseline": majority_baseline(t_one, k, majority_class, names),
        "predicted_distribution": {names[i]: int(pred_counts[i]) for i in range(k)},
        "predicted_max_share": max_share,
        "degenerate": bool(one_class or max_share > max_predicted_share),
        "max_predicted_share": float(max_predicted_share),  # the bound it was judged by
        "chance_balanced_accuracy": 1.0 / k,
        "ci": {m: ci_of(m) for m in CI_METRICS},
        "ci_level": float(ci_level),
        "n_bootstrap": int(n_bootstrap),
        "n_replicas": int(r),
        # permutation test of balanced accuracy against chance (the skill decision)
        "skill_p_value": skill_permutation_p(t_one, P, k, seed=seed),
        "per_replica_macro_f1": per_replica,
    }


def skill_permutation_p(y_true: Any, y_pred: Any, n_classes: int, *,
                        n_permutations: int = 2000, seed: int = 0) -> float:
    """One-sided permutation p-value of balanced accuracy against "no relation to the labels".

    The window labels are permuted (each window keeps all of its replicas' predictions) and the
    pooled balanced accuracy recomputed; p = (1 + #{permuted >= observed}) / (1 + B). Exact
    under the null of exchangeable labels (Ojala & Garriga 2010), where a percentile bootstrap
    CI of a few dozen windows lets through more than its nominal share of no-signal models.
    """
    observed, null = _skill_null(y_true, y_pred, n_classes, n_permutations, seed)
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))


def skill_detectable(y_true: Any, y_pred: Any, n_classes: int, alpha: float, *,
                     n_permutations: int = 2000, seed: int = 0) -> float:
    """The balanced accuracy these windows would call skilful at level `alpha`: the
    (1 - alpha) quantile of the permutation null of :func:`skill_permutation_p` for these
    predictions (what a failed skill test could have detected)."""
    _, null = _skill_null(y_true, y_pred, n_classes, n_permutations, seed)
    return float(np.quantile(null, 1 - alpha, method="higher"))


def _skill_null(y_true: Any, y_pred: Any, n_classes: int, n_permutations: int,
                seed: int) -> tuple[float, np.ndarray]:
    """(observed pooled balanced accuracy, (B,) the same under permuted window labels)."""
    t, P = _pair_replicas(y_true, y_pred, n_classes)
    k, n = n_classes, t.size
    rng = np.random.default_rng(seed)
    perm = rng.permuted(np.tile(t, (n_permutations, 1)), axis=1)  # (B, n)
    offsets = (np.arange(n_permutations, dtype=np.int64) * k * k)[:, None]

    def pooled(labels: np.ndarray) -> np.ndarray:  # labels (B, n) -> (B,) balanced accuracy
        b = labels.shape[0]
        cm = sum(np.bincount((labels * k + row[None, :] + offsets[:b]).ravel(),
                             minlength=b * k * k).reshape(b, k, k) for row in P)
        return _stat_from_confusion(cm, "balanced_accuracy")

    return float(pooled(t[None, :])[0]), pooled(perm)


def skill_over_chance(metrics: dict[str, Any], alpha: float) -> tuple[bool, float, float]:
    """(significant, p, chance): does balanced accuracy beat chance 1/K at level `alpha`?

    `metrics` is a :func:`classification_metrics` result; the test is its permutation p-value
    (``skill_p_value``). A majority predictor has balanced accuracy exactly 1/K under every
    permutation (p = 1), so it is never significant.
    """
    try:
        p = float(metrics["skill_p_value"])
        chance = float(metrics["chance_balanced_accuracy"])
        ba = float(metrics["balanced_accuracy"])
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(
            "skill_over_chance needs a classification_metrics() result with skill_p_value, "
            f"balanced_accuracy and chance_balanced_accuracy; missing {exc}"
        ) from exc
    return bool(p < alpha and ba > chance), p, chance


def paired_delta_ci(
    y_true: Any,
    pred_a: Any,
    pred_b: Any,
    metric: str = "macro_f1",
    n_classes: int | None = None,
    *,
    n_bootstrap: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
    block: int = 1,
) -> dict[str, Any]:
    """Difference metric(b) - metric(a) on the same windows, with a paired bootstrap CI.

    Both models are scored on the *same* resampled windows (indices resampled jointly), so the
    window-to-window difficulty cancels. `significant` is True when the CI excludes 0.
    `metric` is one of accuracy, balanced_accuracy, macro_f1, weighted_f1.
    pred_a / pred_b may be (n,) or (R, n) replicas (their R may differ): a resampled window
    brings every replica's prediction of it, so seeds of one window are never counted as
    independent windows.
    Returns {metric, a, b, delta, ci: [lo, hi], significant, n, se, detectable}: `se` is the
    bootstrap standard error of the delta and `detectable` the smallest true difference these
    windows would detect with 80% power at the level the CI is read at (:func:`expanded_level`),
    (z_(1-alpha'/2) + z_0.8) x se.
    """
    if n_classes is None:
        n_classes = 1 + int(max(np.max(y_true), np.max(pred_a), np.max(pred_b)))
    t, a = _pair_replicas(y_true, pred_a, n_classes)
    _, b = _pair_replicas(t, pred_b, n_classes)
    if metric not in DELTA_METRICS:
        raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(DELTA_METRICS)}")
    full = np.arange(t.size)[None, :]

    def delta(idx: np.ndarray) -> np.ndarray:
        sa = _stat_from_confusion(_replica_confusion(t, a, idx, n_classes), metric)
        sb = _stat_from_confusion(_replica_confusion(t, b, idx, n_classes), metric)
        return sb - sa

    va = float(_stat_from_confusion(_replica_confusion(t, a, full, n_classes), metric)[0])
    vb = float(_stat_from_confusion(_replica_confusion(t, b, full, n_classes), metric)[0])
    ci, se = window_bootstrap(delta, t.size, n_bootstrap=n_bootstrap, ci_level=ci_level, seed=seed,
                        block=block)
    # the z of the level the CI is read at (expanded_level), so "could only detect" matches it
    level = expanded_level(ci_level, _units(t.size, block))
    z = float(stats.norm.ppf(1 - (1 - level) / 2) + stats.norm.ppf(0.8))
    return {
        "se": se,
        "detectable": z * se,
        "metric": metric,
        "a": va,
        "b": vb,
        "delta": vb - va,
        "ci": ci,
        "significant": bool(ci[0] > 0.0 or ci[1] < 0.0),
        "n": int(t.size),
    }


def expected_calibration_error(y_true: Any, proba: Any, n_bins: int = 10) -> float:
    """Top-label expected calibration error with `n_bins` equal-width confidence bins.

    proba: (n, K) class probabilities, or (n,) probabilities of class 1 for a binary problem.
    For each window the confidence is its largest probability and it is correct when that class
    is the true one; ECE = sum over bins of (share of windows in bin) x |accuracy - mean
    confidence|. Bins are (lo, hi] (confidence 0 goes to the first); empty bins weigh nothing.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    q = np.asarray(proba, dtype=np.float64)
    if q.ndim == 1:
        q = np.stack([1.0 - q, q], axis=1)
    if q.ndim != 2:
        raise ValueError(f"proba: expected shape (n, K) or (n,), got {q.shape}")
    t = _labels("y_true", y_true, q.shape[1])
    if q.shape[0] != t.size:
        raise ValueError(f"proba has {q.shape[0]} rows but y_true has {t.size} windows")
    if not np.all(np.isfinite(q)) or q.min() < 0.0 or q.max() > 1.0:
        raise ValueError("proba: values must be finite probabilities in [0, 1]")
    conf = q.max(axis=1)
    correct = (q.argmax(axis=1) == t).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    filled = count > 0
    gap = np.abs(acc_sum[filled] - conf_sum[filled]) / count[filled]
    return float(np.sum(count[filled] / t.size * gap))
