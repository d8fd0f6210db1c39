"""Pictures of a gate's run: learning curves from ``metrics.csv`` and the confusion matrix.

matplotlib is optional (the ``plots`` extra): without it every function logs why and returns
None. Figures are drawn with the object-oriented API on an Agg canvas (no pyplot global state,
safe in worker threads) and written atomically (temp file + ``os.replace``), so a report never
embeds a half-written PNG.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import textwrap
from pathlib import Path
from typing import Any, Sequence

from moola.io_utils import atomic_write_bytes

log = logging.getLogger(__name__)

DPI = 120
TRAIN_LOSS_COLUMNS = ("train_loss_epoch", "train_loss")  # per-epoch train loss, first found wins
TRAIN_STEP_LOSS_COLUMN = "train_loss_step"  # averaged per epoch when no epoch column exists
VAL_LOSS_COLUMN = "val_loss"
VAL_F1_COLUMN = "val_macro_f1"
VAL_RATIO_COLUMN = "val_ratio"  # pretraining: masked MSE over linear interpolation's


def _figure_api():
    """(Figure, FigureCanvasAgg) or None when matplotlib is not installed (logged)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        log.warning("plots skipped: matplotlib is not installed (%s); install the 'plots' extra: "
                    "pip install 'moola[plots]'", exc)
        return None
    return Figure, FigureCanvasAgg


def _save_atomic(fig: Any, canvas_cls: Any, out_png: str | Path) -> Path:
    """Render `fig` to PNG next to `out_png`, then rename it into place."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas_cls(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(out, buf.getvalue(), fsync=False)
    return out


def _wrap(title: str, fig_width_in: float) -> str:
    """`title` broken into lines that fit the figure: a long gate and model name was cut off
    at both edges of a confusion matrix (about 8 characters of a 12 pt title per inch)."""
    return textwrap.fill(title, max(20, int(8 * fig_width_in)), break_long_words=False)


def _float(cell: str | None) -> float | None:
    if cell is None or not cell.strip():
        return None
    try:
        v = float(cell)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def read_epoch_curves(metrics_csv_path: str | Path) -> dict[str, dict[int, float]]:
    """Per-epoch series from a Lightning CSVLogger ``metrics.csv`` (blank = not logged).

    Returns {"train_loss": {epoch: v}, "val_loss": {...}, "val_macro_f1": {...},
    "val_ratio": {...}}, each holding only the epochs where it was logged. For a per-epoch column the last value logged in an epoch
    wins; the step loss is averaged per epoch when no epoch-level train loss was logged.
    """
    with open(metrics_csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cols = set(rows[0]) if rows else set()
    last: dict[str, dict[int, float]] = {"train_loss": {}, "val_loss": {}, "val_macro_f1": {},
                                         "val_ratio": {}}
    step_sums: dict[int, list[float]] = {}
    train_col = next((c for c in TRAIN_LOSS_COLUMNS if c in cols), None)
    for row in rows:
        ep = _float(row.get("epoch"))
        if ep is None:
            continue
        ep = int(ep)
        for key, col in (("train_loss", train_col), ("val_loss", VAL_LOSS_COLUMN),
                         ("val_macro_f1", VAL_F1_COLUMN), ("val_ratio", VAL_RATIO_COLUMN)):
            v = _float(row.get(col)) if col else None
            if v is not None:
                last[key][ep] = v
        v = _float(row.get(TRAIN_STEP_LOSS_COLUMN))
        if v is not None:
            step_sums.setdefault(ep, []).append(v)
    if not last["train_loss"] and step_sums:
        last["train_loss"] = {ep: sum(vs) / len(vs) for ep, vs in step_sums.items()}
    return last


def plot_learning_curves(metrics_csv_path: str | Path, out_png: str | Path,
                         title: str | None = None) -> Path | None:
    """Loss (train vs val) and validation macro-F1 per epoch -> `out_png`.

    Returns the PNG path, or None (logged) when matplotlib is missing, the CSV is missing, or it
    holds nothing to plot.
    """
    api = _figure_api()
    if api is None:
        return None
    Figure, Canvas = api
    try:
        curves = read_epoch_curves(metrics_csv_path)
    except FileNotFoundError:
        log.warning("learning curves skipped: %s does not exist", metrics_csv_path)
        return None
    has_loss = bool(curves["train_loss"] or curves["val_loss"])
    has_f1 = bool(curves["val_macro_f1"])
    if not (has_loss or has_f1):
        log.warning("learning curves skipped: %s has no train_loss/val_loss/val_macro_f1 values",
                    metrics_csv_path)
        return None

    panels = int(has_loss) + int(has_f1)
    fig = Figure(figsize=(5.2 * panels, 3.8))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    i = 0
    if has_loss:
        ax = axes[i]
        i += 1
        for key, label, style in (("train_loss", "train", "o-"), ("val_loss", "validation", "s-")):
            series = curves[key]
            if series:
                eps = sorted(series)
                ax.plot(eps, [series[e] for e in eps], style, ms=3.5, lw=1.5, label=label)
        ax.set_title("Loss per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend()
    if has_f1:
        ax = axes[i]
        series = curves["val_macro_f1"]
        eps = sorted(series)
        vals = [series[e] for e in eps]
        ax.plot(eps, vals, "o-", ms=3.5, lw=1.5, color="tab:green", label="validation macro-F1")
        best = max(range(len(vals)), key=vals.__getitem__)
        ax.plot([eps[best]], [vals[best]], "*", ms=12, color="tab:red",
                label=f"best {vals[best]:.3f} (epoch {eps[best]})")
        ax.set_ylim(0.0, 1.0)
        ax.set_title("Validation macro-F1 per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel("macro-F1")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    if title:
        fig.suptitle(_wrap(title, fig.get_figwidth()))
    fig.tight_layout()
    return _save_atomic(fig, Canvas, out_png)


def plot_confusion_matrix(cm: Any, class_names: Sequence[str], out_png: str | Path,
                          title: str = "Confusion matrix") -> Path | None:
    """Confusion matrix `cm` (K, K) (rows: true class, columns: predicted) -> `out_png`.

    Cells show the count and the share of the true class; the colour is that row-normalised
    share, so a small class's errors are as visible as a large one's. Returns the PNG path, or
    None (logged) when matplotlib is missing. A non-square `cm` or a class-name count that does
    not match raises ValueError.
    """
    import numpy as np

    m = np.asarray(cm, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {m.shape}")
    k = m.shape[0]
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for a {k}x{k} confusion matrix")
    api = _figure_api()
    if api is None:
        return None
    Figure, Canvas = api
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)

    side = max(3.8, 1.1 * k + 2.2)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("share of the true class (row-normalised)")
    for i in range(k):
        for j in range(k):
            count = int(m[i, j]) if float(m[i, j]).is_integer() else m[i, j]
            pct = f"{100 * share[i, j]:.0f}%" if rows[i, 0] > 0 else "no true samples"
            ax.text(j, i, f"{count}\n{pct}", ha="center", va="center",
                    fontsize=10, color="white" if share[i, j] > 0.6 else "black")
    names = [str(c) for c in class_names]
    ax.set_xticks(range(k), labels=names, rotation=30 if max(map(len, names), default=0) > 8 else 0,
                  ha="right" if max(map(len, names), default=0) > 8 else "center")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(_wrap(f"{title}  (n={int(m.sum())})", fig.get_figwidth()))
    fig.tight_layout()
    return _save_atomic(fig, Canvas, out_png)
