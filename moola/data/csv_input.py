"""Reading the two CSV files of `moola data from-csv`: bars and labels.

Bars (BARS.csv): one row per bar, oldest first. Columns open, high, low, close (any case), an
optional time column (`timestamp`, `time`, `datetime` or `date`, or `--time-column`), and any
other numeric columns as extra features (or exactly the ones `--features` names).

Labels (LABELS.csv): a `label` per window, keyed by `start_time` (the timestamp of the window's
first bar) or `start_index` (its 0-based data row), optionally with `expansion_start` /
`expansion_end` (where inside the window the labeled pattern lies: a bar offset 0..window-1, or
a bar's timestamp).

Times are read exactly as written (`moola.data.csv_times`): ISO 8601, or the one format that
`--date-format` names for a non-ISO column; an ambiguous day/month column is an error, never a
guess. Each bar keeps its time cell as written: window ids are that text.

Every cell is read as text and parsed here, so a problem names the file, the line as an editor
shows it (the header is line 1), the column, the value and the fix; all problems are collected
before anything is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moola.data.convert import InputProblems
from moola.data.csv_times import DAY_MONTH, ISO_HINT, MISSING, TimeColumn, read_times  # noqa: F401
from moola.data.schema import OHLC

TIME_COLUMNS = ("timestamp", "time", "datetime", "date")  # recognised without --time-column
LABEL_KEYS = ("start_time", "start_index")
LABEL_COLUMNS = ("label", *LABEL_KEYS, "expansion_start", "expansion_end")


@dataclass
class Bars:
    """The bars of BARS.csv: values (N, F) float64, feature names, times (N,) or None, the time
    column's cells as written (window ids use them) and the format they were read with."""

    path: Path
    values: np.ndarray
    names: list[str]
    times: pd.DatetimeIndex | None
    time_column: str | None
    texts: list[str] | None = None
    time_format: str | None = None

    def bar_name(self, row: int) -> str:
        """A bar as the file writes it: its time cell, or `bar-<row>` without a time column."""
        if self.texts is not None:
            return self.texts[row]
        return f"bar-{row:0{len(str(len(self.values) - 1))}d}"


@dataclass
class Labels:
    """Labeled windows in time order: starts (k,) bar positions, labels, expansion offsets."""

    starts: np.ndarray
    labels: list[str]
    expansion: dict[str, np.ndarray]  # name -> (k,) float (nan = not given)
    key: str


def _line(row: int) -> str:
    """A data row as a person finds it in an editor: the header is line 1."""
    return f"line {row + 2}"


def _open_table(path: str | Path, problems: InputProblems | None):
    """A CSV read for checking: (path, whether the problems are ours to raise, the problems,
    the frame, its columns by casefolded name, the columns as written). Unreadable: raises."""
    path = Path(path)
    own = problems is None
    problems = InputProblems(str(path)) if own else problems
    df = _read_csv(path, problems)
    if df is None:
        problems.raise_if_any()
    return path, own, problems, df, _columns_by_name(df, path, problems), \
        ", ".join(map(repr, df.columns))


def _read_csv(path: Path, problems: InputProblems) -> pd.DataFrame | None:
    """Every cell as a string (parsed later, so a bad cell can be named); None when unreadable."""
    if not path.is_file():
        problems.add(f"{path}: file not found; pass the path of an existing CSV file")
        return None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        problems.add(f"{path}: the file is empty; write a header line and one row per bar")
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        problems.add(f"{path}: cannot be read as CSV ({first}); write one comma-separated header "
                     f"line and the same number of fields on every line")
        return None
    if df.empty:
        problems.add(f"{path}: has a header but no rows; add the data")
        return None
    return df


def _columns_by_name(df: pd.DataFrame, path: Path, problems: InputProblems) -> dict[str, str]:
    """casefolded name -> the column as written; two spellings of one name are a problem."""
    by_name: dict[str, str] = {}
    for col in df.columns:
        key = str(col).strip().casefold()
        if key in by_name:
            problems.add(f"{path}: columns {by_name[key]!r} and {col!r} differ only by case or "
                         f"spaces; rename or drop one of them")
        by_name[key] = col
    return by_name


