"""`moola predict`: an exported model's probabilities for every window of a dataset or a CSV.

Input (``--data``):

* a dataset directory (one `moola data validate` accepts): every labeled window, then every
  unlabeled one. The output says each window's role (train / val / test / labeled for rows in
  no role / unlabeled) and its label: train and val rows are the ones the model was refitted
  on, so only test rows and unlabeled windows are predictions about unseen data.
* a CSV of bars (the layout `moola data from-csv` reads): every window of the model's
  ``window_length`` consecutive bars, starting every ``--stride`` bars (default 1), named like
  `from-csv` names them (the first bar's time cell as written, or ``bar-<row>``). A non-ISO
  time column is read with ``--date-format``, never guessed (`moola.data.csv_times`).

The windows are normalised as in training (the card's ``normalization``). Output: CSV with
``window_id``; ``first_bar`` and ``last_bar``: the window's first and last bar, as the bars file
writes their times (a dataset directory: their 0-based rows in the bars file `from-csv` read,
empty for a dataset made otherwise); the input's own columns; one probability column per class
name; ``predicted``; and ``model_name`` / ``model_run_id`` from the card. A prediction is known
at the close of ``last_bar``: join it to prices from the bar after, never before.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moola.data.schema import OHLC, DataError

ROLES = ("train", "val", "test")
MODEL_COLUMNS = ("model_name", "model_run_id")


def windows_from_dataset(path: Path, card: dict[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    """(columns window_id, role, label; raw windows (n, T, F)) of a dataset directory."""
    from moola.data.schema import DataValidationError, default_feature_names
    from moola.data.validate import inspect_dataset
    from moola.export.bundle import check_windows

    report, p = inspect_dataset(path)
    if not report.ok:
        raise DataValidationError([*report.problems, f"{path}: moola predict reads a dataset "
                                   f"directory that `moola data validate` accepts, or a CSV of "
                                   f"bars"])
    names = p.meta.get("feature_names") or default_feature_names(p.X.shape[2])
    check_windows(p.X, card, str(p.labeled_path))
    if [str(n).casefold() for n in names] != [str(n).casefold() for n in card["feature_names"]]:
        raise DataError(
            f"{path / 'meta.json'}: the windows' features are {', '.join(map(str, names))}; the "
            f"model was trained on {', '.join(card['feature_names'])}, in that order; convert "
            f"the data with the same feature columns")
    role = np.full(len(p.window_ids), "labeled", dtype=object)  # rows in no role of the split
    for r in ROLES:
        role[p.split[r]] = r
    n_u = len(p.unlabeled_ids)
    first, last = _dataset_bars(p.meta, len(p.window_ids), n_u, int(p.X.shape[1]))
    frame = pd.DataFrame({
        "window_id": list(p.window_ids) + list(p.unlabeled_ids),
        "first_bar": first,
        "last_bar": last,
        "role": list(role) + ["unlabeled"] * n_u,
        "label": list(p.labels) + [""] * n_u,
    })
    return frame, np.concatenate([p.X, p.X_unlabeled])


def _dataset_bars(meta: dict[str, Any], n_labeled: int, n_unlabeled: int,
                  T: int) -> tuple[pd.Series, pd.Series]:
    """first_bar / last_bar of a dataset's windows: their 0-based rows in the bars file that
    `from-csv` recorded in meta.json (`csv.start_rows`); empty for a dataset made otherwise
    (from-numpy, synth, ucr: its windows have no bars file)."""
    rows = (meta.get("csv") or {}).get("start_rows") or {}
    lab, unl = rows.get("labeled"), rows.get("unlabeled")
    n = n_labeled + n_unlabeled
    if not (isinstance(lab, list) and isinstance(unl, list) and len(lab) == n_labeled
            and len(unl) == n_unlabeled):
        empty = pd.Series([pd.NA] * n, dtype="Int64")
        return empty, empty
    start = pd.Series(lab + unl, dtype="Int64")
    return start, start + (T - 1)


def windows_from_csv(path: Path, card: dict[str, Any], stride: int = 1,
                     time_column: str | None = None,
                     date_format: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """(columns window_id, first_bar, last_bar, start_index; raw windows (n, T, F)) of a CSV of
    bars; the bars are named by their time cells as written (`bar-<row>` without a time column)."""
    from moola.data.convert import InputProblems
    from moola.data.csv_input import read_bars
    from moola.data.from_csv import cut_windows, window_ids

    names, T = list(card["feature_names"]), int(card["window_length"])
    if names[:4] != OHLC:
        raise DataError(
            f"{path}: a CSV of bars gives open, high, low, close (and extra columns), but the "
            f"model was trained on {', '.join(names)}; pass a dataset directory of such windows")
    if stride < 1:
        raise DataError(f"--stride {stride}: windows need a stride of at least 1 bar")
    try:
        header = [str(c).strip().casefold() for c in pd.read_csv(path, nrows=0).columns]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        header = None  # read_bars says what is wrong with the file
    missing = [n for n in names if header is not None and n not in header]
    if missing:
        raise DataError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))} (any case); the model was trained on "
            f"{', '.join(names)} (card.json feature_names); columns found: {', '.join(header)}")
    problems = InputProblems(str(path), action="read")
    # the model's extra features, in its order (read_bars puts open, high, low, close first)
    bars = read_bars(path, time_column=time_column, features=names[4:], problems=problems,
                     date_format=date_format)
    problems.raise_if_any()
    n = len(bars.values)
    if n < T:
        raise DataError(
            f"{path}: {n} bars, fewer than one window of {T} bars (the model's window_length, "
            f"card.json); pass at least {T} bars")
    starts = np.arange(0, n - T + 1, stride)
    frame = pd.DataFrame({"window_id": window_ids(starts, bars),
                          "first_bar": window_ids(starts, bars),
                          "last_bar": window_ids(starts + T - 1, bars),  # the prediction is known here
                          "start_index": starts})
    return frame, cut_windows(bars.values, starts, T)


def predict(model_dir: str | Path, data: str | Path, *, stride: int = 1,
            time_column: str | None = None, date_format: str | None = None) -> pd.DataFrame:
    """One row per window of `data` (a dataset directory or a CSV of bars): its id, first and
    last bar, its columns, one probability per class, the predicted class, and the model's
    name and run id (its version) from the card."""
    from moola.export.bundle import load_model

    data = Path(data)
    model = load_model(model_dir)
    if data.is_dir():
        frame, X = windows_from_dataset(data, model.card)
    elif data.is_file():
        frame, X = windows_from_csv(data, model.card, stride, time_column, date_format)
    else:
        raise DataError(f"{data}: not found; pass a dataset directory or a CSV of bars")
    proba = model.predict_proba(X)
    classes = model.classes
    # a class named like a fixed column would make two columns of one name
    fixed = {*frame.columns, "predicted", *MODEL_COLUMNS}
    cols = classes if not set(classes) & fixed else [f"proba_{c}" for c in classes]
    for c, p in zip(cols, proba.T):
        frame[c] = p
    frame["predicted"] = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    frame["model_name"] = model.card.get("name", Path(model_dir).name)
    frame["model_run_id"] = model.card.get("run_id", "")
    return frame


def _summary(frame: pd.DataFrame, data: str | Path, model_dir: str | Path) -> str:
    """'N windows of DATA predicted with MODEL: class n, ...'."""
    counts = frame["predicted"].value_counts().sort_index()
    return (f"{len(frame)} windows of {data} predicted with {model_dir}: "
            + ", ".join(f"{c} {n}" for c, n in counts.items()))


def run_predict(model_dir: str | Path, data: str | Path, *, out: str | Path | None = None,
                stride: int = 1, time_column: str | None = None,
                date_format: str | None = None) -> int:
    """`moola predict`: the CSV to `out` (written atomically), or to standard output when that is
    a pipe or a file; at a terminal, only a summary and a request for --out (thousands of rows
    scrolling past help nobody). Returns the exit code."""
    from moola.io_utils import atomic_write_text

    frame = predict(model_dir, data, stride=stride, time_column=time_column, date_format=date_format)
    summary = _summary(frame, data, model_dir)
    if out:
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        atomic_write_text(out, buf.getvalue())
        print(f"{summary}; written to {out}")
    elif sys.stdout.isatty():
        print(f"{summary}.\nNot printed: {len(frame)} rows of {', '.join(map(str, frame.columns))} "
              f"would scroll past. Pass --out FILE (e.g. --out predictions.csv) to write them, or "
              f"pipe them (moola predict ... | head).")
    else:
        try:
            frame.to_csv(sys.stdout, index=False)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head` closed the pipe: what it wanted was written
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(summary, file=sys.stderr)
    return 0
