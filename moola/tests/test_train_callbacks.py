"""EarlyStopping and CheckpointKeeper decisions and state round-trips."""

import pytest

from moola.train.callbacks import CheckpointKeeper, EarlyStopping


def run(es, scores, start=0):
    out = []
    for epoch, score in enumerate(scores, start=start):
        out.append(es.update(epoch, score))
    return out


def test_stops_after_patience_with_plain_reason():
    es = EarlyStopping("val_loss", "min", patience=2)
    decisions = run(es, [0.9, 0.5, 0.6, 0.7])
    assert [d[0] for d in decisions] == [False, False, False, True]
    assert decisions[-1][1] == "val_loss did not improve for 2 epochs (best 0.5 at epoch 1)"
    assert (es.best_score, es.best_epoch) == (0.5, 1)


def test_max_mode_and_none_counts_as_no_improvement():
    es = EarlyStopping("val_macro_f1", "max", patience=2)
    decisions = run(es, [0.5, None, 0.4])
    assert decisions[-1][0] is True
    assert es.best_epoch == 0


def test_never_stops_before_min_epochs():
    es = EarlyStopping("val_loss", "min", patience=1, min_epochs=4)
    decisions = run(es, [1.0, 2.0, 3.0, 4.0])
    assert [d[0] for d in decisions] == [False, False, False, True]
    assert "min_epochs=4" in decisions[1][1]


def test_patience_zero_stops_at_first_non_improvement():
    es = EarlyStopping(patience=0)
    assert [d[0] for d in run(es, [1.0, 0.5, 0.6])] == [False, False, True]


def test_state_roundtrip_continues_identically():
    a = EarlyStopping("val_loss", "min", patience=3)
    run(a, [0.9, 0.5, 0.6])
    b = EarlyStopping("val_loss", "min", patience=3)
    b.load_state_dict(a.state_dict())
    assert run(a, [0.7, 0.8], start=3) == run(b, [0.7, 0.8], start=3)
    with pytest.raises(ValueError, match="val_loss"):
        EarlyStopping("val_acc", "max").load_state_dict(a.state_dict())


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="allowed values: min, max"):
        EarlyStopping(mode="lowest")
    with pytest.raises(ValueError, match="allowed values: min, max"):
        CheckpointKeeper("d", mode="up")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="save_top_k"):
        CheckpointKeeper("d", save_top_k=-2)


def test_missing_metric_lists_existing():
    es = EarlyStopping("val_los")
    with pytest.raises(KeyError, match="val_accuracy, val_loss"):
        es.score_from({"val_loss": 1.0, "val_accuracy": 0.5})
    assert es.score_from(None) is None


def test_keeper_top_k(tmp_path):
    keeper = CheckpointKeeper(tmp_path, "val_loss", "min", save_top_k=2)
    d0 = keeper.record(0, 0.9)
    assert d0.save_path.name == "best-epoch=00-val_loss=0.9000.pt" and d0.evict == []
    keeper.record(1, 0.5)
    d2 = keeper.record(2, 0.95)  # worse than both kept: not saved
    assert d2.save_path is None and d2.evict == []
    d3 = keeper.record(3, 0.4)  # evicts epoch 0
    assert d3.save_path.name.startswith("best-epoch=03") and [p.name for p in d3.evict] == [d0.save_path.name]
    assert keeper.best_path.name == d3.save_path.name
    assert keeper.record(4, None) == (None, [])
    restored = CheckpointKeeper(tmp_path, "val_loss", "min", save_top_k=2)
    restored.load_state_dict(keeper.state_dict())
    assert restored.kept == keeper.kept


def test_keeper_zero_keeps_none_and_max_mode(tmp_path):
    assert CheckpointKeeper(tmp_path, save_top_k=0).record(0, 0.1).save_path is None
    keeper = CheckpointKeeper(tmp_path, "val_macro_f1", "max", save_top_k=1)
    keeper.record(0, 0.5)
    d = keeper.record(1, 0.7)
    assert d.save_path is not None and len(d.evict) == 1 and keeper.kept[0][0] == 1


def test_keeper_reconcile_drops_untracked_files(tmp_path):
    keeper = CheckpointKeeper(tmp_path, save_top_k=1)
    d = keeper.record(0, 0.5)
    d.save_path.write_bytes(b"x")
    stray = tmp_path / "best-epoch=01-val_loss=0.4000.pt"
    stray.write_bytes(b"x")
    assert keeper.reconcile() == [stray]
    assert d.save_path.exists() and not stray.exists()
