"""Invariants of the augmentations in moola.augment, on small random OHLC and generic windows."""

from __future__ import annotations

import numpy as np
import pytest

from moola.augment import (
    jitter,
    ohlc_valid,
    repair_ohlc,
    scaling,
    time_warp,
    warp_paths,
)
from moola.config import AugmentSettings
from moola.testing import random_ohlc




SIGMA = 0.2  # strong enough that jitter breaks raw bars before repair

SINGLE_OPS = {
    "jitter": lambda X, rng, ohlc: jitter(X, SIGMA, rng, ohlc=ohlc),
    "scaling": lambda X, rng, ohlc: scaling(X, SIGMA, rng, ohlc=ohlc),
    "time_warp": lambda X, rng, ohlc: time_warp(X, SIGMA, rng, ohlc=ohlc),
}


@pytest.mark.parametrize("op", list(SINGLE_OPS))
def test_shape_dtype_and_input_untouched(op):
    X = random_ohlc()
    before = X.copy()
    out = SINGLE_OPS[op](X, np.random.default_rng(1), True)
    assert out.shape == X.shape and out.dtype == X.dtype
    np.testing.assert_array_equal(X, before)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("op", list(SINGLE_OPS))
def test_deterministic_with_seed(op):
    X = random_ohlc()
    a = SINGLE_OPS[op](X, np.random.default_rng(5), True)
    b = SINGLE_OPS[op](X, np.random.default_rng(5), True)
    c = SINGLE_OPS[op](X, np.random.default_rng(6), True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("zscore", [True, False], ids=["zscored", "raw_prices"])
@pytest.mark.parametrize("op", list(SINGLE_OPS))
def test_ohlc_valid_after_each_op(op, zscore):
    X = random_ohlc(zscore=zscore)
    assert ohlc_valid(X).all()
    out = SINGLE_OPS[op](X, np.random.default_rng(2), True)
    assert ohlc_valid(out).all(), f"{op} returned broken OHLC bars"


def test_jitter_without_repair_breaks_bars_and_repair_fixes_minimally():
    X = random_ohlc()
    broken = jitter(X, SIGMA, np.random.default_rng(3), ohlc=False)
    assert not ohlc_valid(broken).all()  # the repair is really needed
    fixed = repair_ohlc(broken)
    assert ohlc_valid(fixed).all()
    np.testing.assert_array_equal(fixed[..., [0, 3]], broken[..., [0, 3]])  # body untouched
    ok = (broken[..., 1] >= np.maximum(broken[..., 0], broken[..., 3]))
    np.testing.assert_array_equal(fixed[..., 1][ok], broken[..., 1][ok])  # valid highs untouched
    np.testing.assert_array_equal(repair_ohlc(X), X)  # valid input: no change


def test_ohlc_flag_requires_four_features():
    with pytest.raises(ValueError, match="F == 4"):
        jitter(np.zeros((2, 10, 3)), 0.1, np.random.default_rng(0), ohlc=True)


def test_time_warp_identity_at_zero_and_monotone_paths():
    X = random_ohlc()
    np.testing.assert_allclose(time_warp(X, 0.0, np.random.default_rng(0)), X)
    paths = warp_paths(50, 40, 0.5, np.random.default_rng(0))
    assert np.all(np.diff(paths, axis=1) > 0)
    np.testing.assert_allclose(paths[:, 0], 0.0)
    np.testing.assert_allclose(paths[:, -1], 39.0)
    np.testing.assert_allclose(warp_paths(3, 40, 0.0, np.random.default_rng(0)), np.tile(np.arange(40.0), (3, 1)))


def test_time_warp_keeps_range_of_a_monotone_series():
    x = np.linspace(0, 1, 30)[None, :, None]
    out = time_warp(x, 0.3, np.random.default_rng(0))
    assert np.all(np.diff(out[0, :, 0]) >= 0)
    assert out[0, 0, 0] == pytest.approx(0.0) and out[0, -1, 0] == pytest.approx(1.0)


def test_scaling_positive_factor_per_window_for_ohlc_per_feature_otherwise():
    X = random_ohlc(zscore=False).astype(np.float64)
    out = scaling(X, 0.3, np.random.default_rng(0), ohlc=True)
    dev_in = X - X.mean(axis=(1, 2), keepdims=True)
    dev_out = out - out.mean(axis=(1, 2), keepdims=True)
    ratio = dev_out / dev_in
    assert np.all(ratio > 0)
    np.testing.assert_allclose(ratio, ratio[:, :1, :1] * np.ones_like(ratio), rtol=1e-6)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), X.mean(axis=(1, 2)))  # level kept
    g = np.random.default_rng(1).normal(size=(4, 30, 3))
    r = (scaling(g, 0.3, np.random.default_rng(0)) - g.mean(axis=1, keepdims=True)) / (g - g.mean(axis=1, keepdims=True))
    assert np.all(r > 0)
    assert not np.allclose(r[:, 0, 0], r[:, 0, 1])  # one factor per feature


def test_jitter_noise_is_relative_to_window_scale():
    X = random_ohlc(n=200, zscore=True).astype(np.float64)
    diff = jitter(X, 0.05, np.random.default_rng(0)) - X
    assert diff.std() == pytest.approx(0.05, rel=0.05)
    np.testing.assert_array_equal(jitter(X, 0.0, np.random.default_rng(0)), X)
