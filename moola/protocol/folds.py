"""Walk-forward (rolling-origin) folds over the labeled rows, with purge gaps.

Rows of the labeled file are in time order. The rows a verdict may score are the development
rows (``train_idx`` and ``val_idx`` of the dataset's split; ``test_idx`` stays a held-out
confirmation). The first ``min_train_fraction`` of them only ever train; the rest are cut into
``n_folds`` consecutive blocks, and fold k scores block k with a model trained on every earlier
row, less a purge gap of ``purge`` rows so that windows overlapping in time cannot carry a
label across the boundary (Lopez de Prado's purging, applied to rows).

Inside each fold's training rows, the temporally last ``inner_fraction`` (after another purge gap)
is the *stopping slice*: early stopping and checkpoint selection look at it and at nothing else.
The scored block never steers training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold. All index arrays are row positions in the labeled file.

    fit_idx: rows the model trains on; stop_idx: the stopping slice (training rows, later in
    time than fit_idx; empty for a fixed budget); score_idx: the rows the verdict scores.
    """

    index: int
    fit_idx: np.ndarray
    stop_idx: np.ndarray
    score_idx: np.ndarray
    source: str = "walk-forward"  # walk-forward | splits/fold_<k>.json

    def describe(self) -> str:
        """'fold 1: fit 40 (rows 0-39), stop 9, score 12 (rows 51-62)'."""
        s = self.score_idx
        return (f"fold {self.index}: fit {len(self.fit_idx)}, stop {len(self.stop_idx)}, score "
                f"{len(s)} (rows {int(s.min())}-{int(s.max())})" if len(s) else
                f"fold {self.index}: empty")


def pooled_index(folds: list[Fold]) -> tuple[np.ndarray, np.ndarray]:
    """(score_idx, fold_of): every fold's scored rows in fold order, and the fold of each -
    the order of every pooled prediction array."""
    score_idx = np.concatenate([f.score_idx for f in folds])
    fold_of = np.concatenate([np.full(len(f.score_idx), f.index) for f in folds])
    return score_idx, fold_of


def _inner(train: np.ndarray, inner_fraction: float, purge: int) -> tuple[np.ndarray, np.ndarray]:
    """Split time-ordered training rows into (fit, stop): stop is the last slice, after a purge."""
    train = np.sort(np.asarray(train, dtype=np.int64))
    if inner_fraction <= 0:
        return train, np.zeros(0, np.int64)
    n_stop = max(2, int(math.ceil(len(train) * inner_fraction)))
    n_fit = len(train) - n_stop - purge
    if n_fit < 2:
        raise ValueError(
            f"a fold has {len(train)} training rows: too few for a stopping slice of {n_stop} "
            f"rows and a purge of {purge}; lower protocol.inner_fraction or protocol.purge, or "
            f"use fewer folds (protocol.folds)")
    return train[:n_fit], train[-n_stop:]


def walk_forward_folds(dev_idx: np.ndarray, n_folds: int, *, min_train_fraction: float = 0.5,
                       purge: int = 1, inner_fraction: float = 0.2) -> list[Fold]:
    """Rolling-origin folds over the development rows `dev_idx` (row positions, time order).

    The outer split is sklearn's ``TimeSeriesSplit`` (expanding window, ``gap`` = purge) with
    scored blocks of equal size; rows left over by the division train in every fold.

    >>> [len(f.score_idx) for f in walk_forward_folds(np.arange(100), 4)]
    [12, 12, 12, 12]
    """
    from sklearn.model_selection import TimeSeriesSplit

    dev = np.sort(np.asarray(dev_idx, dtype=np.int64))
    n = len(dev)
    if n_folds < 1:
        raise ValueError(f"protocol.folds must be >= 1, got {n_folds}")
    if not 0 < min_train_fraction < 1:
        raise ValueError(f"protocol.min_train_fraction must lie in (0, 1), got {min_train_fraction}")
    first = int(math.ceil(n * min_train_fraction))
    block = (n - first) // n_folds
    if block < 2 or first - purge < 2:
        raise ValueError(
            f"{n} development rows cannot give {n_folds} walk-forward folds of at least 2 scored "
            f"rows after the first {first} training rows; use fewer folds (protocol.folds) or a "
            f"smaller protocol.min_train_fraction")
    if n_folds == 1:  # TimeSeriesSplit wants two or more; one fold is its last split
        splits = [(np.arange(n - block - purge), np.arange(n - block, n))]
    else:
        splits = TimeSeriesSplit(n_splits=n_folds, test_size=block, gap=purge).split(dev)
    folds = []
    for k, (train, score) in enumerate(splits):
        fit, stop = _inner(dev[train], inner_fraction, purge)
        folds.append(Fold(k, fit, stop, dev[score]))
    return folds


def folds_from_split_files(data_dir: Path, splits: dict[int, dict[str, np.ndarray]], *,
                           test_idx: np.ndarray, purge: int = 1,
                           inner_fraction: float = 0.2) -> list[Fold]:
    """Folds given by the user's ``splits/fold_<k>.json`` files: train -> fit + stop, val -> score.

    Each file's val rows are scored once across all files (a window scored twice would count as
    two independent windows), none may be a held-out test row of the configured split, and the
    `purge` training rows just before a file's val rows are dropped, as in walk-forward folds.
    """
    folds, seen = [], {}
    test = set(np.asarray(test_idx).tolist())
    for k in sorted(splits):
        s = splits[k]
        where = data_dir / "splits" / f"fold_{k}.json"
        val = np.sort(s["val"])
        twice = [int(v) for v in val if int(v) in seen]
        if twice:
            raise ValueError(
                f"{where}: val row {twice[0]} is also scored by splits/fold_{seen[twice[0]]}.json "
                f"({len(twice)} rows); with several split files each row may be scored by one "
                f"file only - make the val ranges disjoint (walk-forward)")
        held = sorted(test & set(val.tolist()) | test & set(s["train"].tolist()))
        if held:
            raise ValueError(
                f"{where}: row {held[0]} is a held-out test row of the configured split "
                f"({len(held)} rows); test rows never train or score - remove them from this file")
        seen.update({int(v): k for v in val})
        train = s["train"][s["train"] < val.min() - purge]
        fit, stop = _inner(train, inner_fraction, purge)
        folds.append(Fold(k, fit, stop, val, source=f"splits/fold_{k}.json"))
    return folds


def folds_for_dataset(ds, n_folds: int, *, min_train_fraction: float, purge: int,
                      inner_fraction: float, source: str = "auto") -> list[Fold]:
    """The folds a dataset is judged on.

    source "files": every ``splits/fold_<k>.json`` (at least two); "walk-forward": rolling
    origin over the development rows of the configured split; "auto": the files when the
    dataset ships two or more, else walk-forward.
    """
    user = getattr(ds, "all_splits", None) or {}
    if source == "files" or (source == "auto" and len(user) >= 2):
        if len(user) < 2:
            raise ValueError(
                f"{ds.path}/splits: protocol.fold_source = 'files' needs at least two "
                f"splits/fold_<k>.json files, found {len(user)}; add them or use 'walk-forward'")
        return folds_from_split_files(ds.path, user, test_idx=ds.test_idx, purge=purge,
                                      inner_fraction=inner_fraction)
    dev = np.union1d(ds.train_idx, ds.val_idx)
    return walk_forward_folds(dev, n_folds, min_train_fraction=min_train_fraction, purge=purge,
                              inner_fraction=inner_fraction)
