"""Convert an equal-length UCR/UEA dataset bundled with sktime into the moola layout.

Works offline: only datasets in sktime's own data directory are accepted (GunPoint,
ItalyPowerDemand, BasicMotions, ArrowHead, OSULeaf, ...); any other name is refused with the
list of bundled ones instead of attempting a download.

Layout:
* labeled.parquet: the UCR train rows, then the UCR test rows (ids `train-00000`, `test-00000`);
  labels as strings; features (n, T, F) with F = channels.
* splits/fold_0.json: train_idx = first 80% of the UCR train rows, val_idx = the last 20%,
  test_idx = the UCR test rows. The train rows keep the UCR file's order, unless the file is
  sorted by class (one run of rows per class, as BasicMotions'): then they are written in a
  fixed shuffled order (seed 0; ids keep the file's row number, meta.json says so). UCR windows
  are independent samples with no time order, and moola's walk-forward folds read the rows in
  order: on a class-sorted file every fold would score classes its training rows never held
  (BasicMotions: balanced accuracy 0.000 at every seed).
* unlabeled.parquet: the UCR test features again, without labels, under ids `u-test-00000`: the
  pretraining pool. Reusing test windows unlabeled is the documented UCR layout (transductive
  self-supervision), so the leakage check exempts test rows: it only flags train/val windows in
  the pool. A test series identical to a train/val series is dropped from the pool (counted in
  meta.json) because it would be genuine leakage.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa

from moola.data.io import features_column, write_dataset
from moola.data.schema import DataError

VAL_FRACTION = 0.2


def bundled_datasets() -> list[str]:
    """Names of the UCR/UEA datasets shipped inside sktime (loadable offline)."""
    import sktime.datasets

    root = Path(sktime.datasets.__file__).parent / "data"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / f"{p.name}_TRAIN.ts").is_file())


def _load(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, channels, T) float64, y (n,) str) for one split; unequal length -> DataError."""
    from sktime.datasets import load_UCR_UEA_dataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sktime deprecation chatter, not the user's concern
            X, y = load_UCR_UEA_dataset(name, split=split, return_X_y=True, return_type="numpy3D")
    except ValueError as exc:
        raise DataError(
            f"UCR dataset {name!r} ({split} split) cannot be loaded as equal-length series ({exc}); "
            f"moola needs every window to have the same length - choose an equal-length dataset "
            f"such as GunPoint or BasicMotions"
        ) from exc
    return np.asarray(X, dtype=np.float64), np.asarray(y).astype(str)


def _train_order(y: np.ndarray) -> np.ndarray:
    """Row order for the UCR train rows: the file's, or a seeded shuffle when the file holds
    one contiguous run of rows per class (sorted by label)."""
    runs = 1 + int(np.count_nonzero(y[1:] != y[:-1]))
    if len(y) > 1 and runs == len(np.unique(y)) > 1:
        return np.random.default_rng(0).permutation(len(y))
    return np.arange(len(y))


def convert_ucr(name: str, out_dir: str | Path) -> Path:
    """Write UCR dataset `name` (bundled with sktime) to `out_dir` in the moola layout, atomically."""
    bundled = bundled_datasets()
    if name not in bundled:
        raise DataError(
            f"UCR dataset {name!r} is not bundled with sktime (no network access is assumed); "
            f"bundled datasets: {', '.join(bundled)}"
        )
    Xtr, ytr = _load(name, "train")
    Xte, yte = _load(name, "test")
    if Xtr.shape[1:] != Xte.shape[1:]:
        raise DataError(
            f"UCR dataset {name!r}: train series have shape {Xtr.shape[1:]} (channels, T) but test "
            f"series {Xte.shape[1:]}; moola needs one window shape - choose another dataset"
        )
    order = _train_order(ytr)
    Xtr, ytr = Xtr[order], ytr[order]
    X = np.concatenate([Xtr, Xte]).transpose(0, 2, 1).astype(np.float32)  # (n, T, F)
    if not np.isfinite(X).all():
        raise DataError(f"UCR dataset {name!r} holds missing values; moola needs finite windows")
    n_tr, n_te = len(Xtr), len(Xte)
    n_val = max(1, round(n_tr * VAL_FRACTION))
    ids = [f"train-{i:05d}" for i in order] + [f"test-{i:05d}" for i in range(n_te)]
    split = {
        "train_idx": list(range(n_tr - n_val)),
        "val_idx": list(range(n_tr - n_val, n_tr)),
        "test_idx": list(range(n_tr, n_tr + n_te)),
    }
    seen = {X[i].tobytes() for i in range(n_tr)}
    pool = [j for j in range(n_te) if X[n_tr + j].tobytes() not in seen]
    labeled = pa.table(
        {"window_id": pa.array(ids), "label": pa.array(np.concatenate([ytr, yte]).tolist()), "features": features_column(X)}
    )
    unlabeled = pa.table(
        {"window_id": pa.array([f"u-test-{j:05d}" for j in pool]), "features": features_column(X[n_tr + np.array(pool, dtype=np.int64)])}
    )
    F = X.shape[2]
    meta = {
        "source": f"ucr:{name}",
        "feature_names": ["value"] if F == 1 else [f"channel_{c}" for c in range(F)],
        "ucr": {
            "name": name,
            "n_train": n_tr,
            "n_test": n_te,
            "val_fraction": VAL_FRACTION,
            "train_order": ("shuffled (seed 0): the UCR train file is sorted by class"
                            if (order != np.arange(n_tr)).any() else "as in the UCR train file"),
            "unlabeled": "UCR test features (test rows are exempt from the leakage check)",
            "dropped_from_pool_as_duplicates_of_train": n_te - len(pool),
        },
    }
    return write_dataset(out_dir, labeled, unlabeled, {0: split}, meta)
