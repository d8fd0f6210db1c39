"""`moola data from-csv`: real CSV files in, a dataset that `load_dataset` reads back out.

Bad input is fed as real files; each rejection names the file, the line or column and the fix,
and leaves nothing behind (no output directory, no temporary directory next to it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moola.cli import main
from moola.data import load_dataset
from moola.data.splits import temporal_split

ROOT = Path(__file__).resolve().parents[2]
N_BARS, WINDOW = 400, 20


def bars_frame(n: int = N_BARS, seed: int = 0) -> pd.DataFrame:
    """A random walk of 5-minute OHLC bars near 100."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[100.0, close[:-1]]
    return pd.DataFrame({
        "timestamp": pd.date_range("2024-01-01 09:00", periods=n, freq="5min").strftime("%Y-%m-%d %H:%M"),
        "open": open_.round(3), "high": (np.maximum(open_, close) + 0.05).round(3),
        "low": (np.minimum(open_, close) - 0.05).round(3), "close": close.round(3),
    })


def label_frame(bars: pd.DataFrame, starts, key: str = "start_time") -> pd.DataFrame:
    """Alternating labels a/b at the given bar rows, keyed by time or row."""
    starts = list(starts)
    keys = bars["timestamp"].iloc[starts].tolist() if key == "start_time" else starts
    return pd.DataFrame({key: keys, "label": ["a" if k % 2 else "b" for k in range(len(starts))]})


@pytest.fixture
def files(tmp_path: Path):
    """(bars.csv, labels.csv, bars frame): 20 labeled windows tiling the first 400 bars."""
    bars = bars_frame()
    b, lab = tmp_path / "bars.csv", tmp_path / "labels.csv"
    bars.to_csv(b, index=False)
    labels = label_frame(bars, range(0, N_BARS - WINDOW + 1, WINDOW))
    labels["expansion_start"] = np.arange(len(labels)) % 5
    labels["expansion_end"] = labels["expansion_start"] + 10
    labels.to_csv(lab, index=False)
    return b, lab, bars


def convert(b: Path, lab: Path, out: Path, *extra: str) -> int:
    return main(["data", "from-csv", str(b), "--labels", str(lab), "--out", str(out),
                 "--window", str(WINDOW), "--stride", "5", *extra])


# -- round trip --------------------------------------------------------------------------------


def test_round_trip_keyed_by_start_time(files, tmp_path, capsys):
    b, lab, bars = files
    assert convert(b, lab, tmp_path / "ds") == 0
    assert "OK" in capsys.readouterr().out
    ds = load_dataset(tmp_path / "ds", normalization="none")
    starts = np.arange(0, N_BARS - WINDOW + 1, WINDOW)
    prices = bars[["open", "high", "low", "close"]].to_numpy()
    np.testing.assert_allclose(ds.X_raw, prices[starts[:, None] + np.arange(WINDOW)], rtol=1e-6)
    assert ds.feature_names == ["open", "high", "low", "close"]
    assert ds.window_ids[:2] == ["2024-01-01 09:00", "2024-01-01 10:40"]  # the bars' text, as written
    assert ds.labels == ["b", "a"] * 10
    np.testing.assert_array_equal(ds.expansion_start, np.arange(20) % 5)
    np.testing.assert_array_equal(ds.expansion_end, np.arange(20) % 5 + 10)
    # last 20% val; windows tile the bars, so nothing is purged at purge 0
    assert ds.train_idx.tolist() == list(range(16)) and ds.val_idx.tolist() == [16, 17, 18, 19]
    assert len(ds.test_idx) == 0
    # unlabeled: every 5th window start, except the labeled starts
    grid = [s for s in range(0, N_BARS - WINDOW + 1, 5) if s % WINDOW]
    assert len(ds.X_unlabeled) == len(grid)
    assert ds.unlabeled_ids[0] == bars.timestamp.iloc[5] == "2024-01-01 09:25"
    np.testing.assert_allclose(ds.X_unlabeled[0], prices[5:5 + WINDOW], rtol=1e-6)
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["csv"]["window"] == WINDOW and meta["csv"]["label_key"] == "start_time"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.csv", "ds", "labels.csv"]  # no temp dirs


