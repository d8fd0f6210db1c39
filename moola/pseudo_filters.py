"""Filters for gate-5 pseudo-samples: quality score, dedup / leakage, KS distribution check.

Pure numpy / scipy; used by :func:`moola.pseudo.generate_pseudo_samples` and re-exported from
``moola.pseudo``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import ks_2samp

from moola.augment import ohlc_valid

SHAPE_WEIGHT = 0.5  # a correlation of 0.7 with the source alone costs 0.15 (quality 0.86)
SCALE_TOL = 0.5  # log-units: a std 1.65x outside the class's 5-95% band costs exp(-1)
KS_POINTS = 8  # time steps sampled per window for the KS check (see ks_filter)
KS_MAX_TRIM = 0.5  # at most this share of candidates may be trimmed before the batch is rejected


class LeakageError(AssertionError):
    """A pseudo-sample equals or nearly equals a validation / test window."""


# ---------------------------------------------------------------------------------------------
# Quality score
# ---------------------------------------------------------------------------------------------


def valid_windows(X: np.ndarray, ohlc: bool) -> np.ndarray:
    """(n,) bool: every value finite and, for OHLC, every bar valid (see moola.augment)."""
    x = np.asarray(X, dtype=np.float64)
    finite = np.isfinite(x).all(axis=(1, 2))
    if not ohlc:
        return finite
    return finite & ohlc_valid(np.where(np.isfinite(x), x, 0.0))


def window_stats(X: np.ndarray, ohlc: bool) -> np.ndarray:
    """(n, 2): per-window std (pooled over OHLC; else mean of per-feature stds) and the mean
    over features of the std of first differences along time."""
    x = np.asarray(X, dtype=np.float64)
    std = x.std(axis=(1, 2)) if ohlc else x.std(axis=1).mean(axis=1)
    dstd = np.diff(x, axis=1).std(axis=1).mean(axis=1)
    return np.stack([std, dstd], axis=1)


def _shape_correlation(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(n,) mean over features of the Pearson correlation along time of A[i] and B[i]."""
    a = A - A.mean(axis=1, keepdims=True)
    b = B - B.mean(axis=1, keepdims=True)
    na, nb = np.sqrt((a**2).sum(axis=1)), np.sqrt((b**2).sum(axis=1))  # (n, F)
    tiny = 1e-12
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / (na * nb)
    r = np.where((na <= tiny) & (nb <= tiny), 1.0, np.where((na <= tiny) | (nb <= tiny), 0.0, r))
    return r.mean(axis=1)


