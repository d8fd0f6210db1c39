"""`moola data from-csv`: a CSV of bars plus a CSV of labels -> a moola dataset.

The files are read by `moola.data.csv_input` (columns, keys, every problem with its line).
Windows: a window is `window` consecutive bars, named by its first bar ("start"). Labeled
windows are cut at their labels' starts, whatever the stride; every `stride`-th window (starts
0, stride, 2*stride, ...) without a label goes to the unlabeled pool for pretraining.

Split: labeled windows in time order; the last `val_fraction` are val (and after them the last
`test_fraction` test); train windows that share bars with the first val window, or end fewer
than `purge` bars before it, are left out of the split (`moola.data.splits.temporal_split`).

Window ids are the start bar's timestamp (or `bar-<row>` without a time column), so every
message about a labeled.parquet row names the window in terms of the CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moola.data.convert import InputProblems, publish
from moola.data.csv_input import Bars, read_bars, read_labels
from moola.data.io import features_column
from moola.data.schema import DataError
from moola.data.splits import temporal_split


def window_ids(starts: np.ndarray, bars: Bars) -> list[str]:
    """Window ids name the first bar: its timestamp, or `bar-<row>` without a time column."""
    if bars.times is not None:
        return [str(t) for t in bars.times[starts]]
    width = len(str(len(bars.values) - 1))
    return [f"bar-{s:0{width}d}" for s in starts.tolist()]


def cut_windows(values: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """bars (N, F), starts (k,) -> windows (k, window, F) float32."""
    return values[starts[:, None] + np.arange(window)[None, :]].astype(np.float32)


def _max_overlap(starts: np.ndarray, window: int) -> int:
    """The most later labeled windows that share bars with one labeled window (starts sorted)."""
    if len(starts) < 2:
        return 0
    last = np.searchsorted(starts, starts + window - 1, side="right")
    return int((last - np.arange(len(starts)) - 1).max())


def _scale_notes(bars: Bars) -> list[str]:
    """Extra features far from the price scale: one z-score per window would flatten the prices."""
    price = float(np.median(np.abs(bars.values[:, :4])))
    notes = []
    for j, name in enumerate(bars.names[4:], start=4):
        level = float(np.median(np.abs(bars.values[:, j])))
        if price > 0 and not 0.1 <= level / price <= 10:
            notes.append(
                f"feature {name!r} is on another scale than the prices (median |value| {level:,.4g} vs "
                f"{price:,.4g}); the default normalisation (data.normalization = 'window_zscore') uses "
                f"one mean and std for all features of a window, so the prices would be squeezed flat "
                f"- rescale {name!r} to the price scale, or leave it out with --features open,high,low,close")
    return notes


def convert_csv(
    bars_csv: str | Path,
    out_dir: str | Path,
    *,
    labels_csv: str | Path,
    window: int = 105,
    stride: int = 10,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    purge: int = 0,
    time_column: str | None = None,
    features: list[str] | None = None,
) -> tuple[Path, list[str]]:
    """Convert BARS.csv + LABELS.csv into a dataset at `out_dir` (validated, written atomically).

    Returns (the dataset directory, notes worth reading: overlap and feature-scale advice).
    Every input problem raises `DataError` naming the file, the line or column and the fix.
    """
    bars_csv, labels_csv = Path(bars_csv), Path(labels_csv)
    if window < 2:
        raise DataError(f"--window {window}: a window needs at least 2 bars")
    if stride < 1:
        raise DataError(f"--stride {stride}: the unlabeled windows need a stride of at least 1 bar")
    problems = InputProblems(f"{bars_csv} with labels {labels_csv}")
    bars = read_bars(bars_csv, time_column=time_column, features=features, problems=problems)
    n_bars = len(bars.values)
    if n_bars < window:
        problems.add(f"{bars_csv}: {n_bars} bars, fewer than one window of {window} bars; use a "
                     f"shorter --window or more bars")
    problems.raise_if_any()
    labels = read_labels(labels_csv, bars, window, problems=problems)
    problems.raise_if_any()

    starts = labels.starts
    X = cut_windows(bars.values, starts, window)
    split, purged = temporal_split(starts, starts + window - 1, val_fraction=val_fraction,
                                   test_fraction=test_fraction, purge=purge, unit="bars")
    # the unlabeled pool: every stride-th window without a label, minus exact copies of a
    # train/val window (flat stretches can repeat; the validator would call them leakage)
    grid = np.arange(0, n_bars - window + 1, stride)
    grid = grid[~np.isin(grid, starts)]
    U = cut_windows(bars.values, grid, window)
    dev = {X[i].tobytes() for i in split["train_idx"] + split["val_idx"]}
    keep = np.array([u.tobytes() not in dev for u in U], dtype=bool)
    copies = int((~keep).sum())
    grid, U = grid[keep], U[keep]
    if not len(grid):
        raise DataError(f"{bars_csv}: no unlabeled window is left for pretraining (every window on the "
                        f"--stride {stride} grid is labeled); lower --stride or add bars without labels")

    labeled_cols: dict[str, Any] = {
        "window_id": pa.array(window_ids(starts, bars)),
        "label": pa.array(labels.labels),
        "features": features_column(X),
    }
    for name, v in labels.expansion.items():
        labeled_cols[name] = pa.array(np.where(np.isnan(v), 0, v).astype(np.int64), pa.int64(),
                                      mask=np.isnan(v))
    labeled = pa.table(labeled_cols)
    unlabeled = pa.table({"window_id": pa.array(window_ids(grid, bars)), "features": features_column(U)})
    overlap = _max_overlap(starts, window)
    meta = {
        "source": f"csv:{bars_csv.name}",
        "feature_names": bars.names,
        "classes": {c: labels.labels.count(c) for c in sorted(set(labels.labels))},
        "csv": {
            "bars": bars_csv.name,
            "labels": labels_csv.name,
            "n_bars": n_bars,
            "time_column": bars.time_column,
            "first_bar": str(bars.times[0]) if bars.times is not None else None,
            "last_bar": str(bars.times[-1]) if bars.times is not None else None,
            "label_key": labels.key,
            "window": window,
            "stride": stride,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "purge_bars": purge,
            "purged_from_split": purged,
            "max_overlapping_labeled_windows": overlap,
            "unlabeled": "every stride-th window (starts 0, stride, ...) that has no label",
            "dropped_from_pool_as_copies_of_train_val": copies,
            "window_id": "the timestamp (or bar-<row>) of the window's first bar",
        },
    }
    out = publish(out_dir, labeled, unlabeled, split, meta, f"{bars_csv.name} with {labels_csv.name}")
    notes = _scale_notes(bars)
    if overlap > 1:
        notes.append(
            f"labeled windows overlap: one shares bars with up to {overlap} later labeled windows; the "
            f"walk-forward folds drop only [protocol] purge rows (default 1) before each scored block, "
            f"so set purge = {overlap} under [protocol] in a --gates-config file to keep every "
            f"training window off the bars of the windows it is scored against")
    return out, notes