def _numbers(df: pd.DataFrame, col: str, path: Path, problems: InputProblems) -> np.ndarray:
    """One column as float64; every missing, non-numeric or infinite cell is a problem."""
    raw = df[col].astype(str).str.strip()
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    for i in np.flatnonzero(~np.isfinite(values)):
        cell = raw.iat[i]
        if cell.casefold() in MISSING:
            problems.add(f"{path}: {_line(i)}, column {col!r}: missing value; fill it (e.g. with the "
                         f"previous bar's value) or drop the row", kind=f"{path}, column {col!r}: missing values")
        elif np.isnan(values[i]):
            problems.add(f"{path}: {_line(i)}, column {col!r}: {cell!r} is not a number; write plain "
                         f"numbers (e.g. 1234.5, no thousands separators) or drop the row",
                         kind=f"{path}, column {col!r}: non-numeric values")
        else:
            problems.add(f"{path}: {_line(i)}, column {col!r}: {cell!r} is not finite; write a "
                         f"finite number or drop the row", kind=f"{path}, column {col!r}: non-finite values")
    return values


def _times(df: pd.DataFrame, col: str, path: Path, problems: InputProblems,
           date_format: str | None = None) -> TimeColumn | None:
    """One column as timestamps (ns), read as ISO 8601 or with `date_format` (`csv_times`);
    None when any cell is unreadable (each is a problem)."""
    tc = read_times(df[col], path, col, problems, date_format)
    if tc is None or tc.times.isna().any():
        return None
    tc.times = tc.times.as_unit("ns")
    return tc


def read_bars(path: str | Path, *, time_column: str | None = None, features: list[str] | None = None,
              problems: InputProblems | None = None, date_format: str | None = None) -> Bars:
    """Read BARS.csv (see the module docstring); every problem names the line or column and the fix.
    A non-ISO time column is read with `date_format` (pandas strftime codes), never guessed."""
    path, own, problems, df, cols, found = _open_table(path, problems)
    # the time column: named, or the one recognisable name present
    tcol = None
    if time_column is not None:
        tcol = cols.get(time_column.strip().casefold())
        if tcol is None:
            problems.add(f"{path}: --time-column {time_column!r} is not a column; columns found: {found}")
    else:
        candidates = [cols[c] for c in TIME_COLUMNS if c in cols]
        if len(candidates) > 1:
            problems.add(f"{path}: columns {', '.join(map(repr, candidates))} all look like the time; "
                         f"combine them into one timestamp column or name it with --time-column")
        elif candidates:
            tcol = candidates[0]
    # feature columns: OHLC first (the layout moola's OHLC checks expect), then the extras
    missing = [c for c in OHLC if c not in cols]
    if missing:
        problems.add(f"{path}: missing column{'s' if len(missing) > 1 else ''} "
                     f"{', '.join(map(repr, missing))} (any case); columns found: {found}; "
                     f"rename the column{'s that hold them' if len(missing) > 1 else ' that holds it'}")
    if features is None:
        extras = [cols[c] for c in cols if c not in OHLC and cols[c] != tcol]
    else:
        wanted = [f.strip().casefold() for f in features if f.strip()]
        unknown = [f for f in wanted if f not in cols]
        if unknown:
            problems.add(f"{path}: --features names {', '.join(map(repr, unknown))}, not columns of "
                         f"the file; columns found: {found}")
        extras = [cols[f] for f in wanted if f in cols and f not in OHLC and cols[f] != tcol]
    if features is None:  # a text column (a symbol, a note) was not meant as a feature
        for c in [c for c in extras if pd.to_numeric(df[c], errors="coerce").isna().all()]:
            problems.add(f"{path}: column {c!r} holds no numbers (e.g. {df[c].iat[0]!r} on line 2), but "
                         f"every column other than the time is read as a feature; drop it from the file "
                         f"or choose the features with --features open,high,low,close[,...]")
    problems.raise_if_any()
    names = [cols[c] for c in OHLC] + extras
    values = np.stack([_numbers(df, c, path, problems) for c in names], axis=1)
    tc = _times(df, tcol, path, problems, date_format) if tcol is not None else None
    times = tc.times if tc is not None else None
    if times is not None:
        step = np.diff(times.asi8)
        bad = np.flatnonzero(step <= 0)
        for i in bad:
            what = "repeats the previous bar's" if step[i] == 0 else "is earlier than the previous bar's"
            problems.add(f"{path}: {_line(int(i) + 1)}, column {tcol!r}: {tc.as_read(i + 1)} {what} "
                         f"({tc.as_read(i)}); bars must be in time order, oldest first, one per timestamp: "
                         f"sort the file by time and drop duplicate bars",
                         kind=f"{path}, column {tcol!r}: out of order")
    if own:
        problems.raise_if_any()
    return Bars(path, values, [str(n).strip().casefold() for n in names], times, tcol,
                tc.texts if tc is not None else None, tc.format if tc is not None else None)


