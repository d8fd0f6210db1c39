"""metrics.csv in Lightning's CSVLogger layout."""

import csv

from moola.train import csv_logger
from moola.train.csv_logger import CSVLogger, make_logger, NullLogger


def read(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_header_union_sorted_and_blanks(tmp_path):
    path = tmp_path / "metrics.csv"
    log = CSVLogger(path)
    log.log({"train_loss_step": 0.5, "lr": 0.001}, epoch=0, step=2)
    log.log({"val_loss": 0.4, "train_loss_epoch": 0.45, "eval_timed_out": False}, epoch=0, step=5)
    log.log({"train_loss_step": 0.3, "lr": 0.001}, epoch=1, step=7)
    rows = read(path)
    assert rows[0] == ["epoch", "step", "eval_timed_out", "lr", "train_loss_epoch",
                       "train_loss_step", "val_loss"]
    assert rows[1] == ["0", "2", "", "0.001", "", "0.5", ""]
    assert rows[2] == ["0", "5", "0", "", "0.45", "", "0.4"]
    assert rows[3] == ["1", "7", "", "0.001", "", "0.3", ""]


def test_append_without_rewrite_when_columns_known(tmp_path, monkeypatch):
    calls = []
    real = csv_logger.atomic_write_text
    monkeypatch.setattr(csv_logger, "atomic_write_text", lambda *a, **k: calls.append(1) or real(*a, **k))
    log = CSVLogger(tmp_path / "m.csv")
    log.log({"a": 1}, epoch=0, step=1)
    log.log({"a": 2}, epoch=0, step=2)
    log.log({"b": 3}, epoch=0, step=3)
    assert len(calls) == 2  # first row and the new column
    assert len(read(tmp_path / "m.csv")) == 4


def test_reopen_and_drop_from_epoch(tmp_path):
    path = tmp_path / "m.csv"
    log = CSVLogger(path)
    for epoch in range(3):
        log.log({"loss": float(epoch)}, epoch=epoch, step=epoch)
    again = CSVLogger(path)
    again.drop_from_epoch(2)
    again.log({"loss": 9.0}, epoch=2, step=2)
    assert [r[0] for r in read(path)[1:]] == ["0", "1", "2"]
    assert read(path)[-1] == ["2", "2", "9.0"]
    again.reset()
    assert not path.exists()


def test_none_logger_writes_nothing(tmp_path):
    log = make_logger("none", tmp_path / "m.csv")
    assert isinstance(log, NullLogger)
    log.log({"a": 1}, epoch=0, step=0)
    assert list(tmp_path.iterdir()) == []
