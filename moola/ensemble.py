"""Gate 7 building blocks: isotonic calibration (cross-fitted over folds) and averaging.

Each fold's pooled out-of-fold probabilities are calibrated by a map fitted on the other folds'
windows (:func:`cross_fitted_calibration`), so a window's own label never shapes its calibrated
probability. How gate 7 judges the result lives in ``moola.gates.builtin.gate_7_ensemble``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.isotonic import IsotonicRegression


def _check_proba(proba: Any, name: str, n_classes: int | None = None) -> np.ndarray:
    """Return proba as float64 (n, K) after checking shape and finiteness."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"{name}: expected probabilities of shape (n, K), got shape {p.shape}")
    if n_classes is not None and p.shape[1] != n_classes:
        raise ValueError(f"{name}: expected K={n_classes} columns, got {p.shape[1]}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name}: contains non-finite values")
    return p


def _normalise_rows(p: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Rows scaled to sum 1; a row summing to 0 takes the matching (normalised) fallback row."""
    s = p.sum(axis=1, keepdims=True)
    fb = fallback / np.maximum(fallback.sum(axis=1, keepdims=True), 1e-300)
    fb = np.where(fb.sum(axis=1, keepdims=True) > 0, fb, 1.0 / p.shape[1])
    out = np.where(s > 1e-12, p / np.maximum(s, 1e-300), fb)
    return np.clip(out, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Isotonic calibration
# ---------------------------------------------------------------------------------------------


class IsotonicCalibrator:
    """One-vs-rest isotonic calibration of class probabilities, fitted on out-of-fold
    predictions of windows other than those it is applied to (see cross_fitted_calibration).

    For class k an increasing map proba[:, k] -> P(y == k) is fitted (sklearn
    IsotonicRegression, clipped outside the fitted range, values in [0, 1]); calibrated rows
    are renormalised to sum 1 (a row mapped to all zeros keeps its uncalibrated probabilities).
    The fitted maps are stored as breakpoint lists, so :meth:`state_dict` is plain JSON.
    """

    def __init__(self) -> None:
        self.x_thresholds: list[np.ndarray] = []
        self.y_thresholds: list[np.ndarray] = []

    @property
    def n_classes(self) -> int:
        return len(self.x_thresholds)

    @property
    def fitted(self) -> bool:
        return self.n_classes > 0

    def fit(self, oof_proba: np.ndarray, y_train: np.ndarray, *, split: str = "train") -> "IsotonicCalibrator":
        """Fit on out-of-fold probabilities (n, K) of calibration windows and their labels.

        `split` names where the arrays come from; anything but "train" is refused, because a
        calibrator fitted on the windows it is then scored on makes their ECE meaningless.
        """
        if split != "train":
            raise ValueError(
                f"IsotonicCalibrator.fit: refusing to fit on split={split!r}; calibration must be "
                "fitted on out-of-fold predictions of the training windows (split='train') and "
                "only applied to validation windows"
            )
        p = _check_proba(oof_proba, "oof_proba")
        y = np.asarray(y_train).astype(np.int64)
        if y.shape != (p.shape[0],):
            raise ValueError(f"y_train: expected shape ({p.shape[0]},), got {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
            raise ValueError(f"y_train: labels must lie in [0, {p.shape[1]}), got max {y.max()}")
        self.x_thresholds, self.y_thresholds = [], []
        for k in range(p.shape[1]):
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            iso.fit(p[:, k], (y == k).astype(np.float64))
            self.x_thresholds.append(np.asarray(iso.X_thresholds_, dtype=np.float64))
            self.y_thresholds.append(np.asarray(iso.y_thresholds_, dtype=np.float64))
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, K), rows summing to 1."""
        if not self.fitted:
            raise RuntimeError("IsotonicCalibrator.transform: call fit(oof_proba, y_train) first")
        p = _check_proba(proba, "proba", self.n_classes)
        cal = np.stack(
            [np.interp(p[:, k], self.x_thresholds[k], self.y_thresholds[k]) for k in range(self.n_classes)],
            axis=1,
        ) if p.shape[0] else p.copy()
        return _normalise_rows(cal, fallback=np.clip(p, 0.0, None))

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state (lists of floats)."""
        return {
            "kind": "isotonic_ovr",
            "x_thresholds": [x.tolist() for x in self.x_thresholds],
            "y_thresholds": [y.tolist() for y in self.y_thresholds],
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "IsotonicCalibrator":
        """Rebuild a calibrator saved with :meth:`state_dict`."""
        if state.get("kind") != "isotonic_ovr":
            raise ValueError(f"not an isotonic calibrator state: kind={state.get('kind')!r}")
        xs, ys = state["x_thresholds"], state["y_thresholds"]
        if len(xs) != len(ys) or any(len(a) != len(b) or len(a) == 0 for a, b in zip(xs, ys)):
            raise ValueError("isotonic calibrator state: x/y threshold lists do not match")
        cal = cls()
        cal.x_thresholds = [np.asarray(a, dtype=np.float64) for a in xs]
        cal.y_thresholds = [np.asarray(b, dtype=np.float64) for b in ys]
        return cal


# ---------------------------------------------------------------------------------------------
# Averaging
# ---------------------------------------------------------------------------------------------


def average_proba(probas: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of members' probabilities (each (n, K)); weights default to equal and are
    normalised; rows of the result sum to 1."""
    if len(probas) == 0:
        raise ValueError("average_proba: no members to average")
    ps = [_check_proba(p, f"member {i}") for i, p in enumerate(probas)]
    if any(p.shape != ps[0].shape for p in ps):
        raise ValueError(f"average_proba: members have different shapes {[p.shape for p in ps]}")
    w = np.ones(len(ps)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(ps),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"average_proba: need {len(ps)} non-negative weights with a positive sum, got {weights}")
    avg = np.tensordot(w / w.sum(), np.stack(ps), axes=1)
    return _normalise_rows(avg, fallback=np.ones_like(avg))


def cross_fitted_calibration(proba: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Isotonic calibration of pooled out-of-fold probabilities, cross-fitted over folds.

    proba: (R, n, K) replicas' probabilities of n scored windows; y: (n,) labels; groups: (n,)
    the fold that scored each window. The windows of fold g are calibrated by a map fitted on
    the other folds' windows of the same replica, so no window's own label shapes its
    calibrated probability (sklearn's CalibratedClassifierCV does the same with its cv folds).
    A fold whose complement holds a single class keeps its raw probabilities.
    """
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 3:
        raise ValueError(f"cross_fitted_calibration: proba must be (R, n, K), got {p.shape}")
    y = np.asarray(y).astype(np.int64)
    groups = np.asarray(groups)
    if y.shape != (p.shape[1],) or groups.shape != (p.shape[1],):
        raise ValueError(f"cross_fitted_calibration: y and groups must have shape ({p.shape[1]},)")
    out = p.copy()
    for r in range(p.shape[0]):
        for g in np.unique(groups):
            held = groups == g
            if len(np.unique(y[~held])) < 2:
                continue
            cal = IsotonicCalibrator().fit(p[r, ~held], y[~held])
            out[r, held] = cal.transform(p[r, held])
    return out