def _offsets(raw: pd.Series, col: str, starts: np.ndarray, bars: Bars, path: Path,
             problems: InputProblems, date_format: str | None = None) -> np.ndarray:
    """expansion_start/end cells -> bar offsets in their window (nan = empty cell).

    A cell is an integer offset, or (with a time column) a bar's timestamp, turned into its
    offset from the window's first bar. The timestamps of the column are read together, with one
    format (ISO 8601 or `date_format`, `csv_times`), like every time column.
    """
    out = np.full(len(raw), np.nan)
    rows = []  # cells that are not offsets: timestamps, or wrong
    for i, cell in enumerate(raw):
        if cell.casefold() in MISSING:
            continue
        try:  # "12", or "12.0" as pandas writes an integer column with empty cells
            number = float(cell)
        except ValueError:
            number = None
        if number is not None and number.is_integer():
            out[i] = number
        elif starts[i] >= 0:  # else the label's own key is wrong, and already reported
            rows.append(i)
    if not rows:
        return out
    cells = raw.iloc[rows].set_axis(rows)
    at = np.full(len(rows), -1)
    looks_like_times = date_format is not None or cells.str.match(DAY_MONTH.pattern).any() or \
        pd.to_datetime(cells, format="ISO8601", errors="coerce").notna().any()
    if bars.times is not None and looks_like_times:
        tc = read_times(cells, path, col, problems, date_format, report_cells=False)
        if tc is None:  # the column's format is the problem, and it is reported
            return out
        t = tc.times
        if (t.tz is None) == (bars.times.tz is None):
            at = bars.times.get_indexer(t.tz_convert(bars.times.tz) if t.tz is not None else t)
    how = "" if bars.times is None or not looks_like_times else \
        f" (read as {tc.format})"
    for j, i in enumerate(rows):
        if at[j] < 0:
            problems.add(f"{path}: {_line(i)}, column {col!r}: {raw.iat[i]!r} is neither a bar offset in the "
                         f"window (an integer 0..window-1) nor the timestamp of a bar in {bars.path.name}"
                         f"{how}; write the offset, or leave the cell empty",
                         kind=f"{path}, column {col!r}: unreadable")
        else:
            out[i] = at[j] - starts[i]
    return out


def check_label_times(path: str | Path, date_format: str | None, problems: InputProblems) -> None:
    """The format problems of LABELS.csv's start_time alone: when the bars cannot be read, the
    labels' ambiguous or mismatched dates are named in the same run."""
    path = Path(path)
    if not path.is_file():
        return
    df = _read_csv(path, InputProblems(str(path)))  # its other problems come with read_labels
    names = df.columns if df is not None else []
    col = next((c for c in names if str(c).strip().casefold() == "start_time"), None)
    if col is not None:
        read_times(df[col], path, col, problems, date_format)


