"""Deterministic synthetic OHLC dataset at the original scale (the embedded default data).

Each window has 105 bars = 30 context + 45 inner + 30 future, at an NQ-like price level
(~15,000-21,000, quarter-point ticks). Two classes mark what happens in a span inside the inner
45 bars (`expansion_start` .. `expansion_end`):

* consolidation - price ranges sideways: a mean-reverting path with volatility compressed to
  20-55% of the window's regime;
* retracement - a directional impulse over the first ~45-65% of the span, then a pullback of
  38-62% of it.

To make the classes learnable but not trivially: span position and length are random, the
context, inner baseline and future carry random trends, volatility has per-window regimes and
a separate future regime, innovations are fat-tailed (Student t, 4 dof), and the pattern
strength is drawn from ranges that overlap plain noise (a weak impulse, a mild compression).
A tuned classifier (MiniRocket + ridge) reaches roughly 80-95%, not 100%.

Labeled rows are in time order (their price level drifts from window to window) and the split
is temporal (first 80% train, last 20% val by default). The unlabeled pool is a stride-10 slide
over one long, separately drawn series, so no labeled window appears in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moola.data.io import features_column, write_dataset
from moola.data.schema import OHLC, DataError


def lfilter(b, a, x, **kw):
    """scipy.signal.lfilter, imported on first use: scipy.signal takes ~1.3 s to import and
    every gate session imports moola.data, while only the generator needs it."""
    from scipy.signal import lfilter as _lfilter

    return _lfilter(b, a, x, **kw)

CLASSES = ("consolidation", "retracement")
CONSOLIDATION_SHARE = 56 / 98  # the original dataset's class balance
PRICE_CENTER = 18_000.0
TICK = 0.25  # NQ tick size: prices are multiples of it (also keeps parquet small)
STRIDE = 10  # unlabeled windows: one every 10 bars of the long series
GENERATOR_VERSION = 2  # bump when the output of a given seed changes


def _layout(T: int) -> tuple[int, int]:
    """(context, inner) bar counts; 30/45/30 for T=105, the same proportions otherwise."""
    if T < 35:
        raise DataError(f"timesteps={T} is too short for context + pattern + future; use at least 35")
    context = round(T * 30 / 105)
    future = round(T * 30 / 105)
    return context, T - context - future


def _student_t(rng: np.random.Generator, shape) -> np.ndarray:
    """Unit-variance Student t (4 dof): fat tails like intraday returns."""
    return rng.standard_t(4, size=shape) / np.sqrt(2.0)


def _window_returns(rng: np.random.Generator, is_ret: np.ndarray, T: int):
    """Log returns (n, T), local bar volatility (n, T) and pattern spans for n windows."""
    n = len(is_ret)
    context, inner = _layout(T)
    t = np.arange(T)[None, :]
    sigma = 0.0012 * np.exp(rng.normal(0, 0.35, (n, 1)))  # per-window volatility regime
    sig_future = sigma * np.exp(rng.normal(0, 0.25, (n, 1)))  # the regime may change after
    local = np.where(t >= context + inner, sig_future, sigma) * np.ones((1, T))
    # random trends: context, inner baseline and future each drift their own way
    mu_c, mu_i, mu_f = (rng.normal(0, s, (n, 1)) * sigma for s in (0.25, 0.15, 0.25))
    mu = np.where(t < context, mu_c, np.where(t < context + inner, mu_i, mu_f))
    r = mu + local * _student_t(rng, (n, T))

    # pattern span inside the inner region
    length = rng.integers(round(0.4 * inner), round(0.9 * inner) + 1, n)
    start = context + (rng.random(n) * (inner - length + 1)).astype(np.int64)
    end = start + length - 1
    in_span = (t >= start[:, None]) & (t <= end[:, None])

    # consolidation: sideways, mean-reverting path with compressed volatility
    comp = rng.uniform(0.2, 0.55, (n, 1))
    dev = lfilter([1.0], [1.0, -0.75], comp * sigma * _student_t(rng, (n, T)), axis=1)
    r_cons = np.diff(dev, axis=1, prepend=0.0)

    # retracement: impulse then a 38-62% pullback, with noise on top
    k1 = np.round(length * rng.uniform(0.45, 0.65, n)).astype(np.int64)
    direction = rng.choice([-1.0, 1.0], n)
    move = direction * rng.uniform(2.5, 5.0, n) * sigma[:, 0] * np.sqrt(length)
    back = rng.uniform(0.38, 0.62, n)
    impulse = (t < (start + k1)[:, None])
    drift = np.where(impulse, (move / k1)[:, None], (-back * move / (length - k1))[:, None])
    r_ret = drift + 0.8 * sigma * _student_t(rng, (n, T))

    pattern = np.where(is_ret[:, None], r_ret, r_cons)
    r = np.where(in_span, pattern, r)
    local = np.where(in_span & ~is_ret[:, None], comp * sigma, np.where(in_span, 0.8 * sigma, local))
    return r, local, start, end


def _ohlc(rng: np.random.Generator, log_close: np.ndarray, local: np.ndarray, open_gap: np.ndarray) -> np.ndarray:
    """Valid OHLC bars (..., T, 4) on the tick grid from log closes and local volatility."""
    close = np.exp(log_close)
    prev = np.exp(log_close - open_gap)  # open = previous close (+ a small gap)
    wick = np.abs(rng.normal(0, 0.6, log_close.shape + (2,))) * local[..., None]
    high = np.maximum(prev, close) * np.exp(wick[..., 0])
    low = np.minimum(prev, close) * np.exp(-wick[..., 1])
    # round open/close to the nearest tick, high up and low down: bars stay valid
    o, c = np.round(prev / TICK) * TICK, np.round(close / TICK) * TICK
    h, lo = np.ceil(high / TICK) * TICK, np.floor(low / TICK) * TICK
    return np.stack([o, h, lo, c], axis=-1)


def _gaps(rng: np.random.Generator, r: np.ndarray, local: np.ndarray) -> np.ndarray:
    """log(close / open) per bar: the bar's return minus a small open gap."""
    return r - 0.1 * local * rng.normal(0, 1, r.shape)


