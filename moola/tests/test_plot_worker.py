"""The plot process: figures drawn off the training process, failures logged, never raised."""

from __future__ import annotations

import pytest

from moola.report.plot_worker import PlotWorker
from moola.tests.test_plots import PNG_MAGIC, write_metrics_csv

pytest.importorskip("matplotlib")


def test_draws_the_queued_figures_and_writes_no_log_when_all_succeed(tmp_path):
    worker = PlotWorker.start(tmp_path / "reports" / "plots.log")
    assert worker is not None
    csv_path = write_metrics_csv(tmp_path / "metrics.csv")
    assert worker.submit("learning_curves", metrics_csv_path=csv_path,
                         out_png=tmp_path / "g" / "learning_curves.png", title="gate")
    assert worker.submit("confusion_matrix", cm=[[5, 1], [2, 7]], class_names=["a", "b"],
                         out_png=tmp_path / "g" / "confusion_matrix.png")
    assert worker.close(timeout=120)
    for name in ("learning_curves.png", "confusion_matrix.png"):
        assert (tmp_path / "g" / name).read_bytes()[:8] == PNG_MAGIC
    assert not (tmp_path / "reports" / "plots.log").exists()


def test_a_failing_figure_is_logged_and_the_next_one_still_drawn(tmp_path):
    log_path = tmp_path / "plots.log"
    worker = PlotWorker.start(log_path)
    worker.submit("confusion_matrix", cm=[[1, 2, 3]], class_names=["a"],  # not square
                  out_png=tmp_path / "bad.png")
    worker.submit("confusion_matrix", cm=[[3, 0], [1, 4]], class_names=["x", "y"],
                  out_png=tmp_path / "good.png")
    assert worker.close(timeout=120) is False  # exit code 1: one figure failed
    assert not (tmp_path / "bad.png").exists()
    assert (tmp_path / "good.png").read_bytes()[:8] == PNG_MAGIC
    text = log_path.read_text()
    assert "bad.png" in text and "must be square" in text


def test_unknown_kind_is_refused_on_the_client_side(tmp_path):
    worker = PlotWorker.start(tmp_path / "plots.log")
    with pytest.raises(ValueError, match="allowed: learning_curves, confusion_matrix"):
        worker.submit("histogram", out_png=tmp_path / "h.png")
    assert worker.close(timeout=60)


def test_submit_after_the_process_died_returns_false(tmp_path, caplog):
    worker = PlotWorker.start(tmp_path / "plots.log")
    worker.proc.kill()
    worker.proc.wait()
    ok = True
    for _ in range(3):  # the pipe may absorb a first write before it reports the broken pipe
        ok = ok and worker.submit("confusion_matrix", cm=[[1, 0], [0, 1]], class_names=["a", "b"],
                                  out_png=tmp_path / "x.png")
    assert ok is False
    assert "plot process exited early" in caplog.text
    worker.close(timeout=10)