def test_start_index_any_case_columns_and_extra_features(tmp_path):
    bars = bars_frame().drop(columns="timestamp")
    bars["volume"] = np.arange(N_BARS) % 7 + 95.0
    bars.columns = ["Open", "HIGH", "low", "Close", "Volume"]
    b, lab = tmp_path / "bars.csv", tmp_path / "labels.csv"
    bars.to_csv(b, index=False)
    label_frame(bars, [300, 0, 100, 40, 200, 60, 20, 340], key="start_index").to_csv(lab, index=False)
    assert convert(b, lab, tmp_path / "ds", "--val-fraction", "0.25") == 0
    ds = load_dataset(tmp_path / "ds", normalization="none")
    assert ds.feature_names == ["open", "high", "low", "close", "volume"]
    # rows in time order whatever the order of labels.csv; ids name the first bar
    assert ds.window_ids == ["bar-000", "bar-020", "bar-040", "bar-060", "bar-100", "bar-200", "bar-300", "bar-340"]
    assert ds.X_raw[1, 0, 4] == bars["Volume"].iloc[20]
    assert ds.val_idx.tolist() == [6, 7]
    assert convert(b, lab, tmp_path / "ds2", "--features", "close,open,high,low") == 0
    assert load_dataset(tmp_path / "ds2").feature_names == ["open", "high", "low", "close"]


def test_overlapping_windows_are_purged_from_the_split(tmp_path, capsys):
    bars = bars_frame()
    b, lab = tmp_path / "bars.csv", tmp_path / "labels.csv"
    bars.to_csv(b, index=False)
    starts = list(range(0, 380, 10))  # each window shares bars with the next one
    label_frame(bars, starts).to_csv(lab, index=False)
    assert convert(b, lab, tmp_path / "ds", "--purge", "15", "--test-fraction", "0.1") == 0
    assert "set purge = 1 under [protocol]" not in capsys.readouterr().out  # overlap of 1 is the default
    ds = load_dataset(tmp_path / "ds")
    s = np.array(starts)
    first_val, first_test = s[ds.val_idx.min()], s[ds.test_idx.min()]
    assert (s[ds.train_idx] + WINDOW - 1 + 15 < first_val).all()
    assert (s[ds.val_idx] + WINDOW - 1 + 15 < first_test).all()
    assert len(ds.test_idx) == 4 and len(ds.val_idx) + len(ds.train_idx) < 34  # 38 = 26 train + 8 val + 4 test, some purged
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["csv"]["purged_from_split"] == {"train": 26 - len(ds.train_idx), "val": 8 - len(ds.val_idx)}
    # windows every 5 bars overlap 3 later ones: the protocol's purge of 1 row is not enough
    label_frame(bars, range(0, 380, 5)).to_csv(lab, index=False)
    assert convert(b, lab, tmp_path / "ds") == 0
    assert "set purge = 3 under [protocol]" in capsys.readouterr().out


def test_expansion_given_as_bar_timestamps(files, tmp_path):
    b, lab, bars = files
    labels = pd.read_csv(lab)
    labels["expansion_start"] = bars["timestamp"].iloc[np.arange(20) * WINDOW + 3].to_numpy()
    labels.loc[5, "expansion_end"] = None  # an empty cell: not annotated
    labels.to_csv(lab, index=False)
    assert convert(b, lab, tmp_path / "ds") == 0
    ds = load_dataset(tmp_path / "ds")
    assert (ds.expansion_start == 3).all() and np.isnan(ds.expansion_end[5])


def test_split_helper_rows():
    split, purged = temporal_split(np.arange(10), np.arange(10), val_fraction=0.2, test_fraction=0.1, purge=1)
    assert split == {"train_idx": [0, 1, 2, 3, 4, 5], "val_idx": [7], "test_idx": [9]}
    assert purged == {"train": 1, "val": 1}