def _labeled(rng: np.random.Generator, n: int, n_val: int, T: int):
    """Labeled windows in time order: (X (n,T,4), labels, start, end)."""
    n_cons = round(n * CONSOLIDATION_SHARE)
    n_cons_val = round(n_val * CONSOLIDATION_SHARE)
    # class order: shuffled, with the overall share kept in both the train and val blocks
    blocks = []
    for size, cons in ((n - n_val, n_cons - n_cons_val), (n_val, n_cons_val)):
        block = np.array([False] * cons + [True] * (size - cons))
        blocks.append(rng.permutation(block))
    is_ret = np.concatenate(blocks)
    r, local, start, end = _window_returns(rng, is_ret, T)
    # window levels drift over time (AR(1) in log price around the centre, sd ~5%)
    level = lfilter([1.0], [1.0, -0.97], rng.normal(0, 0.012, n)) + np.log(PRICE_CENTER)
    log_close = level[:, None] + np.cumsum(r, axis=1)
    X = _ohlc(rng, log_close, local, _gaps(rng, r, local))
    labels = [CLASSES[int(v)] for v in is_ret]
    return X, labels, start, end


def _unlabeled(rng: np.random.Generator, m: int, T: int) -> np.ndarray:
    """m overlapping windows (stride 10) of one long series: (m, T, 4)."""
    length = STRIDE * (m - 1) + T
    k = -(-length // T)
    # the long series is a chain of generated windows (patterns of both kinds, regime changes)
    r, local, _, _ = _window_returns(rng, rng.random(k) < 1 - CONSOLIDATION_SHARE, T)
    r, local = r.reshape(-1)[:length], local.reshape(-1)[:length]
    # log price mean-reverts slowly to the centre so the level stays NQ-like over ~120k bars
    kappa = 3e-4
    x = lfilter([1.0], [1.0, -(1 - kappa)], r + kappa * np.log(PRICE_CENTER), zi=[(1 - kappa) * np.log(PRICE_CENTER)])[0]
    bars = _ohlc(rng, x, local, _gaps(rng, r, local))  # (length, 4)
    idx = np.arange(m)[:, None] * STRIDE + np.arange(T)[None, :]
    return bars[idx]


def make_synthetic(
    n_labeled: int = 98, n_unlabeled: int = 11873, seed: int = 17, timesteps: int = 105, val_fraction: float = 0.2
) -> tuple[pa.Table, pa.Table, dict[str, list[int]], dict[str, Any]]:
    """Build the synthetic dataset in memory: (labeled table, unlabeled table, split, meta)."""
    if n_labeled < 10:
        raise DataError(f"n_labeled={n_labeled} is too small for a train/val split of two classes; use at least 10")
    if n_unlabeled < 1:
        raise DataError(f"n_unlabeled={n_unlabeled}: the unlabeled pool needs at least one window")
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction={val_fraction} must be between 0 and 1 (e.g. 0.2)")
    n_val = max(2, round(n_labeled * val_fraction))
    lab_seq, unl_seq = np.random.SeedSequence([seed, GENERATOR_VERSION]).spawn(2)
    X, labels, start, end = _labeled(np.random.default_rng(lab_seq), n_labeled, n_val, timesteps)
    U = _unlabeled(np.random.default_rng(unl_seq), n_unlabeled, timesteps)
    labeled = pa.table(
        {
            "window_id": pa.array([f"w-{i:05d}" for i in range(n_labeled)]),
            "label": pa.array(labels),
            "features": features_column(X),
            "expansion_start": pa.array(start, pa.int64()),
            "expansion_end": pa.array(end, pa.int64()),
        }
    )
    unlabeled = pa.table(
        {"window_id": pa.array([f"u-{j:06d}" for j in range(n_unlabeled)]), "features": features_column(U)}
    )
    split = {"train_idx": list(range(n_labeled - n_val)), "val_idx": list(range(n_labeled - n_val, n_labeled))}
    meta = {
        "source": "synthetic",
        "feature_names": OHLC,
        "generator": {
            "name": "moola.data.synth",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "n_labeled": n_labeled,
            "n_unlabeled": n_unlabeled,
            "timesteps": timesteps,
            "val_fraction": val_fraction,
            "unlabeled_stride": STRIDE,
        },
        "classes": {c: labels.count(c) for c in CLASSES},
    }
    return labeled, unlabeled, split, meta


def generate_synthetic(
    out_dir: str | Path,
    n_labeled: int = 98,
    n_unlabeled: int = 11873,
    seed: int = 17,
    timesteps: int = 105,
    val_fraction: float = 0.2,
) -> Path:
    """Write the synthetic dataset to `out_dir` atomically; same seed -> byte-identical files."""
    labeled, unlabeled, split, meta = make_synthetic(n_labeled, n_unlabeled, seed, timesteps, val_fraction)
    return write_dataset(out_dir, labeled, unlabeled, {0: split}, meta)
