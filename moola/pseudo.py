"""Pseudo-samples for gate 5: generate from training windows, then filter (quality, dedup, KS).

Only training arrays enter :func:`generate_pseudo_samples`; :func:`assert_no_leakage` checks the
result against validation / test windows. Each rejected candidate is counted under one reason:

- ``invalid``: non-finite values or broken OHLC bars (quality 0);
- ``quality``: quality score below ``settings.quality_min`` (see :func:`quality_scores`);
- ``duplicate_of_real``: within ``settings.dedup_threshold`` of a real training window;
- ``duplicate_of_pseudo``: within the threshold of an earlier accepted candidate (first kept);
- ``ks``: trimmed to make the distribution check pass (see :func:`ks_filter`);
- ``ks_batch``: the check still failed after the allowed trimming, so the whole set was rejected.

The filters run in that order (dedup before KS), so the recorded KS p-values describe exactly the
windows that are returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from moola.augment import OHLC_NAMES, _check_windows, jitter, repair_ohlc, scaling, time_warp
from moola.config import AugmentSettings
from moola.pseudo_filters import (  # re-exported: moola.pseudo is the public entry point
    KS_MAX_TRIM,
    KS_POINTS,
    SCALE_TOL,
    SHAPE_WEIGHT,
    LeakageError,
    assert_no_leakage,
    dedup_mask,
    ks_filter,
    normalised_distances,
    quality_scores,
    valid_windows,
    window_scale,
    window_stats,
)

__all__ = [
    "REASONS", "PseudoResult", "generate_pseudo_samples", "pseudo_count", "allocate_per_class",
    "KS_MAX_TRIM", "KS_POINTS", "SCALE_TOL", "SHAPE_WEIGHT", "LeakageError", "assert_no_leakage",
    "dedup_mask", "ks_filter", "normalised_distances", "quality_scores", "valid_windows",
    "window_scale", "window_stats",
]

REASONS = ("invalid", "quality", "duplicate_of_real", "duplicate_of_pseudo", "ks", "ks_batch")


@dataclass
class PseudoResult:
    """Accepted pseudo-samples and the record of the filtering.

    X: (m, T, F) accepted windows (input dtype); y: (m,) int64 labels (the source's);
    quality: (m,) their quality scores; source_idx: (m,) row of X_train each came from;
    rejected: reason -> count (all REASONS present; n_accepted + sum == n_generated);
    ks_pvalues: feature name -> p of the returned set (of the rejected set if ks_passed is
    False; None when there was nothing to test).
    """

    X: np.ndarray
    y: np.ndarray
    n_generated: int
    n_accepted: int
    rejected: dict[str, int]
    ks_pvalues: dict[str, float | None]
    quality: np.ndarray
    source_idx: np.ndarray
    ks_passed: bool = False
    per_class_generated: dict[int, int] = field(default_factory=dict)
    reason: str = ""

    def summary(self) -> dict[str, Any]:
        """JSON-safe record for a verdict (no arrays)."""
        q = self.quality
        return {
            "n_generated": self.n_generated,
            "n_accepted": self.n_accepted,
            "rejected": dict(self.rejected),
            "ks_pvalues": dict(self.ks_pvalues),
            "ks_passed": self.ks_passed,
            "quality_min": float(q.min()) if q.size else None,
            "quality_mean": float(q.mean()) if q.size else None,
            "per_class_generated": {str(k): v for k, v in self.per_class_generated.items()},
            "reason": self.reason,
        }


# ---------------------------------------------------------------------------------------------
# Counts
# ---------------------------------------------------------------------------------------------


def pseudo_count(n_train: int, ratio: float, max_samples: int) -> int:
    """min(round(ratio x n_train), max_samples), rounding halves up."""
    return int(min(np.floor(ratio * n_train + 0.5), max_samples))


def allocate_per_class(y: np.ndarray, total: int) -> dict[int, int]:
    """Split `total` over the classes of `y` in proportion to their counts (largest remainder)."""
    classes, counts = np.unique(np.asarray(y), return_counts=True)
    exact = total * counts / counts.sum()
    base = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - base), kind="stable")
    base[order[: total - int(base.sum())]] += 1
    return {int(c): int(b) for c, b in zip(classes, base)}


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def generate_pseudo_samples(
    X_train: np.ndarray,
    y_train: np.ndarray,
    settings: AugmentSettings,
    rng: np.random.Generator,
    ohlc: bool = True,
    feature_names: Sequence[str] | None = None,
) -> PseudoResult:
    """Generate pseudo-samples from *training* windows and filter them (module docstring).

    X_train: (n, T, F); y_train: (n,) int labels. Generates min(round(ratio x n), max_samples)
    candidates, split over classes in proportion to their counts; each is a real training
    window of its class (sources cycled in random order) passed through time_warp, scaling
    and jitter with the settings' sigmas, and keeps its source's label.
    """
    X = _check_windows(X_train, ohlc, name="X_train")
    y = np.asarray(y_train).astype(np.int64)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y_train: expected shape ({X.shape[0]},), got {y.shape}")
    F = X.shape[2]
    names = list(feature_names) if feature_names else (
        list(OHLC_NAMES) if ohlc else [f"f{i}" for i in range(F)]
    )
    if len(names) != F:
        raise ValueError(f"feature_names: expected {F} names, got {len(names)}")

    # 1. sources: each class's windows in random order, cycled to the class's quota
    per_class = allocate_per_class(y, pseudo_count(len(y), settings.ratio, settings.max_samples))
    src_parts = []
    for c, quota in per_class.items():
        members = rng.permutation(np.flatnonzero(y == c))
        src_parts.append(np.resize(members, quota))
    src = np.concatenate(src_parts) if src_parts else np.zeros(0, dtype=np.int64)
    n_gen = int(src.size)

    # 2. candidates: composition of time-warp, scaling and jitter (valid OHLC bars)
    cand = X[src].astype(np.float64)
    cand = time_warp(cand, settings.time_warp_sigma, rng, ohlc=ohlc)
    cand = scaling(cand, settings.scaling_sigma, rng, ohlc=ohlc)
    cand = jitter(cand, settings.jitter_sigma, rng, ohlc=ohlc)
    if ohlc:
        cand = repair_ohlc(cand)
    y_cand = y[src]

    # 3. filters: validity / quality, dedup, KS
    reason = np.full(n_gen, "", dtype=object)
    q = quality_scores(cand, X[src], y_cand, X, y, ohlc) if n_gen else np.zeros(0)
    reason[q < settings.quality_min] = "quality"
    reason[~valid_windows(cand, ohlc)] = "invalid"
    alive = np.flatnonzero(reason == "")
    keep, why = dedup_mask(cand[alive], X, settings.dedup_threshold)
    reason[alive[~keep]] = why[~keep]
    alive = alive[keep]
    ks_keep, pvals, passed, _ = ks_filter(cand[alive], X, settings.ks_p_min)
    reason[alive[~ks_keep]] = "ks" if passed else "ks_batch"
    final = alive[ks_keep]

    rejected = {r: int((reason == r).sum()) for r in REASONS}
    if n_gen == 0:
        msg = "no candidates: ratio x n_train rounds to 0 or max_samples is 0"
    elif not passed and alive.size == 0:
        msg = "every candidate was rejected before the KS check (see rejected)"
    elif not passed:
        msg = f"KS check failed (p < {settings.ks_p_min}) even after trimming; batch rejected"
    else:
        msg = f"accepted {final.size} of {n_gen} candidates"
    return PseudoResult(
        X=cand[final].astype(X.dtype if np.issubdtype(X.dtype, np.floating) else np.float64),
        y=y_cand[final],
        n_generated=n_gen,
        n_accepted=int(final.size),
        rejected=rejected,
        ks_pvalues={
            nm: (None if not np.isfinite(pv) else float(pv)) for nm, pv in zip(names, pvals)
        },
        quality=q[final],
        source_idx=src[final],
        ks_passed=bool(passed),
        per_class_generated=per_class,
        reason=msg,
    )
