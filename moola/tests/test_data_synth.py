"""Synthetic generator: determinism, class balance, temporal split, valid OHLC, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from moola.cli import main
from moola.data import DataError, generate_synthetic, load_dataset, validate_dataset
from moola.data.io import features_to_array
from moola.data.synth import make_synthetic

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def features(table) -> np.ndarray:
    return features_to_array(table.column("features"), "t", None, pytest.fail)


def files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = generate_synthetic(tmp_path / "a", n_labeled=30, n_unlabeled=50, seed=3)
    b = generate_synthetic(tmp_path / "b", n_labeled=30, n_unlabeled=50, seed=3)
    c = generate_synthetic(tmp_path / "c", n_labeled=30, n_unlabeled=50, seed=4)
    assert files(a) == files(b)
    assert files(a)["labeled.parquet"] != files(c)["labeled.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temp dirs left


def test_class_balance_and_temporal_split_at_original_scale():
    labeled, unlabeled, split, meta = make_synthetic(98, 5, seed=17)
    labels = labeled.column("label").to_pylist()
    assert labels.count("consolidation") == 56 and labels.count("retracement") == 42
    assert split == {"train_idx": list(range(78)), "val_idx": list(range(78, 98))}
    assert meta["classes"] == {"consolidation": 56, "retracement": 42}
    # both classes in both blocks, in the same proportion
    val = labels[78:]
    assert 10 <= val.count("consolidation") <= 12


def test_smoke_fixture_shape_and_balance():
    ds = load_dataset(FIXTURES / "smoke")
    assert ds.X.shape == (120, 105, 4) and ds.X_unlabeled.shape == (600, 105, 4)
    assert (len(ds.train_idx), len(ds.val_idx), len(ds.test_idx)) == (90, 30, 0)
    counts = dict(zip(ds.classes, np.bincount(ds.y)))
    assert counts == {"consolidation": 69, "retracement": 51}  # 57/43 like 56/42
    assert sum(f.stat().st_size for f in (FIXTURES / "smoke").rglob("*") if f.is_file()) < 1_500_000


def test_smoke_fixture_regenerates_identically(tmp_path):
    out = tmp_path / "smoke"
    assert main(["data", "synth", "--out", str(out), "--labeled", "120", "--unlabeled", "600",
                 "--seed", "17", "--val-fraction", "0.25"]) == 0
    for name in ("labeled.parquet", "unlabeled.parquet"):
        assert pq.read_table(out / name).equals(pq.read_table(FIXTURES / "smoke" / name)), name
    for name in ("meta.json", "splits/fold_0.json"):
        assert (out / name).read_text() == (FIXTURES / "smoke" / name).read_text(), name


def test_ohlc_bars_valid_and_nq_like():
    labeled, unlabeled, _, _ = make_synthetic(60, 300, seed=11)
    for X in (features(labeled), features(unlabeled)):
        o, h, l, c = np.moveaxis(X, -1, 0)
        assert (h >= np.maximum(o, c)).all() and (l <= np.minimum(o, c)).all()
        assert (h > l).mean() > 0.95
        assert 13_000 < X.min() and X.max() < 23_000
        assert np.allclose(X * 4, np.round(X * 4))  # quarter-point ticks
    # expansion span inside the inner 45 bars
    s = np.asarray(labeled.column("expansion_start"))
    e = np.asarray(labeled.column("expansion_end"))
    assert (s >= 30).all() and (e <= 74).all() and (s < e).all()


def test_unlabeled_is_a_stride_10_slide():
    _, unlabeled, _, _ = make_synthetic(20, 40, seed=2)
    U = features(unlabeled)
    assert np.array_equal(U[0, 10:], U[1, :-10])
    assert len(set(unlabeled.column("window_id").to_pylist())) == 40


def test_refuses_to_replace_a_foreign_directory(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="notes.txt"):
        generate_synthetic(out, n_labeled=20, n_unlabeled=10)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_replaces_an_existing_dataset(tmp_path):
    out = generate_synthetic(tmp_path / "d", n_labeled=20, n_unlabeled=10, seed=1)
    generate_synthetic(out, n_labeled=24, n_unlabeled=10, seed=2)
    assert validate_dataset(out).summary["n_labeled"] == 24
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_bad_sizes_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="n_labeled"):
        generate_synthetic(tmp_path / "x", n_labeled=3)
    with pytest.raises(DataError, match="timesteps"):
        generate_synthetic(tmp_path / "x", timesteps=20)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_full_scale_generate_and_load(tmp_path):
    """Original scale (98 + 11,873 windows): generation and loading are vectorised (a few s)."""
    out = generate_synthetic(tmp_path / "full")
    ds = load_dataset(out)
    assert ds.X.shape == (98, 105, 4) and ds.X_unlabeled.shape == (11873, 105, 4)
    assert ds.X_unlabeled.dtype == np.float32
    meta = json.loads((out / "meta.json").read_text())
    assert meta["generator"]["seed"] == 17 and meta["feature_names"] == ["open", "high", "low", "close"]