def quality_scores(
    X_cand: np.ndarray,
    X_source: np.ndarray,
    y_cand: np.ndarray,
    X_train: np.ndarray,
    y_train: np.ndarray,
    ohlc: bool,
) -> np.ndarray:
    """Quality in [0, 1] of each candidate window, (n,).

    quality = valid x exp(-(d_shape + d_scale)), where

    - valid is 1 when every value is finite and (OHLC) every bar satisfies
      high >= max(open, close) and low <= min(open, close); else 0.
    - d_shape = SHAPE_WEIGHT x max(0, 1 - r) (weight 0.5), r = mean over features of the Pearson correlation along time
      between the candidate and its source window (a constant feature: r = 1 if both are
      constant, 0 if one is). Pure noise (r ~ 0) costs ~0.5, i.e. quality <= 0.61; the
      weight leaves room for time-warping, which displaces a random-walk window by a few bars.
    - d_scale = mean over two statistics s (the window std and the std of first differences,
      see :func:`window_stats`) of (e_s / SCALE_TOL)^2, where e_s = distance in log units from
      the candidate's s to the [5th, 95th] percentile band of s over the real training windows
      of the candidate's class, widened to include the source window's own s (0 inside). A constant window (s = 0) scores 0; a
      window scaled 10x costs ((ln 10) / 0.5)^2 ~ 21.

    With the default quality_min 0.85, d_shape + d_scale must stay below ~0.16: light jitter,
    warping and scaling pass; noise, constant and re-scaled windows do not.
    """
    xc = np.asarray(X_cand, dtype=np.float64)
    xs = np.asarray(X_source, dtype=np.float64)
    yc, yt = np.asarray(y_cand), np.asarray(y_train)
    valid = valid_windows(xc, ohlc)
    xc_safe = np.where(np.isfinite(xc), xc, 0.0)

    d_shape = SHAPE_WEIGHT * np.maximum(0.0, 1.0 - _shape_correlation(xc_safe, xs))

    real_stats = window_stats(X_train, ohlc)
    cand_stats = window_stats(xc_safe, ohlc)
    lo = np.empty_like(cand_stats)
    hi = np.empty_like(cand_stats)
    for c in np.unique(yc):
        ref = real_stats[yt == c]
        if ref.shape[0] == 0:
            raise ValueError(f"quality_scores: class {c} has no real training window to compare with")
        lo[yc == c], hi[yc == c] = np.percentile(ref, 5, axis=0), np.percentile(ref, 95, axis=0)
    src_stats = window_stats(xs, ohlc)  # a faithful copy of a real tail window is not penalised
    lo, hi = np.minimum(lo, src_stats), np.maximum(hi, src_stats)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_v = np.where(cand_stats > 0, np.log(np.maximum(cand_stats, 1e-300)), -np.inf)
        excess = np.maximum.reduce([np.zeros_like(log_v), np.log(lo) - log_v, log_v - np.log(hi)])
        excess = np.nan_to_num(excess, nan=np.inf)
        d_scale = ((excess / SCALE_TOL) ** 2).mean(axis=1)
    return np.where(valid, np.exp(-(d_shape + d_scale)), 0.0)


# ---------------------------------------------------------------------------------------------
# Dedup and leakage
# ---------------------------------------------------------------------------------------------


def window_scale(X_ref: np.ndarray) -> float:
    """Typical within-window spread of the reference windows: sqrt(mean per-window variance)."""
    var = np.asarray(X_ref, dtype=np.float64).var(axis=1).mean()
    return float(np.sqrt(var)) if var > 0 else 1.0


def normalised_distances(A: np.ndarray, B: np.ndarray, scale: float) -> np.ndarray:
    """(len(A), len(B)) RMS difference between windows divided by `scale`."""
    a = np.asarray(A, dtype=np.float64).reshape(len(A), -1)
    b = np.asarray(B, dtype=np.float64).reshape(len(B), -1)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    return np.sqrt(cdist(a, b, "sqeuclidean") / a.shape[1]) / scale


