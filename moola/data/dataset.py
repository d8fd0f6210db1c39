"""`load_dataset`: validated, normalised arrays ready for models (see docs/CONTRACTS.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moola.data.normalize import NORMALIZATIONS, normalize
from moola.data.schema import DataValidationError, default_feature_names
from moola.data.validate import inspect_dataset


@dataclass
class Dataset:
    """A loaded dataset. Treat it as read-only: it may be shared by several gates.

    X: (n, T, F) float32 normalised; X_raw: (n, T, F) raw; y: (n,) int64 indices into
    `classes` (sorted label strings); X_unlabeled: (m, T, F) float32 normalised.
    """

    path: Path
    X: np.ndarray
    X_raw: np.ndarray
    y: np.ndarray
    classes: list[str]
    window_ids: list[str]
    X_unlabeled: np.ndarray
    unlabeled_ids: list[str]
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    fingerprint: str
    feature_names: list[str]
    normalization: str
    fold: int
    expansion_start: np.ndarray | None = None  # (n,) float64 (nan = missing), when present
    expansion_end: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    # every splits/fold_<k>.json when the dataset ships two or more ({k: {role: indices}});
    # the evaluation protocol then uses them as its folds (moola.protocol.folds)
    all_splits: dict = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """Label string of every labeled row."""
        return [self.classes[i] for i in self.y]

    def describe(self) -> str:
        """One line: rows, classes, shape, split sizes, unlabeled count."""
        counts = np.bincount(self.y, minlength=len(self.classes))
        cls = ", ".join(f"{c}={k}" for c, k in zip(self.classes, counts))
        return (
            f"{self.path}: {len(self.y)} labeled ({cls}), T={self.X.shape[1]}, F={self.X.shape[2]}, "
            f"train/val/test={len(self.train_idx)}/{len(self.val_idx)}/{len(self.test_idx)}, "
            f"unlabeled={len(self.X_unlabeled)}, normalization={self.normalization}"
        )


def _fingerprint(files: list[Path], fold: int, normalization: str, max_unlabeled: int) -> str:
    """sha256 over file names and bytes + fold + normalisation (+ the unlabeled cap when set)."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    h.update(f"fold={fold};normalization={normalization}".encode())
    if max_unlabeled:
        h.update(f";max_unlabeled={max_unlabeled}".encode())
    return h.hexdigest()


def load_dataset(
    path: str | Path,
    fold: int = 0,
    normalization: str = "window_zscore",
    max_unlabeled: int = 0,
    expected_timesteps: int = 0,
) -> Dataset:
    """Validate, then load a dataset directory; raises `DataValidationError` listing every problem.

    `max_unlabeled` > 0 keeps that many unlabeled windows, evenly spaced over the pool (the
    pool is overlapping windows in time order, so the first m would all come from one stretch).
    `expected_timesteps` > 0 rejects windows of another length.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization {normalization!r} is unknown; allowed: {', '.join(NORMALIZATIONS)}")
    report, p = inspect_dataset(path, fold)
    problems = list(report.problems)
    if report.ok and expected_timesteps and p.X.shape[1] != expected_timesteps:
        problems.append(
            f"{p.labeled_path}: column 'features': windows have {p.X.shape[1]} timesteps, the "
            f"configuration expects {expected_timesteps}; set data.expected_timesteps = 0 or "
            f"{p.X.shape[1]}, or use a dataset with {expected_timesteps}-step windows"
        )
    all_splits = _all_splits(Path(path), len(p.window_ids), problems) if report.ok else {}
    if problems:
        raise DataValidationError(problems)
    U, u_ids = p.X_unlabeled, p.unlabeled_ids
    if max_unlabeled and len(U) > max_unlabeled:
        keep = np.unique(np.linspace(0, len(U) - 1, max_unlabeled).round().astype(np.int64))
        U, u_ids = U[keep], [u_ids[i] for i in keep]
    classes = sorted(set(p.labels))
    index = {c: i for i, c in enumerate(classes)}
    names = p.meta.get("feature_names") or default_feature_names(p.X.shape[2])
    files = [f for f in (p.labeled_path, p.unlabeled_path, p.split_path) if f is not None]
    if all_splits:  # the folds come from every split file: all of them key the cache
        files += [Path(path) / "splits" / f"fold_{k}.json" for k in sorted(all_splits)
                  if Path(path) / "splits" / f"fold_{k}.json" != p.split_path]
    return Dataset(
        path=Path(path),
        X=normalize(p.X, normalization),
        X_raw=p.X,
        y=np.asarray([index[c] for c in p.labels], dtype=np.int64),
        classes=classes,
        window_ids=list(p.window_ids),
        X_unlabeled=normalize(U, normalization),
        unlabeled_ids=list(u_ids),
        train_idx=p.split["train"],
        val_idx=p.split["val"],
        test_idx=p.split["test"],
        fingerprint=_fingerprint(files, fold, normalization, max_unlabeled),
        feature_names=list(names),
        normalization=normalization,
        fold=fold,
        expansion_start=p.expansion.get("expansion_start"),
        expansion_end=p.expansion.get("expansion_end"),
        meta=p.meta,
        all_splits=all_splits,
    )


def _all_splits(path: Path, n_rows: int, problems: list[str]) -> dict[int, dict[str, np.ndarray]]:
    """Every splits/fold_<k>.json when there are two or more (each checked like fold 0)."""
    from moola.data.splits import read_split

    files = sorted((path / "splits").glob("fold_*.json"))
    found = {}
    for f in files:
        k = f.stem.split("_", 1)[1]
        if k.isdigit():
            found[int(k)] = f
    if len(found) < 2:
        return {}
    out = {}
    for k, f in sorted(found.items()):
        split = read_split(f, n_rows, problems.append)
        if split is not None:
            out[k] = split
    return out
