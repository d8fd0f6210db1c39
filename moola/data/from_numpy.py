"""`moola data from-numpy`: windows already cut, as .npy arrays -> a moola dataset.

X.npy: (n, T, F) windows, or (n, T) for one feature, rows in time order (the split is temporal).
y.npy: (n,) integer or string labels. The unlabeled pool comes from `--unlabeled U.npy` (same T
and F); without it, the held-out test windows (`--test-fraction`) serve as the pool, as
`moola data ucr` does (test rows are exempt from the leakage check). Arrays are loaded with
`allow_pickle=False`: an object array (e.g. a list of Python strings) is refused with the fix.

Features are named f0..f{F-1} unless `--feature-names` says otherwise (open,high,low,close
makes moola treat the windows as OHLC bars). The split and its purge are in rows: `--purge 2` leaves the 2 train rows before the first val
row out of the split (use it when neighbouring windows overlap in time).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from moola.data.convert import InputProblems, publish
from moola.data.io import features_column
from moola.data.schema import DataError
from moola.data.splits import temporal_split


def _load(path: Path, what: str, problems: InputProblems) -> np.ndarray | None:
    """np.load without pickles; a missing, unreadable or object array is a problem."""
    if not path.is_file():
        problems.add(f"{path}: file not found; pass the .npy file of the {what}")
        return None
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            problems.add(f"{path}: holds Python objects (an object array); save plain arrays: "
                         f"np.save(path, np.asarray(a, dtype=float)) for windows, "
                         f"np.save(path, np.asarray(y).astype(str)) for string labels")
        else:
            problems.add(f"{path}: cannot be read as .npy ({exc}); write it with np.save")
        return None
    except (OSError, EOFError) as exc:
        problems.add(f"{path}: cannot be read as .npy ({exc}); write it with np.save (not np.savez or pickle)")
        return None


def _windows(X: np.ndarray | None, path: Path, problems: InputProblems) -> np.ndarray | None:
    """(n, T, F) or (n, T) numeric, finite -> (n, T, F) float32; anything else is a problem."""
    if X is None:
        return None
    if X.dtype.kind not in "iuf":
        problems.add(f"{path}: dtype {X.dtype} is not numeric; save the windows as floats "
                     f"(np.save(path, X.astype('float32')))")
        return None
    if X.ndim == 2:
        X = X[:, :, None]  # one feature
    if X.ndim != 3 or X.shape[0] == 0 or X.shape[1] < 2 or X.shape[2] == 0:
        problems.add(f"{path}: shape {X.shape}; expected (windows, timesteps, features) or "
                     f"(windows, timesteps) with at least one window of 2 or more timesteps")
        return None
    bad = ~np.isfinite(X)
    for i in np.flatnonzero(bad.any(axis=(1, 2))):
        t, f = np.argwhere(bad[i])[0]
        problems.add(f"{path}: window {i} (X[{i}]): {X[i, t, f]} at timestep {t}, feature {f} "
                     f"({int(bad[i].sum())} non-finite values in this window); fill or drop the window",
                     kind=f"{path}: windows with non-finite values")
    return X.astype(np.float32)


def _labels(y: np.ndarray | None, n: int | None, path: Path, problems: InputProblems) -> list[str] | None:
    """(n,) integer or string labels -> strings; floats that are not whole, or a wrong length, are problems."""
    if y is None:
        return None
    if y.ndim != 1:
        problems.add(f"{path}: shape {y.shape}; expected one label per window, shape (n,) "
                     f"(for one-hot labels save y.argmax(axis=1))")
        return None
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(bad):
            problems.add(f"{path}: y[{bad[0]}] is {y[bad[0]]}, not a class ({len(bad)} such); save "
                         f"integer class numbers or strings")
            return None
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iuUSb":
        problems.add(f"{path}: dtype {y.dtype}; save integer class numbers or strings")
        return None
    if n is not None and len(y) != n:
        problems.add(f"{path}: {len(y)} labels for {n} windows; save one label per window of X, in the same order")
        return None
    labels = [v.decode() if isinstance(v, bytes) else str(v) for v in y.tolist()]
    empty = [i for i, v in enumerate(labels) if not v.strip()]
    if empty:
        problems.add(f"{path}: y[{empty[0]}] is an empty label ({len(empty)} such); give every window a class")
        return None
    return labels


def convert_numpy(
    x_npy: str | Path,
    y_npy: str | Path,
    out_dir: str | Path,
    *,
    unlabeled_npy: str | Path | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    purge: int = 0,
    feature_names: list[str] | None = None,
) -> Path:
    """Convert X.npy + y.npy (+ an unlabeled pool) into a dataset at `out_dir`, validated, atomically."""
    x_npy, y_npy = Path(x_npy), Path(y_npy)
    problems = InputProblems(f"{x_npy} with labels {y_npy}")
    X = _windows(_load(x_npy, "windows (n, T, F)", problems), x_npy, problems)
    labels = _labels(_load(y_npy, "labels (n,)", problems), None if X is None else len(X), y_npy, problems)
    U = None
    if unlabeled_npy is not None:
        unlabeled_npy = Path(unlabeled_npy)
        U = _windows(_load(unlabeled_npy, "unlabeled windows", problems), unlabeled_npy, problems)
        if X is not None and U is not None and U.shape[1:] != X.shape[1:]:
            problems.add(f"{unlabeled_npy}: windows of shape {U.shape[1:]} (T, F), but X's are "
                         f"{X.shape[1:]}; cut both with the same window length and features")
    if X is not None and feature_names is not None and len(feature_names) != X.shape[2]:
        problems.add(f"--feature-names gives {len(feature_names)} names for {X.shape[2]} features; "
                     f"name each feature once, in order")
    problems.raise_if_any()
    n = len(X)
    rows = np.arange(n)
    split, purged = temporal_split(rows, rows, val_fraction=val_fraction, test_fraction=test_fraction,
                                   purge=purge, unit="rows")
    if U is None:
        if "test_idx" not in split:
            raise DataError(
                f"{x_npy}: no unlabeled pool for pretraining; pass --unlabeled U.npy (windows without "
                f"labels, same T and F), or hold out test windows with --test-fraction, which then "
                f"serve as the pool (as `moola data ucr` does)")
        u_ids = [f"u-test-{i:05d}" for i in split["test_idx"]]
        U = X[split["test_idx"]]
        pool = "the test windows (--test-fraction), unlabeled"
    else:
        u_ids = [f"u-{j:05d}" for j in range(len(U))]
        pool = unlabeled_npy.name
    F = X.shape[2]
    labeled = pa.table({
        "window_id": pa.array([f"w-{i:05d}" for i in range(n)]),
        "label": pa.array(labels),
        "features": features_column(X),
    })
    unlabeled = pa.table({"window_id": pa.array(u_ids), "features": features_column(U)})
    meta = {
        "source": f"numpy:{x_npy.name}",
        # not OHLC by default, even for F = 4: moola repairs OHLC bars only when the names say so
        "feature_names": list(feature_names) if feature_names else [f"f{j}" for j in range(F)],
        "classes": {c: labels.count(c) for c in sorted(set(labels))},
        "numpy": {
            "X": x_npy.name,
            "y": y_npy.name,
            "unlabeled": pool,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "purge_rows": purge,
            "purged_from_split": purged,
        },
    }
    return publish(out_dir, labeled, unlabeled, split, meta, f"{x_npy.name} with {y_npy.name}")
