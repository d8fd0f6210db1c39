"""The evaluation protocol: walk-forward folds, and windows a fold scores steer nothing."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from moola.config import load_config
from moola.gates import work
from moola.gates.context import GateContext
from moola.protocol import folds_for_dataset, walk_forward_folds
from moola.protocol.replicas import replica_seeds, train_replicas
from moola.testing import judged

SMOKE = Path(__file__).resolve().parents[2] / "fixtures" / "smoke"



@pytest.mark.parametrize("n, k, purge", [(98, 4, 1), (50, 3, 2), (67, 4, 0), (30, 2, 1)])
def test_walk_forward_folds_are_temporal_purged_and_disjoint(n, k, purge):
    dev = np.arange(100, 100 + n)  # row positions need not start at 0
    folds = walk_forward_folds(dev, k, purge=purge, inner_fraction=0.2)
    assert len(folds) == k
    scored = np.concatenate([f.score_idx for f in folds])
    assert len(np.unique(scored)) == len(scored)  # every scored row once
    assert np.array_equal(scored, np.sort(scored))  # blocks in time order
    assert scored[0] >= dev[int(np.ceil(n * 0.5))]  # the first half only trains
    assert scored[-1] == dev[-1]
    for f in folds:
        # fit < purge < stop < purge < score, all in time order
        assert f.fit_idx.max() + purge < f.stop_idx.min()
        assert f.stop_idx.max() + purge < f.score_idx.min()
        assert not set(f.fit_idx) & set(f.score_idx) and not set(f.stop_idx) & set(f.score_idx)


def test_walk_forward_without_a_stopping_slice_is_a_fixed_budget():
    (f,) = walk_forward_folds(np.arange(20), 1, inner_fraction=0.0, purge=1)
    assert len(f.stop_idx) == 0 and f.fit_idx.max() == 8 and f.score_idx.min() == 10


def test_too_many_folds_is_a_clear_error():
    with pytest.raises(ValueError, match="use fewer folds"):
        walk_forward_folds(np.arange(10), 4)


def test_split_files_become_the_folds_when_there_are_two_or_more(tmp_path):
    from moola.data import load_dataset

    data = tmp_path / "data"
    shutil.copytree(SMOKE, data)
    n = len(load_dataset(data).y)
    for k, cut in enumerate((n // 2, 3 * n // 4)):
        (data / "splits" / f"fold_{k}.json").write_text(json.dumps(
            {"train_idx": list(range(cut - 10)), "val_idx": list(range(cut, cut + 8))}))
    ds = load_dataset(data)
    folds = folds_for_dataset(ds, 3, min_train_fraction=0.5, purge=1, inner_fraction=0.2)
    assert [f.source for f in folds] == ["splits/fold_0.json", "splits/fold_1.json"]
    assert [len(f.score_idx) for f in folds] == [8, 8]
    with pytest.raises(ValueError, match="needs at least two"):
        folds_for_dataset(dataclasses.replace(ds, all_splits={}), 3, min_train_fraction=0.5,
                          purge=1, inner_fraction=0.2, source="files")


def test_replica_seeds_of_neighbouring_runs_do_not_overlap():
    assert not set(replica_seeds(1, 3)) & set(replica_seeds(2, 3))


# ---------------------------------------------------------------------------------------------
# the windows a fold scores never steer its training
# ---------------------------------------------------------------------------------------------


def _ctx(tmp_path: Path, dataset) -> GateContext:
    # selection has room to act: any epoch from the first may be the best checkpoint
    cfg = load_config("smoke", overrides={"run.data": str(SMOKE), "train.max_epochs": 12,
                                          "train.min_epochs": 1, "train.early_stop_patience": 3,
                                          "run.logger": "none"})
    ctx = GateContext(cfg=cfg, run_id="t", root=tmp_path)
    ctx.__dict__["dataset"] = dataset
    return ctx


def _train_fold0(tmp_path: Path, dataset, name: str) -> tuple[dict, np.ndarray]:
    ctx = _ctx(tmp_path, dataset)
    fold = work.folds(ctx)[0]
    out = tmp_path / name
    out.mkdir()
    train_replicas(ctx, "gate_1_smoke_enhanced", [fold], [17],
                   lambda seed: work.build_enhanced(ctx, len(dataset.classes),
                                                    dataset.X.shape[2]),
                   tmp_path / f"{name}.work", out,
                   **work.shared_recipe(ctx, "gate_1_smoke_enhanced"))
    state = torch.load(out / "models" / "seed17_fold0.pt", weights_only=True)
    with np.load(out / "pooled.npz") as z:
        proba = z["proba"]
    return state, proba


def test_relabelling_the_scored_windows_leaves_the_trained_weights_unchanged(tmp_path):
    from moola.data import load_dataset

    ds = load_dataset(SMOKE)
    fold = work.folds(_ctx(tmp_path, ds))[0]
    y = ds.y.copy()
    y[fold.score_idx] = 1 - y[fold.score_idx]  # every scored label flipped
    flipped = dataclasses.replace(ds, y=y)
    a, pa = _train_fold0(tmp_path, ds, "a")
    b, pb = _train_fold0(tmp_path, flipped, "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k}: the scored labels changed the trained weights"
    assert np.array_equal(pa, pb)  # same model, same predictions; only the score changes
    # and the stopping slice does steer: relabelling it changes the weights (the test can fail)
    y2 = ds.y.copy()
    y2[fold.stop_idx] = 1 - y2[fold.stop_idx]
    c, _ = _train_fold0(tmp_path, dataclasses.replace(ds, y=y2), "c")
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_each_replica_records_its_accuracy_on_its_fold_s_fit_rows(tmp_path):
    from moola.data import load_dataset
    from moola.train import predict_proba

    ds = load_dataset(SMOKE)
    ctx = _ctx(tmp_path, ds)
    fold = work.folds(ctx)[0]
    state, _ = _train_fold0(tmp_path, ds, "a")
    (rep,) = json.loads((tmp_path / "a" / "replicas.json").read_text())
    model = work.build_enhanced(ctx, len(ds.classes), ds.X.shape[2])
    model.load_state_dict(state)  # the kept weights, as the artifact stores them
    for rows in (fold.stop_idx, fold.score_idx):
        assert not set(rows) & set(fold.fit_idx)
    fit_acc = np.mean(predict_proba(model, ds.X[fold.fit_idx], "cpu").argmax(1)
                      == ds.y[fold.fit_idx])
    assert rep["train_acc"] == pytest.approx(fit_acc)
    assert rep["n_fit_real"] == len(fold.fit_idx)


def test_split_files_that_score_a_row_twice_or_touch_test_rows_are_refused(tmp_path):
    from moola.data import load_dataset

    data = tmp_path / "data"
    shutil.copytree(SMOKE, data)
    for k in (0, 1):  # both files score rows 60-67
        (data / "splits" / f"fold_{k}.json").write_text(json.dumps(
            {"train_idx": list(range(50)), "val_idx": list(range(60, 68))}))
    ds = load_dataset(data)
    with pytest.raises(ValueError, match=r"fold_1.json: val row 60 is also scored by "
                                         r"splits/fold_0.json"):
        folds_for_dataset(ds, 3, min_train_fraction=0.5, purge=1, inner_fraction=0.2)
    (data / "splits" / "fold_0.json").write_text(json.dumps(
        {"train_idx": list(range(50)), "val_idx": list(range(52, 60)),
         "test_idx": list(range(70, 80))}))
    (data / "splits" / "fold_1.json").write_text(json.dumps(
        {"train_idx": list(range(65)), "val_idx": list(range(70, 78))}))
    with pytest.raises(ValueError, match="fold_1.json: row 70 is a held-out test row"):
        folds_for_dataset(load_dataset(data), 3, min_train_fraction=0.5, purge=1,
                          inner_fraction=0.2)


def test_every_split_file_keys_the_cache(tmp_path):
    from moola.data import load_dataset

    data = tmp_path / "data"
    shutil.copytree(SMOKE, data)
    for k, (tr, va) in enumerate([(40, (42, 50)), (52, (54, 62))]):
        (data / "splits" / f"fold_{k}.json").write_text(json.dumps(
            {"train_idx": list(range(tr)), "val_idx": list(range(*va))}))
    before = load_dataset(data).fingerprint
    (data / "splits" / "fold_1.json").write_text(json.dumps(
        {"train_idx": list(range(52)), "val_idx": list(range(54, 64))}))
    assert load_dataset(data).fingerprint != before


def _labeled_npy(tmp_path: Path, labels: list[str]) -> Path:
    """A dataset written from real .npy files by `moola data from-numpy`, rows in this order."""
    from moola.data.from_numpy import convert_numpy

    rng = np.random.default_rng(0)
    tmp_path.mkdir(exist_ok=True)
    X = rng.normal(size=(len(labels), 16, 2)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.array(labels))
    np.save(tmp_path / "U.npy", rng.normal(size=(20, 16, 2)).astype(np.float32))
    return convert_numpy(tmp_path / "X.npy", tmp_path / "y.npy", tmp_path / "ds",
                         unlabeled_npy=tmp_path / "U.npy")


def _gate_0(data: Path):
    from moola.gates import builtin
    from moola.gates.context import GateContext

    ctx = GateContext(cfg=load_config("standard", overrides={"run.data": str(data)}),
                      run_id="g0", root=data.parent)
    return judged(ctx, "gate_0_env")


def test_gate_0_fails_when_every_fold_fits_on_one_class(tmp_path):
    """Rows sorted by label: every fold fits on one class; gate 0 says so, with the likely
    cause and the fixes, before any training."""
    v = _gate_0(_labeled_npy(tmp_path, ["a"] * 60 + ["b"] * 20))
    assert v.status == "failed", v.reason
    assert "every fold fits on one class (fold 0: all" in v.reason, v.reason
    assert "shuffled order" in v.reason and "protocol.min_train_fraction" in v.reason


def test_gate_0_warns_when_some_folds_fit_on_one_class_or_score_unseen_ones(tmp_path):
    """Three classes in runs (as BasicMotions' UCR train file): the folds fit on two and score
    a third they never saw; a first fold of one class only is a warning too (a rare class
    first seen later), as long as some fold fits on several."""
    v = _gate_0(_labeled_npy(tmp_path, ["a", "b"] * 20 + ["c"] * 40))
    assert v.status == "warning", v.reason
    assert "fold 0 scores 'c', which its" in v.reason and "never hold" in v.reason, v.reason
    v = _gate_0(_labeled_npy(tmp_path / "late", ["a"] * 40 + ["a", "b"] * 20))
    assert v.status == "warning", v.reason
    assert "fold 0: all" in v.reason and "fitting rows are 'a'" in v.reason, v.reason


def test_gate_0_is_silent_on_interleaved_classes(tmp_path):
    v = _gate_0(_labeled_npy(tmp_path, ["a", "b", "c"] * 27))
    assert v.status == "passed", v.reason
