"""`moola data from-csv`: a CSV of bars plus a CSV of labels -> a moola dataset.

The files are read by `moola.data.csv_input` (columns, keys, every problem with its line).
Windows: a window is `window` consecutive bars, named by its first bar ("start"). Labeled
windows are cut at their labels' starts, whatever the stride; every `stride`-th window (starts
0, stride, 2*stride, ...) without a label goes to the unlabeled pool for pretraining.

Split: labeled windows in time order; the last `val_fraction` are val (and after them the last
`test_fraction` test); train windows that share bars with the first val window, or end fewer
than `purge` bars before it, are left out of the split (`moola.data.splits.temporal_split`).

Window ids are the start bar's time cell exactly as BARS.csv writes it (or `bar-<row>` without a
time column), so every message about a labeled.parquet row, and every prediction, names the
window in the CSV's own words. Times are read as ISO 8601 or with `--date-format`, never guessed
(`moola.data.csv_times`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moola.data.convert import InputProblems, publish
from moola.data.csv_input import Bars, check_label_times, read_bars, read_labels
from moola.data.io import features_column
from moola.data.schema import DataError
from moola.data.splits import temporal_split


def window_ids(starts: np.ndarray, bars: Bars) -> list[str]:
    """Window ids name the first bar as the file writes it: its time cell, or `bar-<row>`."""
    return [bars.bar_name(s) for s in starts.tolist()]


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
    date_format: str | None = None,
) -> tuple[Path, list[str]]:
    """Convert BARS.csv + LABELS.csv into a dataset at `out_dir` (validated, written atomically).

    Returns (the dataset directory, notes worth reading: overlap and feature-scale advice).
    Every input problem raises `DataError` naming the file, the line or column and the fix.
    `date_format` (strftime codes) reads every non-ISO time column of both files; ISO 8601 is
    always read as ISO, and an ambiguous day/month column without it is an error.
    """
    bars_csv, labels_csv = Path(bars_csv), Path(labels_csv)
    if window < 2:
        raise DataError(f"--window {window}: a window needs at least 2 bars")
    if stride < 1:
        raise DataError(f"--stride {stride}: the unlabeled windows need a stride of at least 1 bar")
    problems = InputProblems(f"{bars_csv} with labels {labels_csv}")
    bars = read_bars(bars_csv, time_column=time_column, features=features, problems=problems,
                     date_format=date_format)
    n_bars = len(bars.values)
    if n_bars < window:
        problems.add(f"{bars_csv}: {n_bars} bars, fewer than one window of {window} bars; use a "
                     f"shorter --window or more bars")
    if problems.items:  # one run names the labels' date problems too, not only the bars'
        check_label_times(labels_csv, date_format, problems)
    problems.raise_if_any()
    labels = read_labels(labels_csv, bars, window, problems=problems, date_format=date_format)
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
            "time_format": bars.time_format,  # "ISO 8601" or the --date-format that read it
            "date_format": date_format,
            "first_bar": bars.bar_name(0),
            "last_bar": bars.bar_name(n_bars - 1),
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
            "window_id": "the time cell of the window's first bar as the bars file writes it "
                         "(or bar-<row>)",
            # where each window lies in the bars file, for `moola predict` (first_bar/last_bar)
            "start_rows": {"labeled": starts.tolist(), "unlabeled": grid.tolist()},
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
