"""Validation rejects real malformed files, each message naming file, row/column and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moola.data import DataValidationError, load_dataset, validate_dataset


# -- helpers: real edits of the files in a copy of the smoke dataset ------------------------


def read(ds: Path, name: str = "labeled.parquet") -> tuple[pd.DataFrame, np.ndarray]:
    """(other columns, features (n, T, F)) of one parquet file."""
    df = pd.read_parquet(ds / name)
    X = np.stack([np.stack(w) for w in df.pop("features")]).astype(np.float64)
    return df, X


def write(ds: Path, df: pd.DataFrame, features, name: str = "labeled.parquet") -> None:
    df = df.copy()
    df["features"] = [np.asarray(w).tolist() for w in features] if isinstance(features, np.ndarray) else features
    df.to_parquet(ds / name)


def edit_split(ds: Path, change) -> None:
    f = ds / "splits" / "fold_0.json"
    split = json.loads(f.read_text())
    change(split)
    f.write_text(json.dumps(split))


def snapshot(ds: Path) -> dict[str, bytes]:
    return {str(p.relative_to(ds)): p.read_bytes() for p in sorted(ds.rglob("*")) if p.is_file()} if ds.exists() else {}


def rejected(ds: Path, *fragments: str) -> str:
    """Validate (and load) a broken dataset: rejected, nothing written, one message has all fragments."""
    before = snapshot(ds)
    report = validate_dataset(ds)
    assert not report.ok
    with pytest.raises(DataValidationError) as exc:
        load_dataset(ds)
    assert exc.value.problems == report.problems
    assert snapshot(ds) == before, "validation must not write anything"
    matching = [p for p in report.problems if all(f in p for f in fragments)]
    assert matching, f"no problem contains {fragments}; problems: {report.problems}"
    return matching[0]


# -- files and columns -----------------------------------------------------------------------


def test_directory_missing(tmp_path):
    msg = rejected(tmp_path / "nope", "nope", "not found", "moola data synth")
    assert not (tmp_path / "nope").exists()


def test_missing_labeled_file(smoke_copy):
    (smoke_copy / "labeled.parquet").unlink()
    rejected(smoke_copy, "labeled.parquet", "missing file", "train_clean.parquet", "files found", "regenerate")


def test_missing_unlabeled_file(smoke_copy):
    (smoke_copy / "unlabeled.parquet").unlink()
    rejected(smoke_copy, "unlabeled.parquet", "missing file", "add it")


def test_truncated_parquet(smoke_copy):
    f = smoke_copy / "labeled.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    rejected(smoke_copy, "labeled.parquet", "cannot be read as parquet", "regenerate")


def test_not_parquet(smoke_copy):
    (smoke_copy / "unlabeled.parquet").write_text("window_id,features\nu-1,1 2 3\n")
    rejected(smoke_copy, "unlabeled.parquet", "cannot be read as parquet", "rewrite")


def test_empty_file(smoke_copy):
    df, X = read(smoke_copy)
    write(smoke_copy, df.iloc[:0], [])
    rejected(smoke_copy, "labeled.parquet", "empty (0 rows)")


def test_missing_column(smoke_copy):
    df, X = read(smoke_copy)
    write(smoke_copy, df.drop(columns=["label"]), X)
    msg = rejected(smoke_copy, "labeled.parquet", "missing column 'label'", "columns found")
    assert "'window_id'" in msg and "'features'" in msg


def test_label_not_strings(smoke_copy):
    df, X = read(smoke_copy)
    df["label"] = (df["label"] == "retracement").astype(int)
    write(smoke_copy, df, X)
    rejected(smoke_copy, "labeled.parquet", "column 'label'", "expected strings", "astype(str)")


def test_features_not_nested_numbers(smoke_copy):
    df, X = read(smoke_copy)
    write(smoke_copy, df, [str(w.tolist()) for w in X])
    rejected(smoke_copy, "labeled.parquet", "column 'features'", "expected a list of timesteps")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_value(smoke_copy, bad):
    df, X = read(smoke_copy)
    X[5, 10, 2] = bad
    write(smoke_copy, df, X)
    rejected(smoke_copy, "labeled.parquet", "row 5 (window_id 'w-00005')", "non-finite", "timestep 10, feature 2", "drop the window")


def test_wrong_window_length(smoke_copy):
    df, X = read(smoke_copy)
    feats = [w.tolist() for w in X]
    feats[7] = feats[7][:-1]
    write(smoke_copy, df, feats)
    rejected(smoke_copy, "labeled.parquet", "'features'", "row 7 (window_id 'w-00007')", "shape (104, 4)", "expected shape (105, 4)")


def test_ragged_bars(smoke_copy):
    df, X = read(smoke_copy)
    feats = [w.tolist() for w in X]
    feats[3][0] = feats[3][0][:3]
    write(smoke_copy, df, feats)
    rejected(smoke_copy, "labeled.parquet", "row 3", "between 3 and 4 values", "ragged", "expected shape (105, 4)")


def test_duplicate_window_ids(smoke_copy):
    df, X = read(smoke_copy)
    df.loc[4, "window_id"] = df.loc[2, "window_id"]
    write(smoke_copy, df, X)
    rejected(smoke_copy, "labeled.parquet", "'window_id'", "duplicate id 'w-00002'", "row 2 and row 4", "unique")


def test_single_class(smoke_copy):
    df, X = read(smoke_copy)
    df["label"] = "consolidation"
    write(smoke_copy, df, X)
    rejected(smoke_copy, "labeled.parquet", "column 'label'", "single class", "add windows")


def test_label_spelling(smoke_copy):
    df, X = read(smoke_copy)
    first = int(np.flatnonzero(df["label"] == "consolidation")[0])
    df.loc[first, "label"] = "Consolidation "
    write(smoke_copy, df, X)
    rejected(smoke_copy, "labeled.parquet", "unknown label spelling", "'Consolidation '", f"row {first}", "write 'consolidation'")


def test_expansion_outside_window(smoke_copy):
    df, X = read(smoke_copy)
    df.loc[6, "expansion_end"] = 300
    write(smoke_copy, df, X)
    rejected(smoke_copy, "labeled.parquet", "'expansion_end'", "row 6", "outside the window")


# -- splits -----------------------------------------------------------------------------------


def test_split_missing(smoke_copy):
    (smoke_copy / "splits" / "fold_0.json").unlink()
    rejected(smoke_copy, "fold_0.json", "split file missing", "train_idx")


def test_split_malformed_json(smoke_copy):
    (smoke_copy / "splits" / "fold_0.json").write_text('{"train_idx": [0, 1,')
    rejected(smoke_copy, "fold_0.json", "not valid JSON", "rewrite")


def test_split_unknown_key(smoke_copy):
    edit_split(smoke_copy, lambda s: s.update(holdout=[1]))
    rejected(smoke_copy, "fold_0.json", "unknown key 'holdout'", "allowed keys", "train_indices")


def test_split_missing_val(smoke_copy):
    edit_split(smoke_copy, lambda s: s.pop("val_idx"))
    rejected(smoke_copy, "fold_0.json", "missing key 'val_idx'", "keys found")


def test_split_out_of_range(smoke_copy):
    edit_split(smoke_copy, lambda s: s["val_idx"].append(500))
    rejected(smoke_copy, "fold_0.json", "'val' index 500 is out of range", "120 rows")


def test_split_overlap(smoke_copy):
    edit_split(smoke_copy, lambda s: s["train_idx"].append(s["val_idx"][0]))
    rejected(smoke_copy, "fold_0.json", "row 90", "both 'train' and 'val'", "one split only")


def test_split_not_temporal(smoke_copy):
    def swap(s):
        s["train_idx"][0], s["val_idx"][0] = s["val_idx"][0], s["train_idx"][0]
    edit_split(smoke_copy, swap)
    rejected(smoke_copy, "fold_0.json", "not temporal", "'train' row 90", "rebuild the split by time")


def test_split_non_integer(smoke_copy):
    edit_split(smoke_copy, lambda s: s["train_idx"].__setitem__(3, 3.0))
    rejected(smoke_copy, "fold_0.json", "must be integers", "entry 3 is 3.0")


# -- unlabeled pool ---------------------------------------------------------------------------


def test_leakage_by_window_id(smoke_copy):
    df, X = read(smoke_copy, "unlabeled.parquet")
    df.loc[11, "window_id"] = "w-00095"  # a val window's id
    write(smoke_copy, df, X, "unlabeled.parquet")
    rejected(smoke_copy, "unlabeled.parquet", "leakage", "'w-00095'", "row 95", "(row 11)", "remove it")


def test_leakage_by_content(smoke_copy):
    _, XL = read(smoke_copy)
    df, X = read(smoke_copy, "unlabeled.parquet")
    X[20] = XL[10]
    write(smoke_copy, df, X, "unlabeled.parquet")
    rejected(smoke_copy, "unlabeled.parquet", "leakage", "row 20 (window_id 'u-000020')", "same features", "'w-00010'", "remove it")


def test_test_rows_may_be_in_unlabeled_pool(smoke_copy):
    """UCR layout: test windows reused as the pool are not leakage; val windows are."""
    edit_split(smoke_copy, lambda s: s.update(val_idx=list(range(90, 110)), test_idx=list(range(110, 120))))
    _, XL = read(smoke_copy)
    df, X = read(smoke_copy, "unlabeled.parquet")
    X[0] = XL[115]
    write(smoke_copy, df, X, "unlabeled.parquet")
    assert validate_dataset(smoke_copy).ok
    X[1] = XL[100]
    write(smoke_copy, df, X, "unlabeled.parquet")
    rejected(smoke_copy, "leakage", "'w-00100'")


def test_unlabeled_other_shape(smoke_copy):
    df, X = read(smoke_copy, "unlabeled.parquet")
    write(smoke_copy, df, X[:, :100], "unlabeled.parquet")
    rejected(smoke_copy, "unlabeled.parquet", "shape (100, 4)", "labeled windows have (105, 4)")


def test_all_problems_collected(smoke_copy):
    df, X = read(smoke_copy)
    X[1, 0, 0] = np.nan
    write(smoke_copy, df, X)
    edit_split(smoke_copy, lambda s: s.update(extra=[]))
    (smoke_copy / "unlabeled.parquet").unlink()
    report = validate_dataset(smoke_copy)
    text = "\n".join(report.problems)
    assert len(report.problems) >= 3
    assert "non-finite" in text and "unknown key 'extra'" in text and "unlabeled.parquet: missing file" in text


def test_valid_fixtures_pass():
    root = Path(__file__).resolve().parents[2] / "fixtures"
    for name in ("smoke", "original_layout"):
        report = validate_dataset(root / name)
        assert report.ok, report.problems
