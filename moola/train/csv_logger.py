"""``metrics.csv`` in the layout of PyTorch Lightning's CSVLogger.

One row per ``log()`` call: ``epoch, step`` then every metric name seen so far, sorted; a cell
is blank where that metric was not logged in that row (step rows carry ``train_loss_step``,
epoch rows carry ``train_loss_epoch`` and ``val_*``). Rows are appended; when a row brings a
new column the whole file is rewritten atomically with the wider header, so the file is always
a valid CSV that ``pandas.read_csv`` reads.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Mapping

from moola.io_utils import atomic_write_text

__all__ = ["CSVLogger", "NullLogger", "make_logger"]

INDEX_COLUMNS = ("epoch", "step")


def _cell(value: Any) -> str:
    """A metric value as CSV text; None -> blank, bool -> 0/1, NaN stays 'nan' (it happened)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if hasattr(value, "item"):  # numpy / torch scalar
        value = value.item()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


class CSVLogger:
    """Append metric rows to `path`; existing rows are kept (see :meth:`drop_from_epoch`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, str]] = []
        self.metric_keys: list[str] = []
        if self.path.is_file():
            with self.path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                self.metric_keys = [k for k in (reader.fieldnames or []) if k not in INDEX_COLUMNS]
                self.rows = [dict(r) for r in reader]

    @property
    def header(self) -> list[str]:
        return [*INDEX_COLUMNS, *self.metric_keys]

    def log(self, metrics: Mapping[str, Any], *, epoch: int, step: int) -> None:
        """Write one row. Metric names must not be ``epoch`` or ``step``."""
        clash = set(metrics) & set(INDEX_COLUMNS)
        if clash:
            raise ValueError(f"metric names {sorted(clash)} are reserved CSV columns")
        row = {"epoch": str(int(epoch)), "step": str(int(step))}
        row.update({str(k): _cell(v) for k, v in metrics.items()})
        self.rows.append(row)
        new_keys = set(metrics) - set(self.metric_keys)
        if new_keys or not self.path.is_file():
            self.metric_keys = sorted(set(self.metric_keys) | {str(k) for k in new_keys})
            self._rewrite()
        else:
            with self.path.open("a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self.header, restval="", lineterminator="\n").writerow(row)

    def drop_from_epoch(self, epoch: int) -> None:
        """Forget rows of `epoch` and later (resume: they were logged after the checkpoint)."""
        kept = [r for r in self.rows if r.get("epoch", "") != "" and int(r["epoch"]) < epoch]
        if len(kept) != len(self.rows) or not self.path.is_file():
            self.rows = kept
            self._rewrite()

    def reset(self) -> None:
        """Start an empty log (a fresh, non-resumed run)."""
        self.rows, self.metric_keys = [], []
        self.path.unlink(missing_ok=True)

    def _rewrite(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.header, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


class NullLogger:
    """``logger = "none"``: the same interface, writes nothing."""

    path = None

    def log(self, metrics: Mapping[str, Any], *, epoch: int, step: int) -> None:
        pass

    def drop_from_epoch(self, epoch: int) -> None:
        pass

    def reset(self) -> None:
        pass


def make_logger(kind: str, path: str | os.PathLike) -> CSVLogger | NullLogger:
    """The logger for the ``run.logger`` knob (csv | none)."""
    if kind == "csv":
        return CSVLogger(path)
    if kind == "none":
        return NullLogger()
    raise ValueError(f"logger {kind!r} is unknown; allowed values: csv, none")
