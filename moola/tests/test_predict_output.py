"""`moola predict`'s output, without a session: a tiny exported model (a real model directory)
applied to real CSV files and dataset directories.

* ids are the user's text; every row has its window's first and last bar (the bar at whose close
  the prediction is known), the predicted class, each class's probability, the model's name and
  run id;
* a non-ISO time column of the bars is read with --date-format, an ambiguous one is refused;
* a dataset directory gives first/last bar as rows of the bars file from-csv read (empty for a
  dataset made otherwise);
* standard output gets the CSV when it is a pipe or a file; a terminal gets a summary.
(Round trips against a session's refitted models: test_model_out.py.)
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from moola.cli import main
from moola.export import load_model
from moola.models.architecture import describe
from moola.export.bundle import FORMAT, publish, write_model_files
from moola.models import SimpleLSTM
from moola.tests.test_data_from_csv import bars_frame, label_frame

REPO = Path(__file__).resolve().parents[2]
T = 20
COLUMNS = ["first_bar", "last_bar"]
MODEL = ["predicted", "model_name", "model_run_id"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """An exported SimpleLSTM of 20-bar OHLC windows, classes a and b."""
    tmp = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    module = SimpleLSTM(4, hidden=5, n_classes=2, dropout=0.0).eval()
    torch.save(module.state_dict(), tmp / "weights.pt")
    card = {"format": FORMAT, "kind": "model", "name": "simple", "model": "SimpleLSTM",
            "run_id": "20261207T090000Z-abc123", "moola_version": "0.0-test",
            "classes": ["a", "b"], "feature_names": ["open", "high", "low", "close"],
            "window_length": T, "normalization": {"method": "window_zscore"},
            "architecture": describe(module)}
    out = tmp / "models" / "simple"
    publish(out, lambda d: write_model_files(d, tmp / "weights.pt", card, lambda c: "card\n"))
    return out


def _bars(tmp_path: Path, fmt: str, n: int = 120) -> tuple[Path, pd.DataFrame]:
    """bars.csv of n hourly bars from 1 January 2023, times written with `fmt`."""
    bars = bars_frame(n)
    bars["timestamp"] = pd.date_range("2023-01-01", periods=n, freq="h").strftime(fmt)
    path = tmp_path / "bars.csv"
    bars.to_csv(path, index=False)
    return path, bars


def _want(model_dir: Path, bars: pd.DataFrame, starts: np.ndarray) -> np.ndarray:
    X = np.stack([bars[["open", "high", "low", "close"]].to_numpy()[s:s + T] for s in starts])
    return load_model(model_dir).predict_proba(X.astype(np.float32))


def test_a_csv_of_bars_gives_ids_as_written_first_and_last_bar_and_the_model(model_dir, tmp_path, capsys):
    b, bars = _bars(tmp_path, "%Y-%m-%dT%H:%M:%S")  # ISO with a T: kept, not rewritten
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(model_dir), "--data", str(b), "--stride", "7",
                 "--out", str(out)]) == 0
    assert f"written to {out}" in capsys.readouterr().out
    got = pd.read_csv(out, dtype={"model_run_id": str})
    assert list(got.columns) == ["window_id", *COLUMNS, "start_index", "a", "b", *MODEL]
    starts = np.arange(0, len(bars) - T + 1, 7)
    assert list(got.start_index) == starts.tolist()
    assert list(got.window_id) == list(got.first_bar) == bars.timestamp[starts].tolist()
    assert got.window_id[0] == "2023-01-01T00:00:00"
    assert list(got.last_bar) == bars.timestamp[starts + T - 1].tolist()  # the prediction is known here
    np.testing.assert_allclose(got[["a", "b"]].to_numpy(), _want(model_dir, bars, starts), atol=1e-6)
    assert list(got.predicted) == [["a", "b"][k] for k in got[["a", "b"]].to_numpy().argmax(axis=1)]
    assert set(got.model_name) == {"simple"} and set(got.model_run_id) == {"20261207T090000Z-abc123"}


def test_day_first_bars_need_the_date_format_and_keep_their_text(model_dir, tmp_path, capsys):
    b, bars = _bars(tmp_path, "%d/%m/%Y %H:%M")  # 120 hours: days 1..5, each reads both ways
    assert main(["predict", "--model", str(model_dir), "--data", str(b)]) == 1
    err = capsys.readouterr().err
    assert ("bars.csv: column 'timestamp': ambiguous dates: every one reads both day first and month "
            "first (line 26: '02/01/2023 00:00' is 2023-01-02 day first, 2023-02-01 month first)") in err
    assert "--date-format \"%d/%m/%Y %H:%M\" if the day comes first" in err
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(model_dir), "--data", str(b), "--date-format",
                 "%d/%m/%Y %H:%M", "--out", str(out)]) == 0
    got = pd.read_csv(out)
    assert got.window_id[24] == got.first_bar[24] == "02/01/2023 00:00"
    assert got.last_bar[24] == "02/01/2023 19:00"
    # a format the file does not use: the row, the value and the format
    bars.loc[30, "timestamp"] = "2023-01-02 06:00"
    bars.to_csv(b, index=False)
    assert main(["predict", "--model", str(model_dir), "--data", str(b), "--date-format",
                 "%d/%m/%Y %H:%M"]) == 1
    assert ("bars.csv: line 32, column 'timestamp': '2023-01-02 06:00' does not match --date-format "
            "\"%d/%m/%Y %H:%M\"") in capsys.readouterr().err


def test_a_dataset_directory_gives_rows_of_the_bars_file(model_dir, tmp_path, capsys):
    b, bars = _bars(tmp_path, "%Y-%m-%d %H:%M", n=200)
    lab = tmp_path / "labels.csv"
    label_frame(bars, range(0, 180, 20)).to_csv(lab, index=False)
    assert main(["data", "from-csv", str(b), "--labels", str(lab), "--out", str(tmp_path / "ds"),
                 "--window", str(T), "--stride", "5"]) == 0
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(model_dir), "--data", str(tmp_path / "ds"), "--out", str(out)]) == 0
    got = pd.read_csv(out)
    assert list(got.columns) == ["window_id", *COLUMNS, "role", "label", "a", "b", *MODEL]
    rows = json.loads((tmp_path / "ds" / "meta.json").read_text())["csv"]["start_rows"]
    starts = np.array(rows["labeled"] + rows["unlabeled"])
    assert list(got.first_bar) == starts.tolist() and list(got.last_bar) == (starts + T - 1).tolist()
    assert list(got.window_id) == bars.timestamp[starts].tolist()  # the bars' text, as written
    np.testing.assert_allclose(got[["a", "b"]].to_numpy(), _want(model_dir, bars, starts), atol=1e-5)
    # a dataset made from arrays has no bars file: the columns are empty
    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.normal(size=(30, T, 4)))
    np.save(tmp_path / "y.npy", np.array(["a", "b"] * 15))
    np.save(tmp_path / "U.npy", rng.normal(size=(5, T, 4)))
    assert main(["data", "from-numpy", str(tmp_path / "X.npy"), str(tmp_path / "y.npy"), "--out",
                 str(tmp_path / "np"), "--unlabeled", str(tmp_path / "U.npy"),
                 "--feature-names", "open,high,low,close"]) == 0
    assert main(["predict", "--model", str(model_dir), "--data", str(tmp_path / "np"), "--out", str(out)]) == 0
    got = pd.read_csv(out)
    assert got.first_bar.isna().all() and got.last_bar.isna().all() and len(got) == 35


def _predict_process(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "moola.cli", "predict", *args], env=env,
                          timeout=300, **kw)


def test_standard_output_gets_the_csv_only_when_it_is_a_pipe_or_a_file(model_dir, tmp_path):
    b, bars = _bars(tmp_path, "%Y-%m-%d %H:%M")
    args = ["--model", str(model_dir), "--data", str(b)]
    piped = _predict_process(args, capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert lines[0] == "window_id,first_bar,last_bar,start_index,a,b,predicted,model_name,model_run_id"
    assert len(lines) == 1 + len(bars) - T + 1
    assert "101 windows of" in piped.stderr
    # a terminal: the summary, and where to write the rows; not 101 rows
    leader, follower = pty.openpty()
    try:
        tty = _predict_process(args, stdout=follower, stderr=subprocess.PIPE, text=True)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: everything was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    shown = shown.decode()
    assert tty.returncode == 0, tty.stderr
    assert f"101 windows of {b} predicted with {model_dir}: " in shown
    assert "Pass --out FILE (e.g. --out predictions.csv)" in shown
    assert "2023-01-01 05:00" not in shown  # no row
