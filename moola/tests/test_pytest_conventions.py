"""pytest's own conventions in a moola suite (issue 12, parts 1 and 2), tested with pytester on
copies of the real gates_tests/: the cache provider's --lf / --ff / --sw / --cache-show /
--cache-clear, information commands that touch nothing, and records written as gates finish.

Only gate 0 runs (no training); a failing step after it is a plain user test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import moola.data  # noqa: F401  (see test_plugin.py: torch & co. imported once, up front)
import moola.gates  # noqa: F401
import moola.train  # noqa: F401
from moola.testing import read_results, write_gate_suite

pytest_plugins = ["pytester"]

SMOKE = Path(__file__).resolve().parents[2] / "fixtures" / "smoke"
ARGS = ("--profile", "smoke", f"--data={SMOKE}")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    write_gate_suite(pytester.path)
    return pytester


@pytest.fixture
def no_helpers(monkeypatch):
    """Records every helper process a session starts (plot worker, numba warm-up)."""
    from moola import numba_warmup
    from moola.report import plot_worker

    started: list[str] = []
    monkeypatch.setattr(plot_worker.PlotWorker, "start",
                        classmethod(lambda cls, *a, **k: started.append("plots")))
    monkeypatch.setattr(numba_warmup, "start", lambda *a, **k: started.append("numba"))
    return started


def _break_gate_0(smoke_copy: Path) -> None:
    df = pd.read_parquet(smoke_copy / "labeled.parquet").drop(columns=["label"])
    df.to_parquet(smoke_copy / "labeled.parquet")


def test_last_failed_and_failed_first_use_the_cache(project, smoke_copy):
    _break_gate_0(smoke_copy)
    r = project.runpytest("--profile", "smoke", f"--data={smoke_copy}", "-k", "gate_0 or gate_1")
    r.assert_outcomes(failed=1, deselected=7, skipped=1)
    r = project.runpytest(*ARGS, "--lf", "--co")
    r.stdout.fnmatch_lines(["run-last-failure: rerun previous 1 failure*",
                            "*<Function test_gate_0_env>*"])
    assert "test_gate_1" not in r.stdout.str()
    r = project.runpytest(*ARGS, "--ff", "--co")
    r.stdout.fnmatch_lines(["run-last-failure: rerun previous 1 failure first*"])
    r = project.runpytest(*ARGS, "--lf", "--cache-clear", "--co")  # forgotten
    assert "rerun previous" not in r.stdout.str()
    r.stdout.fnmatch_lines(["*<Function test_gate_7_ensemble>*"])


def test_stepwise_stops_at_the_failing_step_and_resumes_there(project, monkeypatch):
    project.makepyfile(test_zz_user="""
        import os

        def test_user_check():
            assert os.environ.get("USER_CHECK_FIXED"), "the user's check fails"
    """)
    r = project.runpytest(*ARGS, "--sw", "-k", "gate_0 or user")
    r.assert_outcomes(passed=1, failed=1)
    r.stdout.fnmatch_lines(["*Interrupted: Test failed, continuing from this test next run*"])
    monkeypatch.setenv("USER_CHECK_FIXED", "1")
    r = project.runpytest(*ARGS, "--sw", "-k", "gate_0 or user")
    r.stdout.fnmatch_lines(["stepwise: skipping * already passed items*"])
    r.assert_outcomes(passed=1, deselected=9)  # gate 0 was not run again


@pytest.mark.parametrize("args", [("--co", "-q"), ("--fixtures",), ("--markers",),
                                  ("--cache-show",), ("--help",), ("--version",),
                                  ("--fixtures-per-test",)])
def test_information_commands_train_nothing_start_nothing_write_nothing(project, no_helpers,
                                                                          args):
    reports = project.path / "reports"
    reports.mkdir()
    (reports / "report.json").write_text('{"a finished run": true}')
    r = project.runpytest(*ARGS, *args)
    assert r.ret == 0, r.stdout.str() + r.stderr.str()
    assert [p.name for p in reports.iterdir()] == ["report.json"]
    assert (reports / "report.json").read_text() == '{"a finished run": true}'
    assert no_helpers == []
    assert not (project.path / ".moola-cache").exists()
    assert "moola gates" not in r.stdout.str()


def test_cache_show_shows_the_last_failures(project, smoke_copy):
    _break_gate_0(smoke_copy)
    project.runpytest("--profile", "smoke", f"--data={smoke_copy}", "-k", "gate_0")
    r = project.runpytest(*ARGS, "--cache-show")
    r.stdout.fnmatch_lines(["*cache/lastfailed contains:*", "*test_gate_0_env*"])


def test_each_gate_is_recorded_when_it_finishes_and_once_per_session(project):
    # a second test of gate 0 (a user's extra check) and a probe that reads the outputs while
    # the session is still running
    project.makepyfile(test_gate_0_again="""
        import pytest

        @pytest.mark.gate("gate_0_env")
        def test_gate_0_again(gate):
            assert gate.passed
    """, test_zz_probe="""
        import json
        from pathlib import Path

        def test_outputs_mid_run():
            reports = Path("reports")
            log = [json.loads(l) for l in (reports / "gated_workflow_results.jsonl").open()]
            assert [r["gate"] for r in log] == ["gate_0_env"]
            report = json.loads((reports / "report.json").read_text())
            assert report["in_progress"] is True
            assert [t["metadata"]["gate"] for t in report["tests"]] == ["gate_0_env"] * 2
    """)
    r = project.runpytest(*ARGS, "-k", "gate_0 or probe", "-p", "no:randomly")
    r.assert_outcomes(passed=3, deselected=8)
    assert [x["gate"] for x in read_results(project.path)] == ["gate_0_env"]  # once
    final = json.loads((project.path / "reports" / "report.json").read_text())
    assert "in_progress" not in final and final["summary"]["passed"] == 3
