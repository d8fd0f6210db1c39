"""The pytest plugin, tested with pytester on copies of the real gates_tests/ suite.

These sessions run gate 0 only (no training), so they are fast; the trained chain is covered
by gates_tests itself (smoke profile) and by test_gate_reruns.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

# Inline pytester sessions restore sys.modules afterwards; C extensions such as torch cannot be
# imported twice in one process, so everything the gates import is loaded here first.
import moola.data  # noqa: F401
import moola.gates  # noqa: F401
import moola.train  # noqa: F401
from moola.testing import SUITE_INI, read_results, write_gate_suite

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "fixtures" / "smoke"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A directory laid out like the repo: conftest registering the plugin + gates_tests."""
    write_gate_suite(pytester.path)
    return pytester


def _records(p: pytest.Pytester) -> list[dict]:
    return read_results(p.path)


def test_report_header_shows_resolved_settings(project):
    r = project.runpytest("--profile", "smoke", "--seed", "5", "--max-epochs", "3", "--co",
                          f"--data={SMOKE}")
    r.stdout.fnmatch_lines(["moola: run * profile=smoke data=*smoke* accelerator=auto seed=5*",
                            "moola: train max_epochs=3 *"])
    assert r.ret == 0


def test_ini_values_apply_and_command_line_wins(project):
    (project.path / "pytest.ini").write_text(
        SUITE_INI + "moola_profile = smoke\nmoola_seed = 11\nmoola_max_epochs = 4\n")
    r = project.runpytest("--co", "--max-epochs", "9", f"--data={SMOKE}")
    r.stdout.fnmatch_lines(["*profile=smoke*seed=11*", "moola: train max_epochs=9 *"])


def test_unknown_gates_config_key_is_a_usage_error(project):
    cfg = project.path / "gates.toml"
    cfg.write_text("[gates]\nprobe_min_macro_f1 = 0.6\nbogus = 1\n")
    r = project.runpytest("--profile", "smoke", f"--gates-config={cfg}", "--co")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*gates.toml: unknown key 'gates.bogus'*allowed keys*"])


def test_wrong_type_on_command_line_names_the_source(project):
    r = project.runpytest("--profile", "smoke", "--seed", "seventeen", "--co")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*command line: 'run.seed': expected an integer, got 'seventeen'*"])


def test_original_layout_passes_gate_0_and_is_logged_once(project):
    r = project.runpytest("--profile", "smoke", "-k", "gate_0",
                          "--data=" + str(REPO / "fixtures" / "original_layout"))
    r.assert_outcomes(passed=1, deselected=8)
    recs = _records(project)
    assert [(x["gate"], x["status"]) for x in recs] == [("gate_0_env", "passed")]
    rec = recs[0]
    for field in ("run_id", "timestamp", "model", "config", "metrics", "comparison", "status",
                  "reason", "duration_s", "artifacts"):
        assert field in rec
    assert rec["config"]["run"]["profile"] == "smoke"
    report = json.loads((project.path / "reports" / "report.json").read_text())
    assert report["tests"][0]["metadata"]["verdict"]["status"] == "passed"


def test_bad_data_fails_gate_0_and_downstream_gate_is_skipped_with_the_reason(
        project, smoke_copy):
    df = pd.read_parquet(smoke_copy / "labeled.parquet")
    df = df.drop(columns=["label"])
    df.to_parquet(smoke_copy / "labeled.parquet")
    # -k gate_6: gate 0 is not selected, yet its failure must stop gate 6 with its reason
    r = project.runpytest("--profile", "smoke", "-k", "gate_6", f"--data={smoke_copy}", "-rs")
    r.assert_outcomes(skipped=1, deselected=8)
    r.stdout.fnmatch_lines(["*needs gate_0_env, which failed*labeled.parquet*label*"])
    recs = _records(project)
    assert [(x["gate"], x["status"]) for x in recs] == [("gate_6_baseline_simplelstm",
                                                        "skipped")]
    assert "labeled.parquet" in recs[0]["reason"]


def test_summary_table_lists_each_gate(project):
    r = project.runpytest("--profile", "smoke", "-k", "gate_0", f"--data={SMOKE}")
    r.stdout.fnmatch_lines(["*moola gates*", "gate*status*rule behind the status*",
                            "gate_0_env*PASS*"])


def test_results_log_is_written_once_by_the_xdist_controller(project):
    r = project.runpytest_subprocess("--profile", "smoke", "-k", "gate_0", "-n", "2",
                                     f"--data={SMOKE}")
    r.assert_outcomes(passed=1)
    assert [x["gate"] for x in _records(project)] == ["gate_0_env"]


def test_the_plugin_loads_without_xdist(project):
    # xdist's hooks are registered only where xdist is loaded: otherwise pytest refuses the
    # plugin ("unknown hook 'pytest_configure_node'")
    r = project.runpytest_subprocess("-p", "no:xdist", "--profile", "smoke", "-k", "gate_0",
                                     f"--data={SMOKE}")
    r.assert_outcomes(passed=1)
    assert [x["gate"] for x in _records(project)] == ["gate_0_env"]


def test_gate_test_without_marker_is_a_clear_error(project):
    project.makepyfile(test_bad="def test_x(gate):\n    assert gate.passed\n")
    r = project.runpytest("--profile", "smoke", "test_bad.py")
    r.stdout.fnmatch_lines(["*needs @pytest.mark.gate*"])


def test_report_json_is_written_atomically_by_moola(project, monkeypatch):
    import moola.io_utils

    written = []
    real = moola.io_utils.atomic_write_bytes

    def recording(path, data, **kw):
        written.append(Path(path).name)
        return real(path, data, **kw)

    monkeypatch.setattr(moola.io_utils, "atomic_write_bytes", recording)
    r = project.runpytest("--profile", "smoke", "-k", "gate_0", f"--data={SMOKE}", "-v")
    r.assert_outcomes(passed=1, deselected=8)
    assert "report.json" in written  # through temp file + os.replace, not the library's open/write
    r.stdout.fnmatch_lines(["*report saved to: *reports/report.json"])
    assert "auto-save skipped" not in r.stdout.str()
    report = json.loads((project.path / "reports" / "report.json").read_text())
    assert report["summary"]["passed"] == 1 and report["tests"][0]["metadata"]["gate"] == "gate_0_env"
    assert not list((project.path / "reports").glob(".report.json.*"))


def test_pytest_s_footer_counts_inconclusive_and_warned_gates_apart_from_passed(project):
    project.makepyfile(test_gate_9_mine='''
        from moola.gates import gate, verdict

        @gate("gate_9_unsure", after="gate_0_env")
        def test_gate_9_unsure():
            return verdict(True, "cannot be told", status="inconclusive")

        @gate("gate_9_warned", after="gate_0_env")
        def test_gate_9_warned():
            return verdict(True, "careful", status="warning")
    ''')
    r = project.runpytest("--profile", "smoke", f"--data={SMOKE}", "-k", "gate_0 or gate_9",
                          "-p", "no:randomly")
    assert r.ret == 0  # the chain continues on these verdicts: the exit code says so
    r.stdout.fnmatch_lines(["*1 passed*1 inconclusive, 1 warned*"])
    r.stdout.fnmatch_lines(["gates: 1 passed, 1 inconclusive, 1 warned, 0 failed, 0 skipped"])