def dedup_mask(
    X_cand: np.ndarray, X_real: np.ndarray, threshold: float, scale: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Which candidates survive dedup: (keep (n,) bool, reason (n,) str, '' for kept).

    A candidate within `threshold` (see :func:`normalised_distances`, scale defaults to
    :func:`window_scale` of X_real) of a real window is 'duplicate_of_real'; of an earlier kept
    candidate, 'duplicate_of_pseudo'.
    """
    scale = window_scale(X_real) if scale is None else scale
    n = len(X_cand)
    reason = np.full(n, "", dtype=object)
    if n == 0:  # every candidate fell to an earlier filter (e.g. augment.quality_min = 1.0)
        return np.zeros(0, dtype=bool), reason
    near_real = (normalised_distances(X_cand, X_real, scale) <= threshold).any(axis=1)
    reason[near_real] = "duplicate_of_real"
    pair = normalised_distances(X_cand, X_cand, scale)
    kept: list[int] = []
    for i in np.flatnonzero(~near_real):
        if kept and (pair[i, kept] <= threshold).any():
            reason[i] = "duplicate_of_pseudo"
        else:
            kept.append(int(i))
    return reason == "", reason


def assert_no_leakage(
    X_pseudo: np.ndarray, X_other: np.ndarray, threshold: float = 0.02, name: str = "validation"
) -> None:
    """Raise LeakageError if any pseudo window is within `threshold` (normalised RMS distance,
    scale from X_other) of a window of X_other (validation or test windows)."""
    if len(X_pseudo) == 0 or len(X_other) == 0:
        return
    d = normalised_distances(X_pseudo, X_other, window_scale(X_other))
    hits = np.argwhere(d <= threshold)
    if hits.size:
        pairs = ", ".join(f"pseudo {i} ~ {name} {j}" for i, j in hits[:5])
        raise LeakageError(
            f"{len(hits)} pseudo-sample(s) duplicate {name} windows (distance <= {threshold}): "
            f"{pairs}; pseudo-samples must be generated from the training split only"
        )


# ---------------------------------------------------------------------------------------------
# Distribution check
# ---------------------------------------------------------------------------------------------


def _ks_points(T: int, n_points: int) -> np.ndarray:
    return np.unique(np.linspace(0, T - 1, min(n_points, T)).round().astype(np.int64))


def _ks_pvalues(real: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """(F,) KS p-values between sampled values (n, P, F) of real and candidate windows."""
    F = real.shape[2]
    return np.array(
        [ks_2samp(real[:, :, f].ravel(), cand[:, :, f].ravel()).pvalue for f in range(F)]
    )


def ks_filter(
    X_cand: np.ndarray,
    X_real: np.ndarray,
    p_min: float,
    n_points: int = KS_POINTS,
    max_trim: float = KS_MAX_TRIM,
) -> tuple[np.ndarray, np.ndarray, bool, int]:
    """Per-feature two-sample KS check of candidates against real training windows.

    Statistic: for each feature, the values at `n_points` evenly spaced time steps of every
    window (so every window contributes the same few draws: 78 real windows -> 624). Pooling all
    T x n raw values makes KS hypersensitive (tens of thousands of correlated draws); per-window
    mean/std are degenerate on per-window z-scored data, so sampled values are used.

    If some feature has p < p_min, candidates are trimmed one at a time (recomputing the test):
    on the worst feature, each candidate's sampled values are placed on the real ECDF (u in
    [0, 1]); if the set is shifted (mean u off the real mean by > 0.02) the candidate furthest in
    the shift's direction goes, otherwise (too wide) the one with the most extreme mean u. At
    most `max_trim` of the candidates may go; if the check still fails the batch is rejected.

    Returns (keep (n,) bool, pvalues (F,) of the kept set — of the full set when rejected —,
    passed, n_trimmed).
    """
    xc = np.asarray(X_cand, dtype=np.float64)
    xr = np.asarray(X_real, dtype=np.float64)
    n = xc.shape[0]
    pts = _ks_points(xr.shape[1], n_points)
    real, cand = xr[:, pts, :], xc[:, pts, :]
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep, np.full(xr.shape[2], np.nan), False, 0
    p_full = p = _ks_pvalues(real, cand)
    trimmed, max_remove = 0, int(np.floor(max_trim * n))
    while (p < p_min).any():
        if trimmed >= max_remove or keep.sum() <= 1:
            return np.zeros(n, dtype=bool), p_full, False, 0
        f = int(np.argmin(p))
        ref = np.sort(real[:, :, f].ravel())
        u_real = (np.searchsorted(ref, ref, side="right") / ref.size).mean()
        u = (np.searchsorted(ref, cand[:, :, f], side="right") / ref.size).mean(axis=1)  # (n,)
        shift = u[keep].mean() - u_real
        score = np.sign(shift) * (u - u_real) if abs(shift) > 0.02 else np.abs(u - u_real)
        score[~keep] = -np.inf
        keep[int(np.argmax(score))] = False
        trimmed += 1
        p = _ks_pvalues(real, cand[keep])
    return keep, p, True, trimmed
