"""load_dataset: arrays, normalisation, fingerprint, original layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moola.data import DataValidationError, load_dataset, window_zscore

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def test_load_smoke_arrays():
    ds = load_dataset(FIXTURES / "smoke")
    assert ds.X.dtype == np.float32 and ds.X_raw.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.classes == ["consolidation", "retracement"]
    assert ds.labels[:3] == [ds.classes[i] for i in ds.y[:3]]
    assert ds.train_idx.dtype == np.int64 and ds.test_idx.shape == (0,)
    assert ds.window_ids[0] == "w-00000" and ds.feature_names == ["open", "high", "low", "close"]
    assert ds.expansion_start is not None and len(ds.expansion_start) == 120
    # window_zscore: every window has mean 0 and std 1 over all its values
    np.testing.assert_allclose(ds.X.mean(axis=(1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(ds.X.std(axis=(1, 2)), 1, atol=1e-3)
    np.testing.assert_allclose(ds.X_unlabeled.std(axis=(1, 2)), 1, atol=1e-3)
    assert 14_000 < ds.X_raw.mean() < 22_000
    assert "120 labeled" in ds.describe()


def test_zscore_keeps_bar_geometry_and_handles_flat_windows():
    ds = load_dataset(FIXTURES / "smoke")
    o, h, l, c = np.moveaxis(ds.X, -1, 0)
    assert (h >= np.maximum(o, c) - 1e-5).all() and (l <= np.minimum(o, c) + 1e-5).all()
    flat = np.full((2, 5, 4), 20_000.0)
    z = window_zscore(flat)
    assert np.isfinite(z).all() and np.abs(z).max() == 0


def test_normalization_none_keeps_raw_values():
    ds = load_dataset(FIXTURES / "smoke", normalization="none")
    np.testing.assert_array_equal(ds.X, ds.X_raw)
    with pytest.raises(ValueError, match="allowed: window_zscore, none"):
        load_dataset(FIXTURES / "smoke", normalization="minmax")


def test_fingerprint(smoke_copy):
    a = load_dataset(smoke_copy).fingerprint
    assert a == load_dataset(smoke_copy).fingerprint and len(a) == 64
    assert a != load_dataset(smoke_copy, normalization="none").fingerprint
    f = smoke_copy / "splits" / "fold_0.json"
    split = json.loads(f.read_text())
    split["val_idx"] = split["val_idx"][:-1]
    f.write_text(json.dumps(split))
    assert load_dataset(smoke_copy).fingerprint != a


def test_max_unlabeled_spreads_over_the_pool():
    ds = load_dataset(FIXTURES / "smoke", max_unlabeled=50)
    assert ds.X_unlabeled.shape == (50, 105, 4)
    assert ds.unlabeled_ids[0] == "u-000000" and ds.unlabeled_ids[-1] == "u-000599"


def test_expected_timesteps():
    with pytest.raises(DataValidationError, match="expects 100"):
        load_dataset(FIXTURES / "smoke", expected_timesteps=100)
    assert load_dataset(FIXTURES / "smoke", expected_timesteps=105).X.shape[1] == 105


def test_original_layout_accepted():
    ds = load_dataset(FIXTURES / "original_layout")
    assert (FIXTURES / "original_layout" / "train_clean.parquet").is_file()
    assert "train_indices" in (FIXTURES / "original_layout" / "splits" / "fold_0.json").read_text()
    assert len(ds.y) == 40 and len(ds.train_idx) == 30 and len(ds.val_idx) == 10
    assert 18_000 < ds.X_raw.mean() < 23_000  # raw prices near 20,000
    assert abs(float(ds.X.mean())) < 1e-3  # normalised by default


def test_error_message_lists_every_problem(smoke_copy):
    (smoke_copy / "unlabeled.parquet").unlink()
    (smoke_copy / "splits" / "fold_0.json").write_text("[]")
    with pytest.raises(DataValidationError) as exc:
        load_dataset(smoke_copy)
    assert len(exc.value.problems) == 2
    assert all(p in str(exc.value) for p in exc.value.problems)


def test_the_gates_load_with_data_expected_timesteps(tmp_path):
    """data.expected_timesteps reaches the run's dataset (it used to be documented and never
    passed): windows of another length are refused, naming the setting."""
    from moola.config import load_config
    from moola.gates.context import GateContext

    cfg = load_config("smoke").replace("run", data=str(FIXTURES / "smoke"))
    ctx = GateContext(cfg=cfg.replace("data", expected_timesteps=100), run_id="t", root=tmp_path)
    with pytest.raises(Exception, match="expected_timesteps"):
        ctx.dataset
    ok = GateContext(cfg=cfg.replace("data", expected_timesteps=105), run_id="t", root=tmp_path)
    assert ok.dataset.X.shape[1] == 105


def test_gate_0_fails_cleanly_on_windows_of_another_length(tmp_path):
    from moola.config import load_config
    from moola.gates.context import GateContext
    from moola.testing import judged

    cfg = load_config("smoke").replace("run", data=str(FIXTURES / "smoke"))
    ctx = GateContext(cfg=cfg.replace("data", expected_timesteps=100), run_id="t", root=tmp_path)
    v = judged(ctx, "gate_0_env")
    assert v.status == "failed" and "expected_timesteps" in v.reason, v.reason
    assert "traceback" not in v.artifacts
