"""Gate-5 pseudo-samples: counts, quality score, KS check, dedup, leakage (moola.pseudo)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from moola.augment import jitter, ohlc_valid
from moola.config import AugmentSettings
from moola.pseudo import (
    REASONS,
    LeakageError,
    allocate_per_class,
    assert_no_leakage,
    dedup_mask,
    generate_pseudo_samples,
    ks_filter,
    pseudo_count,
    quality_scores,
    valid_windows,
)
from moola.testing import random_ohlc as _random_ohlc


def random_ohlc(n: int, T: int = 60, seed: int = 0, zscore: bool = True) -> np.ndarray:
    """Longer windows than moola.testing's default: the filters need a few dozen bars."""
    return _random_ohlc(n, T, seed, zscore)


def labels(n: int, share_first: float = 0.57) -> np.ndarray:
    return (np.arange(n) >= round(share_first * n)).astype(np.int64)


@pytest.fixture(scope="module")
def train78():
    X = random_ohlc(78, seed=1)
    return X, labels(78)


# --- counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "expected"), [(78, 156), (120, 210), (0, 0), (3, 6)])
def test_pseudo_count_respects_ratio_and_cap(n, expected):
    assert pseudo_count(n, 2.0, 210) == expected


def test_allocation_is_proportional_and_exact():
    y = np.r_[np.zeros(45, int), np.ones(33, int)]
    alloc = allocate_per_class(y, 156)
    assert alloc == {0: 90, 1: 66}
    assert sum(allocate_per_class(np.r_[np.zeros(5), np.ones(3), np.full(3, 2)], 10).values()) == 10


@pytest.mark.parametrize(("n", "expected"), [(78, 156), (120, 210)])
def test_generated_counts(n, expected):
    X = random_ohlc(n, T=30, seed=n)
    r = generate_pseudo_samples(X, labels(n), AugmentSettings(), np.random.default_rng(0))
    assert r.n_generated == expected
    assert r.n_accepted + sum(r.rejected.values()) == r.n_generated
    assert set(r.rejected) == set(REASONS)
    shares = np.bincount(labels(n)) / n
    assert abs(r.per_class_generated[0] - shares[0] * expected) <= 1


# --- generation end to end ------------------------------------------------------------------


def test_generate_accepts_most_and_records_everything(train78):
    X, y = train78
    s = AugmentSettings()
    r = generate_pseudo_samples(X, y, s, np.random.default_rng(0))
    assert r.ks_passed and r.n_accepted >= 0.7 * r.n_generated, r.summary()
    assert r.X.shape == (r.n_accepted, 60, 4) and r.X.dtype == X.dtype
    assert ohlc_valid(r.X).all()
    assert np.all(r.quality >= s.quality_min) and r.quality.shape == (r.n_accepted,)
    np.testing.assert_array_equal(r.y, y[r.source_idx])  # label = source's label
    assert all(p is not None and p >= s.ks_p_min for p in r.ks_pvalues.values())
    assert list(r.ks_pvalues) == ["open", "high", "low", "close"]
    json.dumps(r.summary())  # JSON-safe record for the verdict
    again = generate_pseudo_samples(X, y, s, np.random.default_rng(0))
    np.testing.assert_array_equal(again.X, r.X)


def test_generate_generic_features_without_ohlc():
    X = np.random.default_rng(0).normal(size=(20, 30, 2)).cumsum(axis=1)
    r = generate_pseudo_samples(X, labels(20), AugmentSettings(), np.random.default_rng(0), ohlc=False)
    assert r.n_generated == 40 and list(r.ks_pvalues) == ["f0", "f1"]


def test_pseudo_never_contains_validation_windows(train78):
    X, y = train78
    X_val = random_ohlc(20, seed=99)
    r = generate_pseudo_samples(X, y, AugmentSettings(), np.random.default_rng(0))
    assert_no_leakage(r.X, X_val, threshold=AugmentSettings().dedup_threshold)
    leaked = np.concatenate([r.X, X_val[3:4]])
    with pytest.raises(LeakageError, match="validation"):
        assert_no_leakage(leaked, X_val)
    near = np.concatenate([r.X, X_val[5:6] + 1e-4])
    with pytest.raises(LeakageError):
        assert_no_leakage(near, X_val, threshold=0.02)


# --- quality score --------------------------------------------------------------------------


