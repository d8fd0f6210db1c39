"""`moola data ...` through main(argv): exit codes and messages."""

from __future__ import annotations

import shutil
from pathlib import Path

from moola.cli import build_parser, main

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def test_validate_ok_prints_summary(capsys):
    assert main(["data", "validate", str(FIXTURES / "smoke")]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "consolidation=69" in out and "train=90 val=30" in out and "unlabeled 600" in out


def test_validate_invalid_prints_every_problem(smoke_copy, capsys):
    (smoke_copy / "unlabeled.parquet").unlink()
    (smoke_copy / "splits" / "fold_0.json").write_text("{")
    assert main(["data", "validate", str(smoke_copy)]) == 1
    err = capsys.readouterr().err
    assert "INVALID (2 problems)" in err and "unlabeled.parquet" in err and "not valid JSON" in err
    assert "Traceback" not in err


def test_validate_other_fold_missing(capsys):
    assert main(["data", "validate", str(FIXTURES / "smoke"), "--fold", "3"]) == 1
    assert "fold_3.json: split file missing" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    assert main(["data"]) == 2
    assert main(["data", "validate"]) == 2
    assert main(["nonsense"]) == 2
    assert main(["data", "synth", "--out", "x", "--labeled", "many"]) == 2


def test_synth_if_missing(tmp_path, capsys):
    out = tmp_path / "d"
    shutil.copytree(FIXTURES / "smoke", out)
    before = (out / "labeled.parquet").stat().st_mtime_ns
    assert main(["data", "synth", "--out", str(out), "--if-missing"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (out / "labeled.parquet").stat().st_mtime_ns == before


def test_synth_writes_and_reports_errors(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["data", "synth", "--out", str(out), "--labeled", "20", "--unlabeled", "15", "--if-missing"]) == 0
    assert "20 windows" in capsys.readouterr().out
    assert main(["data", "synth", "--out", str(out), "--labeled", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("moola: error:") and "n_labeled" in err and "Traceback" not in err


def test_parser_is_extensible():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "data" in sub.choices


def test_version_is_the_package_version(capsys):
    import tomllib

    import moola

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"moola {moola.__version__}\n"
    project = tomllib.loads((FIXTURES.parent / "pyproject.toml").read_text())["project"]
    assert moola.__version__ == project["version"]  # one version, whichever way it is asked
