"""`moola data from-numpy`: real .npy files in, a dataset that `load_dataset` reads back out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moola.cli import main
from moola.data import load_dataset


def save(tmp_path: Path, **arrays) -> dict[str, Path]:
    paths = {}
    for name, a in arrays.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], a, allow_pickle=True)  # allow: one case writes an object array on purpose
    return paths


def arrays(n: int = 30, T: int = 12, F: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, T, F)).astype(np.float32)
    y = np.array(["down", "up"] * (n // 2))
    U = rng.normal(size=(50, T, F)).astype(np.float32)
    return X, y, U


def convert(p: dict[str, Path], out: Path, *extra: str) -> int:
    unl = ["--unlabeled", str(p["U"])] if "U" in p else []
    return main(["data", "from-numpy", str(p["X"]), str(p["y"]), "--out", str(out), *unl, *extra])


def test_round_trip_with_string_labels_and_a_pool(tmp_path, capsys):
    X, y, U = arrays()
    p = save(tmp_path, X=X, y=y, U=U)
    assert convert(p, tmp_path / "ds", "--feature-names", "a,b,c") == 0
    assert "train=24 val=6" in capsys.readouterr().out
    ds = load_dataset(tmp_path / "ds", normalization="none")
    np.testing.assert_array_equal(ds.X_raw, X)
    np.testing.assert_array_equal(ds.X_unlabeled, U)
    assert ds.labels == y.tolist() and ds.classes == ["down", "up"]
    assert ds.window_ids[0] == "w-00000" and ds.unlabeled_ids[-1] == "u-00049"
    assert ds.feature_names == ["a", "b", "c"]
    assert ds.train_idx.tolist() == list(range(24)) and ds.val_idx.tolist() == list(range(24, 30))


def test_one_feature_integer_labels_and_the_test_rows_as_pool(tmp_path, capsys):
    X, _, _ = arrays(n=40, F=1)
    y = np.arange(40) % 3
    p = save(tmp_path, X=X[:, :, 0], y=y)  # (n, T): one feature
    assert convert(p, tmp_path / "ds", "--test-fraction", "0.25", "--purge", "1") == 0
    ds = load_dataset(tmp_path / "ds", normalization="none")
    assert ds.X_raw.shape == (40, 12, 1) and ds.classes == ["0", "1", "2"]
    assert ds.feature_names == ["f0"]
    # 40 rows: 22 train, 8 val, 10 test; purge 1 row before val and before test
    assert ds.train_idx.tolist() == list(range(21)) and ds.val_idx.tolist() == list(range(22, 29))
    assert ds.test_idx.tolist() == list(range(30, 40))
    np.testing.assert_array_equal(ds.X_unlabeled, ds.X_raw[30:])
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["numpy"]["purged_from_split"] == {"train": 1, "val": 1}


def test_four_features_are_not_taken_for_ohlc(tmp_path):
    X, y, U = arrays(F=4)
    p = save(tmp_path, X=X, y=y, U=U)
    assert convert(p, tmp_path / "ds") == 0
    assert load_dataset(tmp_path / "ds").feature_names == ["f0", "f1", "f2", "f3"]


def _nan(a):
    a = a.copy()
    a[7, 3, 1] = np.nan
    return a


BAD = {
    "object_labels": (lambda X, y, U: (X, np.array(list(y), dtype=object), U),
                      ["y.npy: holds Python objects", "np.save(path, np.asarray(y).astype(str))"]),
    "nan_window": (lambda X, y, U: (_nan(X), y, U),
                   ["X.npy: window 7 (X[7]): nan at timestep 3, feature 1", "fill or drop the window"]),
    "wrong_length": (lambda X, y, U: (X, y[:-2], U), ["y.npy: 28 labels for 30 windows", "one label per window"]),
    "one_hot": (lambda X, y, U: (X, np.eye(2)[np.arange(30) % 2], U), ["y.npy: shape (30, 2)", "y.argmax(axis=1)"]),
    "bad_shape": (lambda X, y, U: (X[:, :, :, None], y, U), ["X.npy: shape (30, 12, 3, 1)", "(windows, timesteps, features)"]),
    "pool_shape": (lambda X, y, U: (X, y, U[:, :10]), ["U.npy: windows of shape (10, 3) (T, F), but X's are (12, 3)"]),
    "text_windows": (lambda X, y, U: (X.astype(str), y, U), ["X.npy: dtype <U", "not numeric"]),
    # caught by the dataset validator on the converted copy
    "leaky_pool": (lambda X, y, U: (X, y, np.concatenate([U, X[3:4]])),
                   ["ds/unlabeled.parquet: leakage: unlabeled row 50 (window_id 'u-00050') has the same "
                    "features as train/val window 'w-00003'", "not written"]),
    "one_class": (lambda X, y, U: (X, np.full(30, "up"), U), ["column 'label' has a single class ('up')"]),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_rejected_with_file_and_fix(case, tmp_path, capsys):
    change, fragments = BAD[case]
    X, y, U = change(*arrays())
    p = save(tmp_path, X=X, y=y, U=U)
    assert convert(p, tmp_path / "ds") == 1
    err = capsys.readouterr().err
    assert err.startswith("moola: error:") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in:\n{err}"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["U.npy", "X.npy", "y.npy"], "nothing may be written"


def test_no_pool_and_no_test_rows_says_what_to_pass(tmp_path, capsys):
    X, y, _ = arrays()
    p = save(tmp_path, X=X, y=y)
    assert convert(p, tmp_path / "ds") == 1
    err = capsys.readouterr().err
    assert "no unlabeled pool for pretraining; pass --unlabeled U.npy" in err and "--test-fraction" in err
    assert not (tmp_path / "ds").exists()


def test_missing_file(tmp_path, capsys):
    assert main(["data", "from-numpy", str(tmp_path / "X.npy"), str(tmp_path / "y.npy"), "--out",
                 str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'X.npy'}: file not found" in err and f"{tmp_path / 'y.npy'}: file not found" in err