def read_labels(path: str | Path, bars: Bars, window: int, problems: InputProblems | None = None,
                date_format: str | None = None) -> Labels:
    """Read LABELS.csv and place each label on the window it names (see the module docstring).
    Times are matched as read: ISO 8601, or `date_format` for a non-ISO column (`csv_times`)."""
    path, own, problems, df, cols, found = _open_table(path, problems)
    unknown = [cols[c] for c in cols if c not in LABEL_COLUMNS]
    for c in unknown:
        problems.add(f"{path}: unknown column {c!r}; allowed: {', '.join(LABEL_COLUMNS)} - remove or "
                     f"rename it ('label' plus one key: start_time, a bar's timestamp, or start_index, "
                     f"a bar's 0-based data row)")
    keys = [k for k in LABEL_KEYS if k in cols]
    if "label" not in cols:
        problems.add(f"{path}: missing column 'label'; columns found: {found}")
    if len(keys) != 1:
        problems.add(f"{path}: {'has both' if keys else 'needs one of'} columns 'start_time' and "
                     f"'start_index'; columns found: {found}; key each label by one of them: "
                     f"start_time = the timestamp of the window's first bar, start_index = its 0-based data row")
    elif keys[0] == "start_time" and bars.times is None:
        problems.add(f"{path}: labels are keyed by 'start_time' but {bars.path} has no time column "
                     f"({', '.join(TIME_COLUMNS)}, or name it with --time-column); key them by "
                     f"'start_index' instead")
    problems.raise_if_any()
    key = keys[0]
    n_bars = len(bars.values)
    labels = df[cols["label"]].astype(str).str.strip()
    for i in np.flatnonzero(labels.str.casefold().isin(MISSING).to_numpy()):
        problems.add(f"{path}: {_line(i)}, column 'label': no label; write the class, or drop the row",
                     kind=f"{path}, column 'label': empty")
    raw_key = df[cols[key]].astype(str).str.strip()
    if key == "start_index":
        idx = pd.to_numeric(raw_key, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(idx) & (idx == np.round(idx))
        for i in np.flatnonzero(~ok):
            problems.add(f"{path}: {_line(i)}, column 'start_index': {raw_key.iat[i]!r} is not a "
                         f"whole number; write the 0-based data row of the window's first bar",
                         kind=f"{path}, column 'start_index': not whole numbers")
        starts = np.where(ok, idx, -1).astype(np.int64)
    else:
        tc = _times(df, cols[key], path, problems, date_format)
        t = tc.times if tc is not None else None
        starts = np.full(len(df), -1, np.int64)
        if t is not None and (t.tz is None) != (bars.times.tz is None):
            problems.add(f"{path}: column 'start_time' is {'without' if t.tz is None else 'with'} a UTC "
                         f"offset but {bars.path.name}'s {bars.time_column!r} is "
                         f"{'without' if bars.times.tz is None else 'with'}; write both the same way")
        elif t is not None:
            starts = bars.times.get_indexer(t.tz_convert(bars.times.tz) if t.tz is not None else t)
            for i in np.flatnonzero(starts < 0):
                problems.add(f"{path}: {_line(i)}, column 'start_time': {tc.as_read(i)} is not the time "
                             f"of any bar in {bars.path.name} (bars run from {bars.texts[0]!r} to "
                             f"{bars.texts[-1]!r}); use a bar's exact timestamp or drop the label",
                             kind=f"{path}, column 'start_time': matching no bar")
        ok = starts >= 0

    def where(i: int) -> str:
        """How a message names the window of label row i."""
        return f"start_index {starts[i]}" if key == "start_index" else f"start_time {bars.texts[starts[i]]}"

    # a label names a window only if the whole window lies in the file
    outside = ok & ((starts < 0) | (starts + window > n_bars))
    for i in np.flatnonzero(outside):
        problems.add(f"{path}: {_line(i)}: the window at {where(i)} needs {window} bars from there, but "
                     f"{bars.path.name} has {n_bars} bars (data rows 0..{n_bars - 1}), so windows start at "
                     f"rows 0..{n_bars - window}; drop the label or use a shorter --window",
                     kind=f"{path}: labels matching no window")
    ok &= ~outside
    first: dict[int, int] = {}
    for i in np.flatnonzero(ok):
        s = int(starts[i])
        if s in first:
            problems.add(f"{path}: {_line(i)} labels the same window as {_line(first[s])} ({where(i)}); "
                         f"keep one label per window", kind=f"{path}: duplicate windows")
        else:
            first[s] = int(i)
    expansion = {c: _offsets(df[cols[c]].astype(str).str.strip(), c, np.where(ok, starts, -1), bars, path,
                             problems, date_format)
                 for c in ("expansion_start", "expansion_end") if c in cols}
    if own:
        problems.raise_if_any()
    order = np.argsort(starts, kind="stable")  # labeled rows in time order
    return Labels(starts[order], [labels.iat[i] for i in order],
                  {c: v[order] for c, v in expansion.items()}, key)
