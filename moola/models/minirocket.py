"""MiniRocket control (gate 2): sktime MiniRocket features + ridge classifier.

Follows Dempster et al. (2021): 10,000 MiniRocket features, standardised, then
``RidgeClassifierCV(alphas=np.logspace(-3, 3, 10))``. A strong, cheap, non-deep reference: if it
beats the deep baseline, the deep model has learnt less than a linear model on random features.

Our windows are (n, T, F); sktime wants numpy3D (n, channels, T), so they are transposed here.
``MiniRocket`` handles one channel, ``MiniRocketMultivariate`` several. The first fit compiles
numba kernels (~20-35 s; a gate session compiles them in the background while the first gates
run, see moola.numba_warmup); nothing global is set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import RidgeClassifierCV
from sklearn.preprocessing import StandardScaler

MIN_TIMESTEPS = 9  # MiniRocket's kernels have length 9


class MiniRocketControl:
    """fit(X (n, T, F), y) / predict / decision_function / predict_proba."""

    def __init__(self, seed: int = 0, num_kernels: int = 10000) -> None:
        if num_kernels < 84:
            raise ValueError(f"num_kernels must be >= 84 (MiniRocket's base kernels), got {num_kernels}")
        self.seed = seed
        self.num_kernels = num_kernels
        self.transform_: Any = None
        self.scaler_: StandardScaler | None = None
        self.classifier_: RidgeClassifierCV | None = None
        self.n_features_: int | None = None

    @staticmethod
    def _panel(X: Any, where: str) -> np.ndarray:
        """(n, T, F) windows -> sktime numpy3D (n, F, T) float64, with clear errors."""
        a = np.asarray(X, dtype=np.float64)
        if a.ndim == 2:  # (n, T): one feature
            a = a[:, :, None]
        if a.ndim != 3:
            raise ValueError(f"MiniRocketControl.{where}: expected X (n, T, F), got shape {a.shape}")
        if a.shape[1] < MIN_TIMESTEPS:
            raise ValueError(
                f"MiniRocketControl.{where}: windows have {a.shape[1]} timesteps; MiniRocket needs "
                f"at least {MIN_TIMESTEPS} (its kernels have length 9). Use longer windows."
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"MiniRocketControl.{where}: X contains NaN or inf")
        return np.ascontiguousarray(a.transpose(0, 2, 1))

    def _features(self, X: Any, where: str) -> np.ndarray:
        if self.classifier_ is None:
            raise RuntimeError(f"MiniRocketControl.{where}: call fit(X, y) first")
        panel = self._panel(X, where)
        if panel.shape[1] != self.n_features_:
            raise ValueError(
                f"MiniRocketControl.{where}: X has {panel.shape[1]} features per timestep, "
                f"fit saw {self.n_features_}"
            )
        return self.scaler_.transform(np.asarray(self.transform_.transform(panel)))

    def fit(self, X: Any, y: Any) -> "MiniRocketControl":
        """Fit the transform, the scaler and the ridge classifier on X (n, T, F), y (n,)."""
        from sktime.transformations.panel.rocket import MiniRocket, MiniRocketMultivariate

        from moola import numba_warmup

        numba_warmup.wait()  # a background compile of the same kernels: load them, not redo them
        panel = self._panel(X, "fit")
        y = np.asarray(y)
        if y.shape != (panel.shape[0],):
            raise ValueError(f"MiniRocketControl.fit: y has shape {y.shape}, X has {panel.shape[0]} windows")
        if np.unique(y).size < 2:
            raise ValueError("MiniRocketControl.fit: y has a single class; a classifier needs two")
        self.n_features_ = panel.shape[1]
        cls = MiniRocket if self.n_features_ == 1 else MiniRocketMultivariate
        self.transform_ = cls(num_kernels=self.num_kernels, random_state=self.seed, n_jobs=1)
        feats = np.asarray(self.transform_.fit_transform(panel))
        self.scaler_ = StandardScaler()
        feats = self.scaler_.fit_transform(feats)
        self.classifier_ = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10))
        self.classifier_.fit(feats, y)
        return self

    @property
    def classes_(self) -> np.ndarray:
        if self.classifier_ is None:
            raise RuntimeError("MiniRocketControl: call fit(X, y) first")
        return self.classifier_.classes_

    def decision_function(self, X: Any) -> np.ndarray:
        """Ridge scores: (n,) for two classes (positive = classes_[1]), else (n, K)."""
        feats = self._features(X, "decision_function")
        return self.classifier_.decision_function(feats)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (n,), from classes_."""
        feats = self._features(X, "predict")
        return self.classifier_.predict(feats)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of the decision values, (n, K); binary scores d become [sigmoid(-d), sigmoid(d)].

        Ridge scores are not calibrated probabilities; gate 7 calibrates them (isotonic).
        """
        d = np.asarray(self.decision_function(X), dtype=np.float64)
        if d.ndim == 1:
            d = np.stack([np.zeros_like(d), d], axis=1)
        d = d - d.max(axis=1, keepdims=True)
        e = np.exp(d)
        return e / e.sum(axis=1, keepdims=True)