def test_cli_as_a_real_process(files, tmp_path):
    b, lab, _ = files
    env_cmd = [sys.executable, "-m", "moola.cli", "data"]
    run = subprocess.run([*env_cmd, "from-csv", str(b), "--labels", str(lab), "--out", str(tmp_path / "ds"),
                          "--window", str(WINDOW)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "labeled.parquet: 20 windows, T=20, F=4" in run.stdout and "train=16 val=4" in run.stdout
    check = subprocess.run([*env_cmd, "validate", str(tmp_path / "ds")], capture_output=True, text=True,
                           cwd=ROOT, timeout=120)
    assert check.returncode == 0 and "OK" in check.stdout
    bad = pd.read_csv(b, dtype=str)
    bad.loc[7, "close"] = "n/a"
    bad.to_csv(b, index=False)
    run = subprocess.run([*env_cmd, "from-csv", str(b), "--labels", str(lab), "--out", str(tmp_path / "ds2"),
                          "--window", str(WINDOW)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert f"{b}: line 9, column 'close': missing value; fill it" in run.stderr
    assert not (tmp_path / "ds2").exists()


def test_the_worked_example_is_reproducible_and_converts(tmp_path):
    """docs/BRING_YOUR_OWN_DATA.md: the shipped CSVs are what the script makes, and convert as shown."""
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "make_example_csv.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    for name in ("bars.csv", "labels.csv"):
        assert (tmp_path / name).read_bytes() == (ROOT / "examples" / name).read_bytes(), name
    assert main(["data", "from-csv", str(tmp_path / "bars.csv"), "--labels", str(tmp_path / "labels.csv"),
                 "--out", str(tmp_path / "ds"), "--window", "64", "--stride", "8"]) == 0
    ds = load_dataset(tmp_path / "ds")
    assert ds.describe().endswith("100 labeled (chop=55, trend=45), T=64, F=4, train/val/test=80/20/0, "
                                  "unlabeled=693, normalization=window_zscore")
    doc = (ROOT / "docs" / "BRING_YOUR_OWN_DATA.md").read_text()
    assert "classes   chop=55, trend=45" in doc and "unlabeled 693 windows" in doc


# -- bad input: each message names the file, the line or column, and the fix ------------------


def _edit_bars(change):
    def edit(b: Path, lab: Path) -> None:
        df = pd.read_csv(b, dtype=str)
        df = change(df)
        df.to_csv(b, index=False)
    return edit


def _edit_labels(change):
    def edit(b: Path, lab: Path) -> None:
        df = pd.read_csv(lab, dtype=str)
        df = change(df)
        df.to_csv(lab, index=False)
    return edit


def _set(df: pd.DataFrame, row: int, col: str, value) -> pd.DataFrame:
    df.loc[row, col] = value
    return df


BAD = {
    "missing_column": (_edit_bars(lambda df: df.drop(columns="low")),
                       ["bars.csv: missing column 'low' (any case)", "columns found: 'timestamp', 'open'",
                        "rename the column that holds it"]),
    "non_numeric": (_edit_bars(lambda df: _set(df, 40, "high", "1,234.5")),
                    ["bars.csv: line 42, column 'high': '1,234.5' is not a number", "no thousands separators"]),
    "nan": (_edit_bars(lambda df: _set(df, 3, "open", "NaN")),
            ["bars.csv: line 5, column 'open': missing value", "fill it"]),
    "infinite": (_edit_bars(lambda df: _set(df, 10, "close", "inf")),
                 ["bars.csv: line 12, column 'close': 'inf' is not finite", "write a finite number"]),
    "too_few_rows": (_edit_bars(lambda df: df.iloc[:12]),
                     ["bars.csv: 12 bars, fewer than one window of 20 bars", "shorter --window"]),
    "out_of_order": (_edit_bars(lambda df: _set(df, 30, "timestamp", "2024-01-01 09:00")),
                     ["bars.csv: line 32, column 'timestamp': '2024-01-01 09:00' (read as 2024-01-01 "
                      "09:00:00) is earlier than the previous bar's", "sort the file by time"]),
    "bad_time": (_edit_bars(lambda df: _set(df, 2, "timestamp", "yesterday")),
                 ["bars.csv: line 4, column 'timestamp': 'yesterday' is not a time", "ISO 8601"]),
    "text_column": (_edit_bars(lambda df: df.assign(symbol="ES")),
                    ["bars.csv: column 'symbol' holds no numbers", "--features open,high,low,close"]),
    "label_matches_no_bar": (_edit_labels(lambda df: _set(df, 4, "start_time", "2024-01-01 10:41")),
                             ["labels.csv: line 6, column 'start_time': '2024-01-01 10:41' (read as "
                              "2024-01-01 10:41:00) is not the time of any bar in bars.csv",
                              "use a bar's exact timestamp or drop the label"]),
    "label_past_the_end": (_edit_labels(lambda df: _set(df, 19, "start_time", "2024-01-02 17:55")),
                           ["labels.csv: line 21: the window at start_time 2024-01-02 17:55 needs 20 bars",
                            "windows start at rows 0..380", "drop the label or use a shorter --window"]),
    "unknown_label_column": (_edit_labels(lambda df: df.rename(columns={"start_time": "start"})),
                             ["labels.csv: unknown column 'start'; allowed: label, start_time, start_index",
                              "remove or rename it"]),
    "both_keys": (_edit_labels(lambda df: df.assign(start_index=0)),
                  ["labels.csv: has both columns 'start_time' and 'start_index'", "key each label by one"]),
    "bad_index": (_edit_labels(lambda df: df.drop(columns="start_time").assign(start_index="1.5")),
                  ["labels.csv: line 2, column 'start_index': '1.5' is not a whole number"]),
    "duplicate_window": (_edit_labels(lambda df: _set(df, 3, "start_time", df.loc[1, "start_time"])),
                         ["labels.csv: line 5 labels the same window as line 3", "keep one label per window"]),
    "empty_label": (_edit_labels(lambda df: _set(df, 2, "label", "")),
                    ["labels.csv: line 4, column 'label': no label", "write the class"]),
    "bad_expansion": (_edit_labels(lambda df: _set(df, 0, "expansion_end", "late")),
                      ["labels.csv: line 2, column 'expansion_end': 'late' is neither a bar offset"]),
    # caught by the dataset validator on the converted copy (the same messages as `moola data validate`)
    "one_class": (_edit_labels(lambda df: df.assign(label="a")),
                  ["ds/labeled.parquet: column 'label' has a single class ('a')", "add windows of another class",
                   "not written"]),
    "label_spellings": (_edit_labels(lambda df: _set(df, 6, "label", "A ")),
                        ["ds/labeled.parquet: column 'label': unknown label spelling", "write 'a' for all of them"]),
    "expansion_outside": (_edit_labels(lambda df: _set(df, 2, "expansion_end", "25")),
                          ["ds/labeled.parquet: column 'expansion_end', row 2 (window_id '2024-01-01 12:20') "
                           "is 25, outside the window (0..19)"]),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_rejected_with_file_line_and_fix(case, files, tmp_path, capsys):
    b, lab, _ = files
    edit, fragments = BAD[case]
    edit(b, lab)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert convert(b, lab, tmp_path / "ds") == 1
    err = capsys.readouterr().err
    assert err.startswith("moola: error:") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in:\n{err}"
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing may be written"


def test_a_failed_conversion_leaves_the_previous_dataset_whole(files, tmp_path, capsys):
    b, lab, _ = files
    out = tmp_path / "ds"
    assert convert(b, lab, out) == 0
    snapshot = {p.name: p.read_bytes() for p in out.glob("*.parquet")}
    pd.read_csv(lab).assign(label="a").to_csv(lab, index=False)  # one class: rejected by validation
    assert convert(b, lab, out) == 1
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet")} == snapshot
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.csv", "ds", "labels.csv"]


def test_an_out_directory_with_other_files_is_refused(files, tmp_path, capsys):
    b, lab, _ = files
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert convert(b, lab, tmp_path / "mine") == 1
    assert "holds files that are not part of a dataset (notes.txt)" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_labels_by_time_need_a_time_column(files, tmp_path, capsys):
    b, lab, bars = files
    bars.drop(columns="timestamp").to_csv(b, index=False)
    assert convert(b, lab, tmp_path / "ds") == 1
    err = capsys.readouterr().err
    assert "labels.csv: labels are keyed by 'start_time' but" in err and "key them by 'start_index'" in err


# -- dates read as written: ISO 8601, or one --date-format; never a guess ----------------------

DMY = "%d/%m/%Y %H:%M"


def _dated_files(tmp_path: Path, bars_fmt: str, labels_fmt: str, starts, n: int = N_BARS,
                 freq: str = "h") -> tuple[Path, Path, pd.DatetimeIndex]:
    """bars.csv and labels.csv from January 2023 (hourly: days 1..17), their times written with
    the given strftime formats; labels at the given bar rows."""
    t = pd.date_range("2023-01-01 00:00", periods=n, freq=freq)
    bars = bars_frame(n)
    bars["timestamp"] = t.strftime(bars_fmt)
    b, lab = tmp_path / "bars.csv", tmp_path / "labels.csv"
    bars.to_csv(b, index=False)
    starts = list(starts)
    pd.DataFrame({"start_time": t[starts].strftime(labels_fmt),
                  "label": ["a" if k % 2 else "b" for k in range(len(starts))]}).to_csv(lab, index=False)
    return b, lab, t


EARLY = range(0, 240, 12)  # labels on days 1..10: every day <= 12, so each reads both ways
AMBIGUOUS = ("labels.csv: column 'start_time': ambiguous dates: every one reads both day first and month "
             "first (line 4: '02/01/2023 00:00' is 2023-01-02 day first, 2023-02-01 month first), and "
             "moola does not guess; pass --date-format \"%d/%m/%Y %H:%M\" if the day comes first or "
             "--date-format \"%m/%d/%Y %H:%M\" if the month does, or write times as ISO 8601")


@pytest.mark.parametrize("bars_fmt", ["%Y-%m-%d %H:%M", DMY], ids=["iso_bars", "day_first_bars"])
def test_day_first_labels_with_every_day_up_to_12_are_refused_not_read_month_first(bars_fmt, tmp_path, capsys):
    b, lab, t = _dated_files(tmp_path, bars_fmt, DMY, EARLY)
    assert convert(b, lab, tmp_path / "ds") == 1
    err = capsys.readouterr().err
    assert AMBIGUOUS in err, err
    if bars_fmt == DMY:  # hourly bars reach 13 January: that file looks day-first, and says so
        assert ("bars.csv: column 'timestamp': this file looks day-first (line 290: '13/01/2023 00:00': 13 "
                "cannot be a month), but moola does not guess a date format; pass --date-format "
                "\"%d/%m/%Y %H:%M\"") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.csv", "labels.csv"]  # no dataset


@pytest.mark.parametrize("bars_fmt", ["%Y-%m-%d %H:%M", DMY], ids=["iso_bars", "day_first_bars"])
def test_date_format_reads_day_first_files_into_the_right_windows(bars_fmt, tmp_path, capsys):
    b, lab, t = _dated_files(tmp_path, bars_fmt, DMY, EARLY)
    assert convert(b, lab, tmp_path / "ds", "--date-format", DMY) == 0
    ds = load_dataset(tmp_path / "ds", normalization="none")
    prices = bars_frame()[["open", "high", "low", "close"]].to_numpy()
    starts = np.array(list(EARLY))
    np.testing.assert_allclose(ds.X_raw, prices[starts[:, None] + np.arange(WINDOW)], rtol=1e-6)
    # ids are the bars file's own text: '02/01/2023 00:00' stays that, never '2023-02-01 00:00:00'
    assert ds.window_ids[2] == t[24].strftime(bars_fmt) and ds.window_ids == list(t[starts].strftime(bars_fmt))
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())["csv"]
    assert meta["date_format"] == DMY and meta["time_format"] == ("ISO 8601" if bars_fmt != DMY else DMY)
    assert meta["start_rows"]["labeled"] == starts.tolist()


def test_a_file_that_looks_day_first_or_month_first_is_still_not_guessed(tmp_path, capsys):
    b, lab, _ = _dated_files(tmp_path, "%Y-%m-%d %H:%M", DMY, range(0, 380, 19))  # up to 16 January
    assert convert(b, lab, tmp_path / "ds") == 1
    err = capsys.readouterr().err
    assert ("labels.csv: column 'start_time': this file looks day-first (line 18: '13/01/2023 16:00': 13 "
            "cannot be a month), but moola does not guess a date format; pass --date-format "
            "\"%d/%m/%Y %H:%M\", or write times as ISO 8601") in err
    b, lab, _ = _dated_files(tmp_path, "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M", range(0, 380, 19))
    assert convert(b, lab, tmp_path / "ds") == 1
    assert "this file looks month-first (line 18: '01/13/2023 16:00': 13 cannot be a month)" in \
        capsys.readouterr().err
    assert convert(b, lab, tmp_path / "ds", "--date-format", "%m/%d/%Y %H:%M") == 0


def test_mixed_formats_in_one_column_are_named(tmp_path, capsys):
    b, lab, t = _dated_files(tmp_path, "%Y-%m-%d %H:%M", DMY, range(0, 380, 19))
    labels = pd.read_csv(lab, dtype=str)
    labels.loc[3, "start_time"] = t[57].strftime("%m/%d/%Y %H:%M")  # one row month first: 01/03/2023
    labels.loc[5, "start_time"] = t[95].strftime("%m/%d/%Y %H:%M")  # 01/04/2023 23:00 ...
    labels.loc[17, "start_time"] = t[323].strftime("%m/%d/%Y %H:%M")  # 01/14/2023: only month first
    labels.to_csv(lab, index=False)
    assert convert(b, lab, tmp_path / "ds") == 1
    err = capsys.readouterr().err
    assert ("labels.csv: column 'start_time' mixes day-first dates (line 18: '13/01/2023 16:00') and "
            "month-first dates (line 19: '01/14/2023 11:00'); write every time of the file in one "
            "format") in err, err
    # ISO and day/month in one column: each odd row is named
    labels = pd.read_csv(lab, dtype=str)
    labels["start_time"] = t[range(0, 380, 19)].strftime("%Y-%m-%d %H:%M")
    labels.loc[2, "start_time"] = "02/01/2023 14:00"
    labels.to_csv(lab, index=False)
    assert convert(b, lab, tmp_path / "ds") == 1
    assert ("labels.csv: line 4, column 'start_time': '02/01/2023 14:00' is not a time in ISO 8601, the "
            "format of the column's other times (e.g. line 2: '2023-01-01 00:00'); write every time of "
            "the file in one format") in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()
    # an empty cell is said as such, and the other rows are still read as a whole
    labels = pd.read_csv(lab, dtype=str)
    labels["start_time"] = t[EARLY].strftime(DMY)
    labels.loc[4, "start_time"] = ""
    labels.to_csv(lab, index=False)
    assert convert(b, lab, tmp_path / "ds") == 1
    err = capsys.readouterr().err
    assert "labels.csv: line 6, column 'start_time': no time; write the time, or drop the row" in err
    assert "labels.csv: column 'start_time': ambiguous dates" in err


def test_a_date_format_that_does_not_match_names_the_row_the_value_and_the_format(tmp_path, capsys):
    b, lab, t = _dated_files(tmp_path, "%Y-%m-%d %H:%M", DMY, EARLY)
    labels = pd.read_csv(lab, dtype=str)
    labels.loc[6, "start_time"] = "06-01-2023 00:00"
    labels.to_csv(lab, index=False)
    assert convert(b, lab, tmp_path / "ds", "--date-format", DMY) == 1
    assert ("labels.csv: line 8, column 'start_time': '06-01-2023 00:00' does not match --date-format "
            "\"%d/%m/%Y %H:%M\" (e.g. line 2: '01/01/2023 00:00' does); write it in that format") in \
        capsys.readouterr().err
    # a format that fits no row at all: one message, with the formats the file may be in
    assert convert(b, lab, tmp_path / "ds", "--date-format", "%Y.%m.%d %H:%M") == 1
    assert ("labels.csv: column 'start_time': no time matches --date-format \"%Y.%m.%d %H:%M\" (line 2: "
            "'01/01/2023 00:00'); pass the format the file is written in") in capsys.readouterr().err
    # month first where the file is day first: read exactly as told, so the labels miss the bars
    labels.loc[6, "start_time"] = "06/01/2023 00:00"
    labels.to_csv(lab, index=False)
    assert convert(b, lab, tmp_path / "ds", "--date-format", "%m/%d/%Y %H:%M") == 1
    assert ("labels.csv: line 4, column 'start_time': '02/01/2023 00:00' (read as 2023-02-01 00:00:00 "
            "with --date-format \"%m/%d/%Y %H:%M\") is not the time of any bar") in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_expansion_timestamps_are_read_with_the_column_s_one_format(tmp_path, capsys):
    b, lab, t = _dated_files(tmp_path, DMY, DMY, EARLY)
    labels = pd.read_csv(lab, dtype=str)
    labels["expansion_start"] = t[np.array(list(EARLY)) + 3].strftime(DMY)
    labels["expansion_end"] = "12"
    labels.to_csv(lab, index=False)
    assert convert(b, lab, tmp_path / "ds", "--date-format", DMY) == 0
    assert (load_dataset(tmp_path / "ds").expansion_start == 3).all()
    # ISO bars and start times, day-first expansion cells: without the format they are refused
    b, lab, t = _dated_files(tmp_path, "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M", EARLY)
    labels = pd.read_csv(lab, dtype=str)
    labels["expansion_start"] = t[np.array(list(EARLY)) + 3].strftime(DMY)
    labels.to_csv(lab, index=False)
    assert convert(b, lab, tmp_path / "ds2") == 1
    assert "labels.csv: column 'expansion_start': ambiguous dates" in capsys.readouterr().err
    assert convert(b, lab, tmp_path / "ds2", "--date-format", DMY) == 0
    assert (load_dataset(tmp_path / "ds2").expansion_start == 3).all()
