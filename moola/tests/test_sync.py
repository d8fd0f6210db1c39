"""Background sync: runs at the trigger points, coalesces, never blocks or raises."""

from __future__ import annotations

import logging
import time

from moola.report.sync import SyncRunner


def reasons(path):
    return path.read_text().split() if path.exists() else []


def test_command_runs_at_each_trigger_and_once_more_at_close(tmp_path):
    calls = tmp_path / "calls.txt"
    runner = SyncRunner(f'echo "$MOOLA_SYNC_REASON" >> {calls}', tmp_path / "sync.log")
    runner.trigger("checkpoint")
    assert runner.wait(10)
    runner.trigger("eval")
    assert runner.wait(10)
    assert runner.close(timeout=10)
    assert reasons(calls) == ["checkpoint", "eval", "final"]
    assert runner.runs == 3 and runner.failures == 0 and runner.last_returncode == 0
    runner.trigger("late")  # after close: ignored, no error
    assert runner.wait(1) and reasons(calls) == ["checkpoint", "eval", "final"]
    log = (tmp_path / "sync.log").read_text()
    assert log.count("--- ok") == 3 and "sync (checkpoint)" in log


def test_reports_placeholder_is_replaced(tmp_path):
    reports = tmp_path / "my reports"
    reports.mkdir()
    runner = SyncRunner("ls {reports} > {reports}/listing.txt; echo $MOOLA_REPORTS >> {reports}/listing.txt",
                        reports / "sync.log", reports_dir=reports)
    assert runner.close(timeout=10)
    assert (reports / "listing.txt").read_text().strip().endswith(str(reports))


def test_failing_command_is_logged_and_never_raises(tmp_path, caplog):
    log_path = tmp_path / "sync.log"
    runner = SyncRunner("echo boom-output; exit 3", log_path)
    with caplog.at_level(logging.WARNING, logger="moola.report.sync"):
        runner.trigger("checkpoint")
        assert runner.wait(10)
    assert runner.failures == 1 and runner.last_returncode == 3
    assert "exited with status 3" in caplog.text and "boom-output" in caplog.text
    text = log_path.read_text()
    assert "boom-output" in text and "--- failed: exited with status 3" in text


def test_missing_command_is_logged_and_never_raises(tmp_path, caplog):
    runner = SyncRunner("moola-no-such-command-xyz --flag", tmp_path / "sync.log")
    with caplog.at_level(logging.WARNING, logger="moola.report.sync"):
        assert runner.close(timeout=10)
    assert runner.failures == 1 and runner.last_returncode == 127
    assert "command not found" in caplog.text and "moola-no-such-command-xyz" in caplog.text


def test_slow_command_does_not_block_and_triggers_coalesce(tmp_path):
    calls = tmp_path / "calls.txt"
    # only the first sync is slow (3 s), so the test does not wait for two slow ones
    cmd = f'[ "$MOOLA_SYNC_REASON" = step0 ] && sleep 3; echo "$MOOLA_SYNC_REASON" >> {calls}'
    runner = SyncRunner(cmd, tmp_path / "sync.log")
    t0 = time.monotonic()
    for i in range(5):
        runner.trigger(f"step{i}")
    assert time.monotonic() - t0 < 1.0  # 5 triggers of a 3 s command: training was not held up
    assert runner.running
    assert runner.close(timeout=20)
    # the first ran; the 4 that arrived meanwhile and the final one became a single follow-up
    assert reasons(calls) == ["step0", "final"]
    assert runner.runs == 2 and runner.coalesced == 4


def test_hung_command_is_killed_after_run_timeout(tmp_path, caplog):
    runner = SyncRunner("sleep 30", tmp_path / "sync.log", run_timeout=0.3)
    with caplog.at_level(logging.WARNING, logger="moola.report.sync"):
        runner.trigger("eval")
        assert runner.wait(10)
    assert runner.failures == 1 and "hung for more than 0.3 s" in caplog.text


def test_close_timeout_returns_false_without_killing(tmp_path, caplog):
    runner = SyncRunner("sleep 1", tmp_path / "sync.log")
    with caplog.at_level(logging.WARNING, logger="moola.report.sync"):
        assert runner.close(timeout=0.1) is False
    assert "still running" in caplog.text
    assert runner.wait(10)  # it finishes on its own


def test_empty_command_is_a_no_op(tmp_path):
    runner = SyncRunner("  ", tmp_path / "sync.log")
    assert not runner.enabled
    runner.trigger("checkpoint")
    assert runner.close(timeout=1)
    assert runner.runs == 0 and not (tmp_path / "sync.log").exists()
