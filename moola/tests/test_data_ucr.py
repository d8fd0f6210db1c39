"""UCR adapter: bundled sktime datasets converted offline into the moola layout."""

from __future__ import annotations

import numpy as np
import pytest

from moola.cli import main
from moola.data import DataError, convert_ucr, load_dataset, validate_dataset


def test_gunpoint_layout(tmp_path):
    out = convert_ucr("GunPoint", tmp_path / "gp")
    report = validate_dataset(out)
    assert report.ok, report.problems  # test rows reused as the pool are not leakage
    ds = load_dataset(out)
    assert ds.X.shape == (200, 150, 1) and ds.classes == ["1", "2"]
    assert (len(ds.train_idx), len(ds.val_idx), len(ds.test_idx)) == (40, 10, 150)
    assert ds.window_ids[0] == "train-00000" and ds.window_ids[50] == "test-00000"
    assert ds.unlabeled_ids[0] == "u-test-00000" and len(ds.X_unlabeled) == 150
    np.testing.assert_array_equal(ds.X_raw[ds.test_idx], load_dataset(out, normalization="none").X_unlabeled)


def test_multivariate_channels_are_features(tmp_path):
    ds = load_dataset(convert_ucr("BasicMotions", tmp_path / "bm"))
    assert ds.X.shape[1:] == (100, 6) and len(ds.classes) == 4


def test_a_class_sorted_train_file_is_written_shuffled(tmp_path):
    """BasicMotions' train file holds its 4 classes in 4 runs: in file order every walk-forward
    fold scored classes its training rows never held. Written shuffled (seeded), each early
    stretch of rows holds several classes; GunPoint's file is not sorted and keeps its order."""
    import json

    out = convert_ucr("BasicMotions", tmp_path / "bm")
    ds = load_dataset(out)
    dev = np.concatenate([ds.train_idx, ds.val_idx])
    y = ds.y[dev]
    assert 1 + np.count_nonzero(y[1:] != y[:-1]) > 4 * len(ds.classes)  # no longer in runs
    assert len(set(y[:14].tolist())) >= 3  # the first fold's training rows see most classes
    assert "shuffled" in json.loads((out / "meta.json").read_text())["ucr"]["train_order"]
    again = load_dataset(convert_ucr("BasicMotions", tmp_path / "bm2"))
    assert again.window_ids == ds.window_ids  # seeded: the same order every time
    assert sorted(ds.window_ids[:40]) == [f"train-{i:05d}" for i in range(40)]
    from moola.data.ucr import _load

    Xf, yf = _load("BasicMotions", "train")  # the file's rows: each id still names its row
    for r, wid in enumerate(ds.window_ids[:40]):
        i = int(wid.removeprefix("train-"))
        np.testing.assert_allclose(ds.X_raw[r], Xf[i].T, rtol=1e-6)
        assert ds.classes[ds.y[r]] == yf[i]
    gp = convert_ucr("GunPoint", tmp_path / "gp")
    assert json.loads((gp / "meta.json").read_text())["ucr"]["train_order"] == \
        "as in the UCR train file"


def test_unequal_length_and_unknown_names_are_clear(tmp_path, capsys):
    with pytest.raises(DataError, match="equal-length"):
        convert_ucr("JapaneseVowels", tmp_path / "jv")
    assert not (tmp_path / "jv").exists()
    assert main(["data", "ucr", "NoSuchSet", "--out", str(tmp_path / "n")]) == 1
    err = capsys.readouterr().err
    assert "not bundled" in err and "GunPoint" in err


def test_cli_ucr(tmp_path, capsys):
    assert main(["data", "ucr", "ItalyPowerDemand", "--out", str(tmp_path / "ipd")]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "shuffled" not in out
    assert main(["data", "ucr", "BasicMotions", "--out", str(tmp_path / "bm")]) == 0
    assert "sorted by class; written in a fixed shuffled order" in capsys.readouterr().out
