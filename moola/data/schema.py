"""The on-disk dataset format: file names, columns, split keys, and the error/report types.

A dataset is a directory::

    labeled.parquet        window_id (str, unique), label (str), features (T x F nested lists),
                           optional expansion_start / expansion_end (int)
                           (the original name train_clean.parquet is accepted too)
    unlabeled.parquet      window_id, features (same T, F)
    splits/fold_<k>.json   train_idx, val_idx, optional test_idx (row positions, temporal)
                           (the original keys train_indices / val_indices / test_indices too)
    meta.json              optional: feature_names, source, generator parameters
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LABELED_FILES = ("labeled.parquet", "train_clean.parquet")  # first found wins
UNLABELED_FILE = "unlabeled.parquet"
SPLITS_DIR = "splits"
META_FILE = "meta.json"
# Everything a dataset directory may hold; the writer only replaces directories made of these.
DATASET_ENTRIES = frozenset({*LABELED_FILES, UNLABELED_FILE, SPLITS_DIR, META_FILE})

LABELED_REQUIRED = ("window_id", "label", "features")
LABELED_OPTIONAL = ("expansion_start", "expansion_end")
UNLABELED_REQUIRED = ("window_id", "features")

# split file key -> role; both spellings of a role may not appear together
SPLIT_KEYS = {
    "train_idx": "train",
    "val_idx": "val",
    "test_idx": "test",
    "train_indices": "train",
    "val_indices": "val",
    "test_indices": "test",
}
SPLIT_ROLES = ("train", "val", "test")  # temporal order: every train < every val < every test

OHLC = ["open", "high", "low", "close"]


def split_file(fold: int) -> str:
    """Relative path of the split file of `fold`."""
    return f"{SPLITS_DIR}/fold_{fold}.json"


def default_feature_names(n_features: int) -> list[str]:
    """OHLC for 4 features (the original layout), f0..f{F-1} otherwise."""
    return list(OHLC) if n_features == 4 else [f"f{i}" for i in range(n_features)]


class DataError(Exception):
    """A dataset could not be read, written or converted; the message says what to do."""


class DataValidationError(DataError):
    """A dataset failed validation. `.problems` lists every problem found, one message each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        n = len(self.problems)
        head = f"dataset failed validation ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


@dataclass
class ValidationReport:
    """Outcome of `validate_dataset`: `ok` is True when `problems` is empty."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        """Human-readable summary (valid) or the list of problems (invalid)."""
        if not self.ok:
            return "\n".join(f"- {p}" for p in self.problems)
        s = self.summary
        classes = ", ".join(f"{k}={v}" for k, v in s.get("classes", {}).items())
        lines = [
            f"dataset {s.get('path')}: OK",
            f"  labeled   {s.get('labeled_file')}: {s.get('n_labeled')} windows, "
            f"T={s.get('timesteps')}, F={s.get('features')}",
            f"  classes   {classes}",
            f"  split     fold {s.get('fold')}: train={s.get('n_train')} val={s.get('n_val')} "
            f"test={s.get('n_test')}",
            f"  unlabeled {s.get('n_unlabeled')} windows",
        ]
        return "\n".join(lines)
