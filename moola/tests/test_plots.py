"""Learning curves and confusion matrix pictures (matplotlib optional)."""

from __future__ import annotations

import csv
import logging
import sys

import pytest

from moola.report import plots
from moola.report.plots import plot_confusion_matrix, plot_learning_curves, read_epoch_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COLUMNS = ["epoch", "step", "train_loss_step", "train_loss_epoch", "val_loss", "val_macro_f1", "lr"]


def write_metrics_csv(path, epochs=4, steps_per_epoch=3, epoch_loss=True, columns=COLUMNS):
    """A Lightning CSVLogger-style file: one row per logged step / epoch / eval, blanks elsewhere."""
    rows, step = [], 0
    for ep in range(epochs):
        for _ in range(steps_per_epoch):
            rows.append({"epoch": ep, "step": step, "train_loss_step": 1.0 - 0.1 * ep, "lr": 0.003})
            step += 1
        if epoch_loss:
            rows.append({"epoch": ep, "step": step - 1, "train_loss_epoch": 0.9 - 0.1 * ep})
        rows.append({"epoch": ep, "step": step - 1, "val_loss": 1.1 - 0.05 * ep,
                     "val_macro_f1": 0.5 + 0.05 * ep})
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def png_size(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def no_temp_files(directory):
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_read_epoch_curves_uses_the_epoch_columns(tmp_path):
    c = read_epoch_curves(write_metrics_csv(tmp_path / "metrics.csv"))
    assert c["train_loss"] == pytest.approx({0: 0.9, 1: 0.8, 2: 0.7, 3: 0.6})
    assert c["val_loss"] == pytest.approx({0: 1.1, 1: 1.05, 2: 1.0, 3: 0.95})
    assert c["val_macro_f1"][3] == pytest.approx(0.65)


def test_read_epoch_curves_averages_step_loss_when_no_epoch_loss(tmp_path):
    c = read_epoch_curves(write_metrics_csv(tmp_path / "m.csv", epoch_loss=False))
    assert c["train_loss"] == pytest.approx({0: 1.0, 1: 0.9, 2: 0.8, 3: 0.7})


def test_learning_curves_png(tmp_path):
    out = plot_learning_curves(write_metrics_csv(tmp_path / "metrics.csv"), tmp_path / "p" / "curves.png",
                               title="gate_1_smoke_enhanced")
    assert out == tmp_path / "p" / "curves.png"
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert png_size(out) == (int(5.2 * 2 * plots.DPI), int(3.8 * plots.DPI))  # two panels, dpi 120
    assert no_temp_files(out.parent)


def test_learning_curves_with_loss_only(tmp_path):
    """Pretraining logs no macro-F1: one panel, no error."""
    path = write_metrics_csv(tmp_path / "m.csv", columns=["epoch", "step", "train_loss_epoch", "val_loss"])
    out = plot_learning_curves(path, tmp_path / "curves.png")
    assert png_size(out)[0] == int(5.2 * plots.DPI)


def test_learning_curves_nothing_to_plot(tmp_path, caplog):
    (tmp_path / "m.csv").write_text("epoch,step,lr\n0,0,0.1\n")
    with caplog.at_level(logging.WARNING, logger="moola.report.plots"):
        assert plot_learning_curves(tmp_path / "m.csv", tmp_path / "c.png") is None
        assert plot_learning_curves(tmp_path / "missing.csv", tmp_path / "c.png") is None
    assert "has no train_loss" in caplog.text and "does not exist" in caplog.text
    assert not (tmp_path / "c.png").exists()


def test_confusion_matrix_png(tmp_path):
    out = plot_confusion_matrix([[10, 4], [3, 3]], ["consolidation", "retracement"],
                                tmp_path / "cm.png", title="gate_1 validation")
    assert out.read_bytes()[:8] == PNG_MAGIC
    # a class with no true windows (empty row) is drawn, not a division error
    out3 = plot_confusion_matrix([[1, 0, 0], [0, 2, 1], [0, 0, 0]], ["a", "b", "c"], tmp_path / "cm3.png")
    assert out3.exists() and no_temp_files(tmp_path)


def test_confusion_matrix_bad_input():
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix([[1, 2, 3], [4, 5, 6]], ["a", "b"], "x.png")
    with pytest.raises(ValueError, match="3 class names for a 2x2"):
        plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"], "x.png")


def test_without_matplotlib_returns_none_and_says_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import now raises ImportError
    with caplog.at_level(logging.WARNING, logger="moola.report.plots"):
        assert plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], tmp_path / "cm.png") is None
        assert plot_learning_curves(write_metrics_csv(tmp_path / "m.csv"), tmp_path / "c.png") is None
    assert "matplotlib is not installed" in caplog.text
    assert not list(tmp_path.glob("*.png"))


def test_long_titles_are_wrapped_to_the_figure_not_cut_off():
    title = "gate_4_finetune_enhanced: EnhancedSimpleLSTM (pretrained encoder + pseudo-samples)  (n=120)"
    lines = plots._wrap(title, 5.4).splitlines()
    assert len(lines) > 1 and max(map(len, lines)) <= 43
    assert " ".join(lines).split() == title.split()  # every word kept
