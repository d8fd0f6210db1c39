"""The results log: append-only JSONL that survives torn writes and concurrent writers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from moola.report.results import (
    RECORD_FIELDS,
    append_records,
    latest_by_gate,
    latest_run_id,
    read_records,
    results_path,
    scan_records,
)


def rec(gate="gate_1_smoke_enhanced", run_id="r1", status="passed", ts=None, **kw):
    d = {"run_id": run_id, "gate": gate, "status": status, "reason": f"{gate} {status}", **kw}
    if ts is not None:
        d["timestamp"] = ts
    return d


def test_append_then_read_round_trips_every_field(tmp_path):
    path = results_path(tmp_path)
    n = append_records(path, [rec(metrics={"macro_f1": np.float64(0.61), "loss": float("nan")},
                                  duration_s=1.5)])
    assert n == 1
    raw = path.read_text()
    assert raw.endswith("\n") and raw.count("\n") == 1
    (got,) = read_records(path)
    assert list(got)[: len(RECORD_FIELDS)] == list(RECORD_FIELDS)  # every field present, in order
    assert got["metrics"] == {"macro_f1": 0.61, "loss": None}  # numpy -> number, NaN -> null
    assert got["timestamp"]  # filled in when missing
    assert got["model"] is None and got["artifacts"] is None


def test_a_bad_record_is_rejected_before_anything_is_written(tmp_path):
    path = results_path(tmp_path)
    append_records(path, [rec()])
    before = path.read_bytes()
    with pytest.raises(ValueError, match="status 'ok'.*allowed: passed, failed, warning, inconclusive, skipped"):
        append_records(path, [rec(gate="gate_2"), rec(status="ok")])
    with pytest.raises(ValueError, match="no 'run_id'"):
        append_records(path, [{"gate": "gate_2", "status": "passed"}])
    assert path.read_bytes() == before


def test_missing_log_reads_as_empty(tmp_path):
    assert read_records(tmp_path / "nope.jsonl") == []


def test_torn_final_line_is_skipped_with_a_warning_and_never_merges(tmp_path, caplog):
    path = results_path(tmp_path)
    append_records(path, [rec("gate_0_env"), rec("gate_1_smoke_enhanced")])
    # a writer SIGKILLed mid-line: a partial record without its newline
    with open(path, "ab") as fh:
        fh.write(b'{"run_id": "r1", "gate": "gate_2_control_minirocket", "sta')
    with caplog.at_level(logging.WARNING, logger="moola.report.results"):
        got = read_records(path)
    assert [r["gate"] for r in got] == ["gate_0_env", "gate_1_smoke_enhanced"]
    assert "torn final line" in caplog.text and "skipped 1 unreadable" in caplog.text
    assert scan_records(path).torn_final_line

    # the next append closes the torn line first, so the new record is intact
    append_records(path, [rec("gate_2_control_minirocket", status="failed")])
    res = scan_records(path)
    assert [r["gate"] for r in res.records] == [
        "gate_0_env", "gate_1_smoke_enhanced", "gate_2_control_minirocket"]
    assert res.records[-1]["status"] == "failed"
    assert len(res.skipped) == 1 and "not valid JSON" in res.skipped[0] and not res.torn_final_line


def test_non_record_lines_are_skipped(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('[1, 2]\n\n{"run_id": "r", "gate": "g", "status": "passed"}\n')
    res = scan_records(path)
    assert len(res.records) == 1 and "not a record" in res.skipped[0]


WRITER = textwrap.dedent(
    """
    import sys
    from moola.report.results import append_records
    path, who = sys.argv[1], sys.argv[2]
    pad = who * 20000  # long lines: unlocked, unbuffered writers would interleave
    for i in range(40):
        append_records(path, [
            {"run_id": who, "gate": f"gate_{i}", "status": "passed", "reason": pad, "seq": 2 * i},
            {"run_id": who, "gate": f"gate_{i}", "status": "passed", "reason": pad, "seq": 2 * i + 1},
        ])
    """
)


def test_concurrent_appends_from_two_processes_never_interleave(tmp_path):
    path = results_path(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who]) for who in "ab"]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a newline
    parsed = [json.loads(line) for line in lines[:-1]]  # every line is valid JSON
    assert len(parsed) == 160
    for who in "ab":
        mine = [r for r in parsed if r["run_id"] == who]
        assert [r["seq"] for r in mine] == list(range(80))  # each writer's order kept
        assert all(r["reason"] == who * 20000 for r in mine)
    assert scan_records(path).skipped == []


def test_latest_by_gate_is_newest_by_timestamp_not_first_match():
    records = [
        rec("gate_1_smoke_enhanced", "r1", "passed", "2026-01-25T19:50:00+00:00"),
        rec("gate_1_smoke_enhanced", "r1", "failed", "2026-01-25T20:10:00+00:00"),
        # appended later but older (a clock-skewed or replayed record): must not win
        rec("gate_1_smoke_enhanced", "r1", "warning", "2026-01-25T20:00:00+00:00"),
        rec("gate_10_extra", "r1", "passed", "2026-01-25T20:00:00Z"),
        rec("gate_2_control_minirocket", "r1", "passed", "2026-01-25T20:00:00+00:00"),
        rec("gate_1_smoke_enhanced", "r2", "skipped", "2026-01-26T08:00:00+00:00"),
        {"gate": None, "status": "passed"},  # junk is ignored
    ]
    latest = latest_by_gate(records, run_id="r1")
    assert list(latest) == ["gate_1_smoke_enhanced", "gate_2_control_minirocket", "gate_10_extra"]
    assert latest["gate_1_smoke_enhanced"]["status"] == "failed"
    assert latest_by_gate(records)["gate_1_smoke_enhanced"]["run_id"] == "r2"
    assert latest_run_id(records) == "r2"
    assert latest_run_id([]) is None


def test_latest_by_gate_tolerates_missing_timestamps_and_breaks_ties_by_file_order():
    records = [
        rec("gate_0_env", status="failed", ts="2026-01-25T10:00:00"),
        rec("gate_0_env", status="passed", ts="2026-01-25T10:00:00"),
        rec("gate_0_env", status="skipped", ts="not a time"),
    ]
    assert latest_by_gate(records)["gate_0_env"]["status"] == "passed"