def test_quality_rejects_garbage_and_accepts_light_jitter(train78):
    X, y = train78
    src, ys = X[:10], y[:10]
    rng = np.random.default_rng(0)
    qmin = AugmentSettings().quality_min
    garbage = {
        "pure_noise": rng.normal(size=src.shape),
        "constant": np.full(src.shape, 0.5),
        "scaled_10x": src * 10.0,
    }
    for name, cand in garbage.items():
        q = quality_scores(cand, src, ys, X, y, ohlc=False)
        assert np.all(q < qmin), f"{name}: quality {q.round(3)} should be < {qmin}"
    light = jitter(src, 0.03, rng, ohlc=True)
    q = quality_scores(light, src, ys, X, y, ohlc=True)
    assert np.all(q >= qmin) and np.all(q <= 1.0), q
    assert np.all(quality_scores(src, src, ys, X, y, ohlc=True) > 0.99)


def test_quality_zero_for_invalid_bars(train78):
    X, y = train78
    bad = X[:3].copy()
    bad[:, 5, 1] = bad[:, 5, 2] - 1.0  # high below low
    nan = X[3:4].copy()
    nan[0, 0, 0] = np.nan
    assert np.all(quality_scores(bad, X[:3], y[:3], X, y, ohlc=True) == 0)
    assert quality_scores(nan, X[3:4], y[3:4], X, y, ohlc=True)[0] == 0
    assert valid_windows(np.concatenate([bad, nan, X[:2]]), ohlc=True).tolist() == [False] * 4 + [True] * 2
    assert valid_windows(bad, ohlc=False).all()  # bar ordering only matters for OHLC


# --- KS distribution check ------------------------------------------------------------------


def test_ks_passes_for_same_distribution(train78):
    X, _ = train78
    same = random_ohlc(150, seed=7)
    keep, p, passed, trimmed = ks_filter(same, X, 0.1)
    assert passed and keep.all() and trimmed == 0 and np.all(p >= 0.1), p


def test_ks_rejects_a_shifted_batch(train78):
    X, _ = train78
    shifted = random_ohlc(150, seed=7) + 1.0
    keep, p, passed, _ = ks_filter(shifted, X, 0.1)
    assert not passed and not keep.any() and np.all(p < 0.1)


def test_ks_trims_the_shifted_minority(train78):
    X, _ = train78
    good = random_ohlc(120, seed=7)
    bad = random_ohlc(30, seed=8) + 1.5
    cand = np.concatenate([good, bad])
    keep, p, passed, trimmed = ks_filter(cand, X, 0.1)
    assert passed and np.all(p >= 0.1)
    assert trimmed > 0
    assert (~keep[120:]).sum() >= 0.8 * 30  # most of the shifted ones went
    assert keep[:120].mean() > 0.9  # few of the good ones did


def test_generate_records_ks_batch_rejection(train78):
    X, y = train78
    wild = AugmentSettings(scaling_sigma=0.0, jitter_sigma=0.0, time_warp_sigma=0.0, quality_min=0.0,
                           dedup_threshold=-1.0, ks_p_min=1.01)
    r = generate_pseudo_samples(X, y, wild, np.random.default_rng(0))
    assert not r.ks_passed and r.n_accepted == 0 and r.rejected["ks_batch"] == r.n_generated
    assert "KS" in r.reason


# --- dedup ----------------------------------------------------------------------------------


def test_dedup_removes_copies_of_real_and_of_each_other(train78):
    X, _ = train78
    fresh = random_ohlc(3, seed=50)
    cand = np.stack([
        X[0],  # exact copy of a real window
        X[1] + 1e-3,  # near copy of a real window
        fresh[0],
        fresh[0],  # exact copy of an earlier candidate
        fresh[0] + 1e-3,  # near copy of an earlier candidate
        fresh[1],
    ])
    keep, why = dedup_mask(cand, X, threshold=0.02)
    assert keep.tolist() == [False, False, True, False, False, True]
    assert why.tolist() == ["duplicate_of_real", "duplicate_of_real", "", "duplicate_of_pseudo",
                            "duplicate_of_pseudo", ""]


def test_generate_dedups_when_candidates_equal_sources(train78):
    X, y = train78
    copies = dataclasses.replace(AugmentSettings(), scaling_sigma=0.0, jitter_sigma=0.0, time_warp_sigma=0.0)
    r = generate_pseudo_samples(X, y, copies, np.random.default_rng(0))
    assert r.n_accepted == 0 and r.rejected["duplicate_of_real"] == r.n_generated


def test_dedup_of_no_candidates_keeps_nothing_and_does_not_crash():
    """augment.quality_min = 1.0 leaves no candidate for dedup: gate 5 then fails saying no
    pseudo-sample survived, instead of crashing on an empty array."""
    import numpy as np

    from moola.pseudo_filters import dedup_mask

    keep, why = dedup_mask(np.zeros((0, 20, 4)), np.random.default_rng(0).normal(size=(5, 20, 4)),
                           0.02)
    assert keep.shape == (0,) and why.shape == (0,)
