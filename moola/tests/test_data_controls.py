"""Known-answer controls (`moola data control`): each breaks exactly one thing of a real
dataset, seeded, and writes a valid dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moola.data import load_dataset
from moola.data.controls import make_control
from moola.data.schema import DataError

SMOKE = Path(__file__).resolve().parents[2] / "fixtures" / "smoke"


@pytest.fixture(scope="module")
def original():
    return load_dataset(SMOKE, normalization="none")


def _load(p: Path):
    return load_dataset(p, normalization="none")


def test_shuffled_labels_keep_the_windows_and_the_class_shares(tmp_path, original):
    out = make_control(SMOKE, tmp_path / "c", "shuffled-labels", seed=3)
    c = _load(out)
    np.testing.assert_array_equal(c.X, original.X)
    np.testing.assert_array_equal(c.X_unlabeled, original.X_unlabeled)
    assert sorted(c.y) == sorted(original.y) and (c.y != original.y).any()
    assert json.loads((out / "meta.json").read_text())["control"] == {
        "kind": "shuffled-labels", "seed": 3, "source": str(SMOKE)}
    again = _load(make_control(SMOKE, tmp_path / "d", "shuffled-labels", seed=3))
    np.testing.assert_array_equal(again.y, c.y)  # seeded


@pytest.mark.parametrize("kind", ["random-walk-pool", "time-shuffled-pool"])
def test_a_pool_control_changes_only_the_unlabeled_windows(tmp_path, original, kind):
    c = _load(make_control(SMOKE, tmp_path / "c", kind, seed=1))
    np.testing.assert_array_equal(c.X, original.X)
    np.testing.assert_array_equal(c.y, original.y)
    assert c.X_unlabeled.shape == original.X_unlabeled.shape
    assert not np.allclose(c.X_unlabeled, original.X_unlabeled)
    if kind == "time-shuffled-pool":  # the same values, in another order, per window
        np.testing.assert_allclose(np.sort(c.X_unlabeled, axis=1),
                                   np.sort(original.X_unlabeled, axis=1), rtol=1e-6)
    else:  # OHLC-consistent walks: high >= open, close >= low
        u = c.X_unlabeled
        assert (u[:, :, 1] >= np.maximum(u[:, :, 0], u[:, :, 3]) - 1e-3).all()
        assert (u[:, :, 2] <= np.minimum(u[:, :, 0], u[:, :, 3]) + 1e-3).all()


def test_an_unknown_control_or_overwriting_the_source_is_refused(tmp_path):
    with pytest.raises(DataError, match="unknown control"):
        make_control(SMOKE, tmp_path / "c", "noise")
    with pytest.raises(DataError, match="is the source dataset"):
        make_control(SMOKE, SMOKE, "shuffled-labels")
