"""Bad input matrix: real malformed datasets and gates-configs through a real gate-0 session.

Each case edits a private copy of ``fixtures/smoke`` (pandas / pyarrow / json / raw bytes), then
runs the real ``gates_tests`` files with pytester (``-k gate_0 --profile smoke``) and checks:

(a) gate 0 fails;
(b) the message, in the results-log record's ``reason`` and in the pytest output, names the
    file, the row or column, and the fix (case-specific fragments);
(c) nothing under ``reports/`` is created or changed except the failed gate's results record and
    pytest-json-report's ``report.json``; no ``runs/`` folder; no cache artifact.

A broken ``--gates-config`` (unknown key, wrong type) is a usage error (exit 4) that names the
file and the key, and writes nothing at all under ``reports/``. ``moola data validate`` is run
on some of the same datasets: exit 1 and the same message.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# Inline pytester sessions restore sys.modules afterwards; C extensions such as torch cannot be
# imported twice in one process, so everything the gates import is loaded here first.
import moola.data  # noqa: F401
import moola.gates  # noqa: F401
import moola.report.plots  # noqa: F401
import moola.train  # noqa: F401
from moola.testing import write_gate_suite
from moola.cli import main as moola_main

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "fixtures" / "smoke"
RESULTS = "gated_workflow_results.jsonl"
# a record left by an earlier run: the new session must only append after it
OLD_RECORD = {"run_id": "20240101T000000Z-abcdef", "gate": "gate_0_env",
              "timestamp": "2024-01-01T00:00:00.000000+00:00", "model": None, "config": {},
              "metrics": {}, "comparison": {}, "status": "passed", "reason": "earlier run",
              "duration_s": 0.1, "artifacts": {}}
OLD_STATUS = {"run_id": "20240101T000000Z-abcdef", "gate": "gate_4_finetune_enhanced",
              "phase": "train", "step": 40, "epoch": 3}


# -- real edits of the files in a copy of the smoke dataset ------------------------------------


def _lab(ds: Path) -> Path:
    return ds / "labeled.parquet"


def _unl(ds: Path) -> Path:
    return ds / "unlabeled.parquet"


def _split(ds: Path) -> Path:
    return ds / "splits" / "fold_0.json"


def edit_df(path: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    """Read a parquet file with pandas, change it, write it back."""
    df = pd.read_parquet(path)
    change(df).to_parquet(path)


def _windows(df: pd.DataFrame) -> list[list[list[float]]]:
    """The features column as plain nested lists (editable)."""
    return [np.stack(w).tolist() for w in df["features"]]


def set_features(path: Path, change: Callable[[list], None]) -> None:
    df = pd.read_parquet(path)
    wins = _windows(df)
    change(wins)
    df["features"] = wins
    df.to_parquet(path)


def edit_split(ds: Path, change: Callable[[dict], None]) -> None:
    split = json.loads(_split(ds).read_text())
    change(split)
    _split(ds).write_text(json.dumps(split))


def _set(df: pd.DataFrame, col: str, row: int, value) -> pd.DataFrame:
    values = df[col].tolist()
    values[row] = value
    df[col] = values
    return df


def _nan(w):
    w[5][10][2] = float("nan")


def _inf(w):
    w[7][0][1] = float("inf")


def _ragged(w):
    w[3][20] = w[3][20][:3]


def _short(w):
    w[4] = w[4][:100]


def _cut_unlabeled(w):
    for i in range(len(w)):
        w[i] = w[i][:100]


def _truncate(ds: Path) -> None:
    data = _lab(ds).read_bytes()
    _lab(ds).write_bytes(data[: len(data) // 2])


def _csv_renamed(ds: Path) -> None:
    df = pd.read_parquet(_lab(ds))
    _lab(ds).write_text(df[["window_id", "label"]].to_csv(index=False))


def _empty(ds: Path) -> None:
    t = pq.read_table(_lab(ds))
    pq.write_table(t.slice(0, 0), _lab(ds))


def _label_numeric(ds: Path) -> None:
    t = pq.read_table(_lab(ds))
    codes = pa.array([0 if v == "consolidation" else 1 for v in t.column("label").to_pylist()])
    pq.write_table(t.set_column(t.column_names.index("label"), "label", codes), _lab(ds))


def _features_string(ds: Path) -> None:
    edit_df(_lab(ds), lambda df: df.assign(features=[json.dumps(w) for w in _windows(df)]))


def _unlabeled_leak(ds: Path) -> None:
    edit_df(_unl(ds), lambda df: _set(df, "window_id", 0, "w-00010"))


def _unlabeled_missing(ds: Path) -> None:
    _unl(ds).unlink()


def _move_val_row_into_train(split: dict) -> None:
    split["train_idx"].append(split["val_idx"][0])


def _not_temporal(split: dict) -> None:
    split["train_idx"][-1], split["val_idx"][0] = split["val_idx"][0], split["train_idx"][-1]


@dataclass(frozen=True)
class Case:
    """One malformed dataset: how to break the copy, and what the message must contain."""

    id: str
    build: Callable[[Path], None]
    file: Callable[[Path], Path]  # the file the message must name
    fragments: tuple[str, ...]  # the row / column and the fix


CASES = [
    # -- labeled file: columns and dtypes
    Case("missing_column_label",
         lambda ds: edit_df(_lab(ds), lambda df: df.drop(columns=["label"])),
         _lab, ("missing column 'label'", "columns found", "add the column")),
    Case("renamed_column_features_to_bars",
         lambda ds: edit_df(_lab(ds), lambda df: df.rename(columns={"features": "bars"})),
         _lab, ("missing column 'features'", "'bars'", "rename")),
    Case("label_numeric", _label_numeric,
         _lab, ("column 'label'", "int64", "expected strings", "convert it")),
    Case("features_as_string", _features_string,
         _lab, ("column 'features'", "expected a list of timesteps", "store each window")),
    Case("window_id_null",
         lambda ds: edit_df(_lab(ds), lambda df: _set(df, "window_id", 6, None)),
         _lab, ("column 'window_id'", "row 6", "is null", "give every row")),
    # -- labeled file: values and shapes
    Case("nan_in_features", lambda ds: set_features(_lab(ds), _nan),
         _lab, ("column 'features'", "row 5 (window_id 'w-00005')", "non-finite value nan",
                "timestep 10, feature 2", "fill or drop")),
    Case("inf_in_features", lambda ds: set_features(_lab(ds), _inf),
         _lab, ("row 7 (window_id 'w-00007')", "non-finite value inf", "fill or drop")),
    Case("ragged_window", lambda ds: set_features(_lab(ds), _ragged),
         _lab, ("column 'features'", "row 3 (window_id 'w-00003')", "ragged",
                "expected shape (105, 4)", "fix or drop")),
    Case("wrong_length_window", lambda ds: set_features(_lab(ds), _short),
         _lab, ("row 4 (window_id 'w-00004')", "shape (100, 4)", "expected shape (105, 4)")),
    Case("empty_labeled_file", _empty,
         _lab, ("empty (0 rows)", "write at least one window")),
    Case("truncated_parquet", _truncate,
         _lab, ("cannot be read as parquet", "truncated", "rewrite it")),
    Case("csv_renamed_to_parquet", _csv_renamed,
         _lab, ("cannot be read as parquet", "not parquet", "rewrite it")),
    Case("duplicate_window_id",
         lambda ds: edit_df(_lab(ds), lambda df: _set(df, "window_id", 10, "w-00003")),
         _lab, ("column 'window_id'", "duplicate id 'w-00003' in row 3 and row 10",
                "drop the duplicate window or rename it")),
    Case("one_class_only",
         lambda ds: edit_df(_lab(ds), lambda df: df.assign(label="consolidation")),
         _lab, ("column 'label'", "single class", "add windows of another class")),
    Case("label_spelling",
         lambda ds: edit_df(_lab(ds), lambda df: _set(df, "label", 2, "Consolidation ")),
         _lab, ("column 'label'", "'Consolidation ' in row 2 (window_id 'w-00002')",
                "write 'consolidation'")),
    Case("expansion_outside_window",
         lambda ds: edit_df(_lab(ds), lambda df: _set(df, "expansion_end", 8, 300)),
         _lab, ("column 'expansion_end'", "row 8 (window_id 'w-00008')", "0..104",
                "fix the bar position")),
    # -- split file
    Case("split_malformed_json", lambda ds: _split(ds).write_text('{"train_idx": [0, 1,'),
         _split, ("not valid JSON", "rewrite it as", "train_idx")),
    Case("split_unknown_key", lambda ds: edit_split(ds, lambda s: s.update(holdout_idx=[0])),
         _split, ("unknown key 'holdout_idx'", "allowed keys", "remove or rename")),
    Case("split_overlap", lambda ds: edit_split(ds, _move_val_row_into_train),
         _split, ("row 90 is in both 'train' and 'val'", "remove it from one")),
    Case("split_out_of_range",
         lambda ds: edit_split(ds, lambda s: s["val_idx"].append(500)),
         _split, ("'val' index 500 is out of range", "120 rows", "valid: 0..119")),
    Case("split_not_temporal", lambda ds: edit_split(ds, _not_temporal),
         _split, ("not temporal", "'train' row 90", "rebuild the split by time")),
    Case("split_non_integer",
         lambda ds: edit_split(ds, lambda s: s["val_idx"].__setitem__(0, "90")),
         _split, ("'val' indices must be integers", "entry 0 is '90'", "plain integers")),
    # -- unlabeled pool
    Case("leakage_labeled_window_in_unlabeled", _unlabeled_leak,
         _unl, ("leakage", "'w-00010'", "labeled.parquet row 10", "(row 0)",
                "remove it from unlabeled.parquet")),
    Case("unlabeled_file_missing", _unlabeled_missing,
         _unl, ("missing file", "add it or regenerate")),
    Case("unlabeled_other_window_length",
         lambda ds: set_features(_unl(ds), _cut_unlabeled),
         _unl, ("column 'features'", "shape (100, 4)", "(105, 4)", "same window length")),
]

BAD_CONFIGS = {
    "unknown_key": ("[train]\nmax_epoch = 3\n", ("unknown key 'train.max_epoch'", "allowed keys")),
    "wrong_type": ('[train]\nmax_epochs = "many"\n',
                   ("'train.max_epochs'", "expected an integer", "'many'")),
}


# -- the session and what it may write ---------------------------------------------------------


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """The repo's layout (conftest + real gates_tests files) with a seeded reports/ folder."""
    write_gate_suite(pytester.path)
    reports = pytester.path / "reports"
    reports.mkdir()
    (reports / RESULTS).write_text(json.dumps(OLD_RECORD) + "\n")
    (reports / "status.json").write_text(json.dumps(OLD_STATUS, indent=1) + "\n")
    return pytester


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A private copy of the smoke dataset (outside the pytester project)."""
    dst = tmp_path / "ds"
    shutil.copytree(SMOKE, dst)
    return dst


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_gate_0(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest("--profile", "smoke", "-k", "gate_0", *args)


def assert_only_the_failed_record_was_written(project: pytest.Pytester,
                                              before: dict[str, bytes]) -> dict:
    """(c): the results log gains exactly one failed gate_0 line; nothing else changes."""
    reports = project.path / "reports"
    after = snapshot(reports)
    # the lock file beside the results log is filelock's, part of appending the record
    allowed = {RESULTS, RESULTS + ".lock", "report.json"}
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed <= allowed, f"unexpected writes under reports/: {sorted(changed - allowed)}"
    assert after["status.json"] == before["status.json"], "status.json must not change on gate 0"
    old, new = before[RESULTS], after[RESULTS]
    assert new.startswith(old), "the earlier results must stay untouched"
    added = new[len(old):].decode().splitlines()
    assert len(added) == 1, f"expected one new record, got {len(added)}"
    rec = json.loads(added[0])
    assert (rec["gate"], rec["status"]) == ("gate_0_env", "failed")
    assert "report.json" in after
    assert not (reports / "runs").exists(), "a rejected input must not create reports/runs/"
    cache = project.path / ".moola-cache"
    assert not list(cache.rglob("manifest.json")) if cache.exists() else True, \
        "a rejected input must not build cache artifacts"
    return rec


def _without_paths(text: str, ds: Path) -> str:
    """Drop the temporary paths (they contain the case id, which could match a fragment)."""
    return text.replace(str(ds.parent), "<tmp>")


def check_rejected(project: pytest.Pytester, ds: Path, case: Case) -> None:
    """One case end to end: gate 0 fails, the message is actionable, nothing else is written."""
    data_before = snapshot(ds)
    before = snapshot(project.path / "reports")
    r = run_gate_0(project, f"--data={ds}")
    r.assert_outcomes(failed=1, deselected=8)
    rec = assert_only_the_failed_record_was_written(project, before)
    output = "\n".join(r.outlines + r.errlines)
    for where, text in (("results-log reason", rec["reason"]), ("pytest output", output)):
        assert str(case.file(ds)) in text, f"{case.id}: {where} does not name {case.file(ds)}"
        missing = [f for f in case.fragments if f not in _without_paths(text, ds)]
        assert not missing, f"{case.id}: {where} lacks {missing}:\n{text[-3000:]}"
    assert snapshot(ds) == data_before, "validation must not write into the dataset"


# -- the matrix -------------------------------------------------------------------------------


def test_matrix_has_enough_distinct_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gate_0_rejects(project, broken, case):
    case.build(broken)
    check_rejected(project, broken, case)


def test_extra_column_is_harmless_and_accepted(project, broken):
    """An extra column is ignored by design (the schema names what is required), so it passes."""
    edit_df(_lab(broken), lambda df: df.assign(source="exchange-a"))
    r = run_gate_0(project, f"--data={broken}")
    r.assert_outcomes(passed=1, deselected=8)


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_gates_config_is_a_usage_error_and_writes_nothing(project, broken, name):
    text, fragments = BAD_CONFIGS[name]
    cfg = project.path / "gates.toml"
    cfg.write_text(text)
    before = snapshot(project.path / "reports")
    r = run_gate_0(project, f"--gates-config={cfg}", f"--data={broken}")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    err = "\n".join(r.errlines)
    for f in (str(cfg),) + fragments:
        assert f in err, f"usage error lacks {f!r}:\n{err}"
    assert snapshot(project.path / "reports") == before, "a usage error must write nothing"
    assert not (project.path / ".moola-cache").exists()


# -- the CLI on some of the same inputs --------------------------------------------------------

CLI_CASES = [c for c in CASES if c.id in {"nan_in_features", "duplicate_window_id",
                                          "split_not_temporal", "truncated_parquet",
                                          "leakage_labeled_window_in_unlabeled"}]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_moola_data_validate_rejects(broken, case, capsys):
    case.build(broken)
    before = snapshot(broken)
    assert moola_main(["data", "validate", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "INVALID" in err
    assert str(case.file(broken)) in err
    for f in case.fragments:
        assert f in _without_paths(err, broken), f"{case.id}: validate lacks {f!r}:\n{err}"
    assert snapshot(broken) == before


def test_gate_0_leaves_status_alone_and_the_next_gate_lists_it(tmp_path, monkeypatch):
    """The runner, without pytest: gate 0 writes no status.json; the next (training) gate lists
    gate 0 among the finished gates when it writes the status."""
    from moola.config import load_config
    from moola.gates import runner
    from moola.gates.context import GateContext
    from moola.verdict import Verdict

    def fake_gate_1(ctx):
        assert ctx.status.state["gates"]["gate_0_env"]["status"] == "passed"  # live already
        return Verdict(gate="gate_1_smoke_enhanced", status="passed", reason="fake")

    from dataclasses import replace

    from moola.gates.registry import REGISTRY

    spec = REGISTRY["gate_1_smoke_enhanced"]
    monkeypatch.setitem(REGISTRY._specs, spec.name, replace(spec, judge=fake_gate_1))
    ctx = GateContext(cfg=load_config("smoke", overrides={"run.data": str(SMOKE)}),
                      run_id="r1", root=tmp_path)
    assert runner.judge(ctx, "gate_0_env").passed
    assert not (tmp_path / "reports" / "status.json").exists()
    assert runner.judge(ctx, "gate_1_smoke_enhanced").passed
    status = json.loads((tmp_path / "reports" / "status.json").read_text())
    assert set(status["gates"]) == {"gate_0_env", "gate_1_smoke_enhanced"}
