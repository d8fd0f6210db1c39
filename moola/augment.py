"""Augmentations of training windows (gate 5's pseudo-samples): jitter, scaling, time-warp.

Every function takes windows ``X: (n, T, F)`` of the *training split only* and an explicit
``rng: np.random.Generator``; the same generator state gives the same output. Inputs are never
modified; the output keeps the input's dtype (arithmetic is done in float64).

OHLC windows (``ohlc=True``, F must be 4, features ordered open, high, low, close) come back as
valid bars: ``high >= max(open, close)`` and ``low <= min(open, close)``. Operations that can
break the ordering (jitter adds independent noise to each feature) are followed by
:func:`repair_ohlc`; the others (positive scaling, linear interpolation) preserve it and are
repaired anyway, which is then a no-op.

Scales are relative to each window, so one setting works on z-scored windows and raw prices:
jitter noise is ``sigma`` x the window's standard deviation, and scaling multiplies the
deviations from the window's mean.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline

from moola.config import AugmentSettings

OPEN, HIGH, LOW, CLOSE = 0, 1, 2, 3
OHLC_NAMES = ("open", "high", "low", "close")


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


def _check_windows(X: np.ndarray, ohlc: bool = False, name: str = "X") -> np.ndarray:
    """Return X as an array after checking it is (n, T, F) (and F == 4 when ohlc)."""
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"{name}: expected windows of shape (n, T, F), got shape {X.shape}")
    if ohlc and X.shape[2] != 4:
        raise ValueError(
            f"{name}: ohlc=True needs F == 4 features (open, high, low, close), got F={X.shape[2]}; "
            "pass ohlc=False for other data"
        )
    return X


def _out(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Cast the float64 result back to the input's float dtype."""
    dtype = like.dtype if np.issubdtype(like.dtype, np.floating) else np.float64
    return values.astype(dtype, copy=False)


def ohlc_valid(X: np.ndarray, atol: float = 1e-9) -> np.ndarray:
    """Per-window bool (n,): every bar has high >= max(open, close) and low <= min(open, close)."""
    X = _check_windows(X, ohlc=True)
    o, h, lo, c = (X[..., i] for i in (OPEN, HIGH, LOW, CLOSE))
    ok = (h >= np.maximum(o, c) - atol) & (lo <= np.minimum(o, c) + atol)
    return ok.all(axis=1)


def repair_ohlc(X: np.ndarray) -> np.ndarray:
    """Valid OHLC bars with the smallest change: raise high to max(open, close), lower low to
    min(open, close). Open and close (the bar's body) are never moved. Returns a copy."""
    X = _check_windows(X, ohlc=True)
    out = np.array(X, copy=True)
    o, c = out[..., OPEN], out[..., CLOSE]
    out[..., HIGH] = np.maximum(out[..., HIGH], np.maximum(o, c))
    out[..., LOW] = np.minimum(out[..., LOW], np.minimum(o, c))
    return out


def _finish(values: np.ndarray, like: np.ndarray, ohlc: bool) -> np.ndarray:
    """Repair OHLC bars when asked, then cast to the input dtype."""
    return _out(repair_ohlc(values) if ohlc else values, like)


# ---------------------------------------------------------------------------------------------
# Single-window transforms
# ---------------------------------------------------------------------------------------------


