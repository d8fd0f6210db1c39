"""Reading a time column of a CSV exactly as written: ISO 8601, or one format the user names.

A time column is read one way for the whole column, never cell by cell by guessing:

* **ISO 8601** (year first: `2024-01-02 09:30`, `2024-01-02T09:30:00+01:00`) is always read as
  ISO, whatever `--date-format` says, so one option serves a day-first labels file beside ISO
  bars. Without `--date-format` a column with any ISO time is read as ISO; with it, a column
  whose first time is ISO is.
* **Any other column** is read with `--date-format` (pandas' `to_datetime(format=...)`, strftime
  codes); a cell that does not match it is an error naming the format.
* **Without `--date-format`** a non-ISO column is an error, never a guess. Day/month dates
  (`02/01/2023`, `02.01.2023`) get the message that fits them: *ambiguous* when every date reads
  both day first and month first (every day <= 12: the case pandas reads month first in
  silence), *looks day-first* (or month-first) when some day is above 12, *mixed* when some rows
  read only day first and others only month first. Each names an example line and the option
  to pass.

Messages name the file, the line as an editor shows it (the header is line 1), the column, the
value and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from moola.data.convert import InputProblems

ISO = "ISO 8601"
MISSING = {"", "nan", "na", "n/a", "null", "none"}  # what a CSV writer puts for a missing value
ISO_HINT = "write times as ISO 8601, e.g. 2024-01-02 09:30:00"
# day and month as the first two fields, then the year; optionally a time
DAY_MONTH = _DM = re.compile(r"^(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})"
                 r"(?:([ T])\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$")


@dataclass
class TimeColumn:
    """A parsed time column: times (NaT where a cell failed), the format read, the text as written."""

    times: pd.DatetimeIndex
    format: str  # "ISO 8601" or the --date-format used
    texts: list[str]

    def as_read(self, i: int) -> str:
        """Cell i for a message: its text and how it was read."""
        how = "" if self.format == ISO else f' with --date-format "{self.format}"'
        return f"{self.texts[i]!r} (read as {self.times[i]}{how})"


def _line(row: int) -> str:
    """A data row as a person finds it in an editor: the header is line 1."""
    return f"line {row + 2}"


def suggest_format(cell: str, day_first: bool) -> str:
    """The strftime format of a day/month cell such as '02/01/2023 09:00' ('%d/%m/%Y %H:%M')."""
    m = _DM.match(cell)
    if m is None:
        return "%d/%m/%Y %H:%M" if day_first else "%m/%d/%Y %H:%M"
    sep, year, tsep, secs, frac = m.group(2), m.group(4), m.group(5), m.group(6), m.group(7)
    date = ("%d{0}%m{0}" if day_first else "%m{0}%d{0}").format(sep) + ("%Y" if len(year) == 4 else "%y")
    if tsep is None:
        return date
    return date + tsep + "%H:%M" + (":%S" if secs else "") + (".%f" if frac else "")


def _reading(cell: str, day_first: bool) -> str:
    """'02/01/2023 09:00' read day first -> '2023-01-02' (for messages)."""
    t = pd.to_datetime(cell, format=suggest_format(cell, day_first), errors="coerce")
    return "no date" if pd.isna(t) else t.strftime("%Y-%m-%d")


def _day_month(raw: pd.Series, path, col: str, problems: InputProblems, rows: np.ndarray) -> bool:
    """A non-ISO column without --date-format: say why it is not read (ambiguous, looks day-first
    or month-first, mixed, or not day/month dates at all). Returns True (a problem was added)."""
    empty = np.array([c.casefold() in MISSING for c in raw.tolist()], dtype=bool)
    for i in np.flatnonzero(empty):  # said as such, and left out of the day/month reading
        problems.add(f"{path}: {_line(int(rows[i]))}, column {col!r}: no time; write the time, or drop "
                     f"the row", kind=f"{path}, column {col!r}: missing times")
    raw, rows = raw[~empty], rows[~empty]
    cells = raw.tolist()
    if not cells:
        return True
    matches = [_DM.match(c) for c in cells]
    fix_iso = "or write times as ISO 8601 (year-month-day, e.g. 2024-01-02 09:30)"
    other = [i for i, m in enumerate(matches) if m is None]
    if other:
        i = other[0] if other else 0
        problems.add(
            f"{path}: column {col!r}: {cells[i]!r} ({_line(int(rows[i]))}) is not ISO 8601, and moola "
            f"reads another format only when told which, never by guessing: pass --date-format with "
            f"the file's format in strftime codes (e.g. --date-format \"%d.%m.%Y %H:%M\" for "
            f"'02.01.2023 09:30'), {fix_iso}")
        return True
    a = np.array([int(m.group(1)) for m in matches])
    b = np.array([int(m.group(3)) for m in matches])
    fits_dm = (a >= 1) & (a <= 31) & (b >= 1) & (b <= 12)
    fits_md = (b >= 1) & (b <= 31) & (a >= 1) & (a <= 12)
    dm_only, md_only = np.flatnonzero(fits_dm & ~fits_md), np.flatnonzero(fits_md & ~fits_dm)

    def ex(i: int) -> str:
        return f"{_line(int(rows[i]))}: {cells[i]!r}"

    dm, md = suggest_format(cells[0], True), suggest_format(cells[0], False)
    if len(dm_only) and len(md_only):
        problems.add(
            f"{path}: column {col!r} mixes day-first dates ({ex(dm_only[0])}) and month-first dates "
            f"({ex(md_only[0])}); write every time of the file in one format, then read it with "
            f"--date-format (e.g. \"{dm}\"), {fix_iso}")
    elif len(dm_only):
        i = dm_only[0]
        problems.add(
            f"{path}: column {col!r}: this file looks day-first ({ex(i)}: {a[i]} cannot be a month), "
            f"but moola does not guess a date format; pass "
            f"--date-format \"{suggest_format(cells[i], True)}\", {fix_iso}")
    elif len(md_only):
        i = md_only[0]
        problems.add(
            f"{path}: column {col!r}: this file looks month-first ({ex(i)}: {b[i]} cannot be a month), "
            f"but moola does not guess a date format; pass "
            f"--date-format \"{suggest_format(cells[i], False)}\", {fix_iso}")
    else:
        i = int(np.argmax(a != b))  # an example that reads differently the two ways, if any
        problems.add(
            f"{path}: column {col!r}: ambiguous dates: every one reads both day first and month first "
            f"({ex(i)} is {_reading(cells[i], True)} day first, "
            f"{_reading(cells[i], False)} month first), and moola does not guess; pass "
            f"--date-format \"{dm}\" if the day comes first or --date-format \"{md}\" if the month "
            f"does, {fix_iso}")
    for i in np.flatnonzero(~fits_dm & ~fits_md):  # 13/13/2023: neither way a date
        problems.add(f"{path}: {_line(int(rows[i]))}, column {col!r}: {cells[i]!r} is not a date read "
                     f"day first or month first; {ISO_HINT}", kind=f"{path}, column {col!r}: unreadable times")
    return True


def read_times(raw: pd.Series, path, col: str, problems: InputProblems,
               date_format: str | None = None, *, report_cells: bool = True) -> TimeColumn | None:
    """Parse one time column (stripped text cells; the Series' index = 0-based data rows).

    Returns the times (NaT where a cell is unreadable, each such cell a problem when
    `report_cells`), or None when the column cannot be read at all (a problem says why).
    """
    raw = raw.astype(str).str.strip()
    rows = raw.index.to_numpy()
    texts = raw.tolist()
    if not len(raw):
        return TimeColumn(pd.DatetimeIndex([]), ISO, texts)
    try:
        iso = pd.to_datetime(raw, format="ISO8601", errors="coerce")
    except ValueError as exc:  # e.g. offsets +01:00 and +02:00 in one column
        problems.add(f"{path}: column {col!r} cannot be read as times ({str(exc).splitlines()[0]}); "
                     f"write every time with the same UTC offset, or all without one")
        return None
    is_iso = iso.notna().to_numpy()
    use_iso = bool(is_iso[0]) if date_format is not None else bool(is_iso.any())
    if use_iso:
        t, fmt = iso, ISO
    elif date_format is None:
        _day_month(raw, path, col, problems, rows)
        return None
    else:
        fmt = date_format
        try:
            t = pd.to_datetime(raw, format=date_format, errors="coerce")
        except ValueError as exc:  # a format pandas cannot use, or mixed offsets
            problems.add(f"{path}: column {col!r} cannot be read with --date-format \"{date_format}\" "
                         f"({str(exc).splitlines()[0]}); pass the format the file is written in, in "
                         f"strftime codes (e.g. \"%d/%m/%Y %H:%M\" for 02/01/2023 09:30), with the "
                         f"same UTC offset on every time")
            return None
    ok = t.notna().to_numpy()
    if fmt != ISO and not ok.any():  # not one row: the format is wrong, not the rows
        guess = (f" (for {texts[0]!r}: \"{suggest_format(texts[0], True)}\" if the day comes first, "
                 f"\"{suggest_format(texts[0], False)}\" if the month does)") if _DM.match(texts[0]) else ""
        problems.add(f"{path}: column {col!r}: no time matches --date-format \"{fmt}\" "
                     f"({_line(int(rows[0]))}: {texts[0]!r}); pass the format the file is written in, "
                     f"in strftime codes{guess}, or write times as ISO 8601")
        return None
    if report_cells:
        good = f"e.g. {_line(int(rows[np.argmax(ok)]))}: {texts[int(np.argmax(ok))]!r}" if ok.any() else None
        for i in np.flatnonzero(~ok):
            cell, where = texts[i], f"{path}: {_line(int(rows[i]))}, column {col!r}"
            if fmt != ISO:
                problems.add(f"{where}: {cell!r} does not match --date-format \"{fmt}\""
                             f"{f' ({good} does)' if good else ''}; write it in that format, or pass "
                             f"the format the file is written in",
                             kind=f"{path}, column {col!r}: not matching --date-format")
            elif _DM.match(cell):
                problems.add(f"{where}: {cell!r} is not a time in ISO 8601, the format of the column's "
                             f"other times ({good}); write every time of the file in one format, "
                             f"ISO 8601 (year-month-day)", kind=f"{path}, column {col!r}: mixed formats")
            else:
                problems.add(f"{where}: {cell!r} is not a time; {ISO_HINT}",
                             kind=f"{path}, column {col!r}: unreadable times")
    return TimeColumn(pd.DatetimeIndex(t), fmt, texts)
