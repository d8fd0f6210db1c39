"""Per-window normalisation, on by default.

Why: the original files hold raw NQ prices near 20,000; fed straight into the networks they
made the earlier version's pretraining loss 26,000,000 and swamped every gradient.

Choice ("window_zscore"): each window is z-scored with ONE mean and ONE standard deviation taken
over all of its values (all timesteps and all features). For OHLC this keeps the bar geometry:
open/high/low/close share a scale, so high >= max(open, close) >= ... still holds after
normalisation, and bar ranges stay comparable with moves between bars. Per-window (not
per-dataset) statistics remove the price level, which drifts over time and would otherwise
leak "when" a window comes from. The standard deviation has a floor (`eps`, relative to the
window's level) so a perfectly flat window maps to zeros instead of dividing by zero.

"none" keeps raw values (for models that normalise themselves, and for inspection).
"""

from __future__ import annotations

import numpy as np

NORMALIZATIONS = ("window_zscore", "none")


def window_zscore(X: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """x: (n, T, F) -> (n, T, F) float32, each window z-scored over all its values.

    The std floor is eps * max(1, |mean|): a flat window at 20,000 gets floor 0.02.
    """
    x = np.asarray(X, dtype=np.float64)  # float64: prices ~20,000 lose digits in float32 sums
    if x.size == 0:
        return x.astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    std = np.maximum(std, eps * np.maximum(1.0, np.abs(mean)))
    return ((x - mean) / std).astype(np.float32)


def normalize(X: np.ndarray, method: str) -> np.ndarray:
    """Apply the named normalisation (see module docstring); unknown names list the allowed ones."""
    if method == "window_zscore":
        return window_zscore(X)
    if method == "none":
        return np.asarray(X, dtype=np.float32)
    raise ValueError(f"normalization {method!r} is unknown; allowed: {', '.join(NORMALIZATIONS)}")