def _window_center_scale(X: np.ndarray, ohlc: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-window mean and std, shape (n, 1, F): pooled over features for OHLC (one price scale)."""
    axes = (1, 2) if ohlc else (1,)
    mean = X.mean(axis=axes, keepdims=True)
    std = X.std(axis=axes, keepdims=True)
    if ohlc:
        mean = np.broadcast_to(mean, (X.shape[0], 1, X.shape[2]))
        std = np.broadcast_to(std, (X.shape[0], 1, X.shape[2]))
    return mean, std


def _prepare(X: np.ndarray, sigma: float, ohlc: bool, op: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked input and its float64 working copy; a negative sigma is an error naming `op`."""
    X = _check_windows(X, ohlc)
    if sigma < 0:
        raise ValueError(f"{op}: sigma must be >= 0, got {sigma}")
    return X, X.astype(np.float64)


def jitter(X: np.ndarray, sigma: float, rng: np.random.Generator, ohlc: bool = False) -> np.ndarray:
    """Add Gaussian noise with standard deviation ``sigma`` x the window's own std.

    X: (n, T, F). The std is per window and feature (pooled over the four features for OHLC,
    which share one price scale). A constant feature gets no noise. sigma == 0 returns a copy.
    """
    X, x = _prepare(X, sigma, ohlc, "jitter")
    if sigma == 0 or x.size == 0:
        return _finish(x, X, ohlc)
    _, std = _window_center_scale(x, ohlc)
    noise = rng.normal(0.0, 1.0, size=x.shape) * (sigma * std)
    return _finish(x + noise, X, ohlc)


def scaling(X: np.ndarray, sigma: float, rng: np.random.Generator, ohlc: bool = False) -> np.ndarray:
    """Multiply each window's deviations from its mean by a positive factor exp(N(0, sigma)).

    X: (n, T, F). OHLC: one factor per window (all four features, about the pooled mean), an
    affine map with positive scale, so bars stay valid. Otherwise one factor per window and
    feature. The level (mean) is kept, so raw prices are not shifted. sigma == 0 is a copy.
    """
    X, x = _prepare(X, sigma, ohlc, "scaling")
    if sigma == 0 or x.size == 0:
        return _finish(x, X, ohlc)
    n, _, f = x.shape
    shape = (n, 1, 1) if ohlc else (n, 1, f)
    factor = np.exp(rng.normal(0.0, sigma, size=shape))
    mean, _ = _window_center_scale(x, ohlc)
    return _finish(mean + (x - mean) * factor, X, ohlc)


def warp_paths(n: int, T: int, sigma: float, rng: np.random.Generator, n_knots: int = 4) -> np.ndarray:
    """Smooth, strictly increasing time paths (n, T) from 0 to T-1 (identity at sigma == 0).

    The local speed is exp(cubic spline through n_knots + 2 evenly spaced N(0, sigma) knots):
    always positive, so the cumulative time is monotone; it is rescaled to end at T - 1.
    """
    t = np.arange(T, dtype=np.float64)
    if sigma == 0 or T < 2:
        return np.broadcast_to(t, (n, T)).copy()
    knots = np.linspace(0.0, T - 1.0, n_knots + 2)
    log_speed = rng.normal(0.0, sigma, size=(n, n_knots + 2))
    speed = np.exp(CubicSpline(knots, log_speed, axis=1)(t))  # (n, T) > 0
    cum = np.cumsum(speed, axis=1)
    cum -= cum[:, :1]
    return cum / cum[:, -1:] * (T - 1.0)


def time_warp(
    X: np.ndarray, sigma: float, rng: np.random.Generator, n_knots: int = 4, ohlc: bool = False
) -> np.ndarray:
    """Resample each window along a smooth monotone warp of its time axis (see :func:`warp_paths`).

    X: (n, T, F) -> (n, T, F); values at the warped times are linearly interpolated between
    neighbouring bars (a convex combination, which keeps OHLC bars valid). sigma == 0 is a copy.
    """
    X, x = _prepare(X, sigma, ohlc, "time_warp")
    n, T, _ = x.shape
    if sigma == 0 or T < 2 or n == 0:
        return _finish(x, X, ohlc)
    path = warp_paths(n, T, sigma, rng, n_knots)
    left = np.clip(np.floor(path).astype(np.int64), 0, T - 2)
    frac = (path - left)[..., None]  # (n, T, 1)
    x0 = np.take_along_axis(x, left[..., None], axis=1)
    x1 = np.take_along_axis(x, left[..., None] + 1, axis=1)
    return _finish(x0 * (1.0 - frac) + x1 * frac, X, ohlc)
