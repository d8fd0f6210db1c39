"""Your own gates (issue 11): declared with @moola.gates.gate in a test file, they behave like
the built-in ones. Real pytest sessions (subprocesses) in one scratch project, smoke profile:

* the worked example of docs/WRITE_YOUR_OWN_GATE.md (examples/test_gate_8_minority_recall.py:
  the encoder and finetuned-model artifacts, after gate 4) runs in the chain's order and
  appears in the results log, report.json, the summary table, the HTML report and
  `moola status`;
* a user gate that trains a model of its own (artifacts.train_model) adds it to gate 7's
  ensemble;
* `-k gate_8` reruns it alone from the cache: nothing upstream is trained again;
* when gate 4 fails, gate 8 and a plain test using the `finetuned_model` fixture are skipped
  with gate 4's reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from moola.testing import (FAILING_GATE_4_CONFTEST, REPO, SMOKE_DATA, cache_events,
                           read_results, run_gate_session, write_gate_suite)

pytestmark = pytest.mark.slow
pytest_plugins = ["pytester"]

ARGS = ("--profile", "smoke", f"--data={SMOKE_DATA}", "-p", "no:randomly")

GATE_9 = textwrap.dedent('''
    """gate_9_tiny_lstm: a model of the user's own, trained with moola's protocol, that joins
    the ensemble."""
    from moola.gates import gate, verdict
    from moola.gates.artifacts import train_model


    def tiny(ctx):
        from moola.models import SimpleLSTM

        n_features, k = ctx.dataset.X.shape[2], len(ctx.dataset.classes)
        return train_model(ctx, "gate_9_tiny_lstm", "tiny",
                           lambda seed: SimpleLSTM(n_features, hidden=8, n_classes=k),
                           key_extra={"hidden": 8})


    @gate("gate_9_tiny_lstm", after="gate_1_smoke_enhanced", produces="tiny", producer=tiny,
          ensemble=True)
    def test_gate_9_tiny_lstm(tiny_model):
        """A tiny LSTM: any model that trained becomes an ensemble candidate."""
        assert tiny_model.proba.shape[1] == len(tiny_model.y), "one prediction per window"
        return verdict(True, f"tiny LSTM trained: {len(tiny_model.replicas)} replicas")
''')

PLAIN_TEST = textwrap.dedent('''
    def test_my_plain_check(finetuned_model):
        assert finetuned_model.proba.min() >= 0


    def test_my_model_is_a_fixture_too(tiny_model):  # declared by gate 9's produces="tiny"
        assert tiny_model.gate == "gate_9_tiny_lstm"
''')

# a gate that reads the ensemble: the artifact `ensemble_model`, produced by gate 7
GATE_10 = textwrap.dedent('''
    from moola.gates import gate, verdict


    @gate("gate_10_ensemble_members", after="gate_7_ensemble")
    def test_gate_10_ensemble_members(ensemble_model):
        members = sorted(ensemble_model.members)
        return verdict(len(members) >= 2, f"{len(members)} calibrated members: {members}",
                       metrics={"members": members})
''')

CONFTEST = FAILING_GATE_4_CONFTEST  # gate 4 fails on request (FAIL_GATE_4=1)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = write_gate_suite(tmp_path_factory.mktemp("user_gates"))
    shutil.copyfile(REPO / "examples" / "test_gate_8_minority_recall.py",
                    root / "test_gate_8_minority_recall.py")
    (root / "test_gate_9_tiny_lstm.py").write_text(GATE_9)
    (root / "test_zz_plain.py").write_text(PLAIN_TEST)
    (root / "test_gate_10_ensemble_members.py").write_text(GATE_10)
    (root / "conftest.py").write_text(CONFTEST)
    return root


@pytest.fixture(scope="module")
def full_run(project) -> subprocess.CompletedProcess:
    return run_gate_session(project, *ARGS, "--export-models")


def test_user_gates_run_in_chain_order_and_appear_in_every_output(project, full_run):
    r = full_run
    assert r.returncode == 0, r.stdout[-4000:]
    report = json.loads((project / "reports" / "report.json").read_text())
    ran = [t["nodeid"].split("::")[0] for t in report["tests"]]  # in the order they ran
    # declared after gates 4 and 1; gate 7 waits for gate 9 (an ensemble candidate)
    assert ran.index("test_gate_8_minority_recall.py") > ran.index("test_gate_4_finetune_enhanced.py")
    assert ran.index("test_gate_9_tiny_lstm.py") < ran.index("test_gate_7_ensemble.py")
    recs = {x["gate"]: x for x in read_results(project)}
    g8 = recs["gate_8_minority_recall"]
    assert g8["status"] == "passed" and "recall of the minority class" in g8["reason"], g8
    assert 0 <= g8["metrics"]["minority_recall"] <= 1
    assert g8["key_metric"]["name"] == "minority_recall"
    assert g8["config"]["run"]["profile"] == "smoke"  # the configuration echoed, as everywhere
    # gate 9's model joined the ensemble
    g7 = recs["gate_7_ensemble"]
    assert "tiny" in g7["metrics"]["approved"], g7["metrics"]["approved"]
    # each replica's seed and the epochs it could run and ran, in the verdict (one rule each)
    reps = recs["gate_1_smoke_enhanced"]["metrics"]["replica_epochs"]
    assert reps and all(0 < r["epochs_run"] <= r["max_epochs"] for r in reps.values()), reps
    assert sorted({r["seed"] for r in reps.values()}) == recs["gate_1_smoke_enhanced"]["metrics"]["seeds"]
    # a user gate reading the ensemble through the artifact `ensemble_model`
    g10 = recs["gate_10_ensemble_members"]
    assert g10["status"] == "passed", g10["reason"]
    assert set(g10["metrics"]["members"]) <= set(g7["metrics"]["approved"])
    # a user's model is a fixture as well as a judge parameter (one declaration)
    outcome = {t["nodeid"]: t["outcome"] for t in report["tests"]}
    assert outcome["test_zz_plain.py::test_my_model_is_a_fixture_too"] == "passed", outcome
    assert "tiny" in g7["metrics"]["ece"], g7["reason"]
    # a user gate's model is exported like a built-in one, its card scoring its predictions
    card = json.loads((Path(recs["gate_9_tiny_lstm"]["artifacts"]["model_export"]["path"])
                       / "card.json").read_text())
    assert card["gate"] == "gate_9_tiny_lstm" and 0 <= card["estimate"]["macro_f1"] <= 1
    # report.json, the summary table, the HTML report, moola status
    verdicts = {t["metadata"]["gate"]: t["metadata"].get("verdict") for t in report["tests"]
                if "gate" in t.get("metadata", {})}
    assert verdicts["gate_8_minority_recall"]["status"] == "passed"
    assert any(line.startswith("gate_8_minority_recall") and "PASS" in line
               for line in r.stdout.splitlines())
    html = subprocess.run([sys.executable, "-m", "moola.cli", "report", "--reports",
                           str(project / "reports")], capture_output=True, text=True, timeout=120)
    assert html.returncode == 0, html.stdout + html.stderr
    assert "gate_8_minority_recall" in (project / "reports" / "report.html").read_text()
    st = subprocess.run([sys.executable, "-m", "moola.cli", "status", str(project / "reports")],
                        capture_output=True, text=True, timeout=60)
    assert "gate_8_minority_recall" in st.stdout or "gate_9_tiny_lstm" in st.stdout, st.stdout


def test_a_user_gate_reruns_alone_from_the_cache(project, full_run):
    assert full_run.returncode == 0, full_run.stdout[-4000:]
    r = run_gate_session(project, *ARGS, "-k", "gate_8")
    assert r.returncode == 0, r.stdout[-3000:]
    rec = [r for r in read_results(project) if r["gate"] == "gate_8_minority_recall"][-1]
    assert rec["status"] == "passed"
    events = cache_events(project, rec["run_id"])
    assert events and {e["event"] for e in events} == {"hit"}, [(e["kind"], e["event"]) for e in events]  # nothing retrained
    st = subprocess.run([sys.executable, "-m", "moola.cli", "status", str(project / "reports")],
                        capture_output=True, text=True, timeout=60)
    assert "gate_8_minority_recall" in st.stdout, st.stdout


def test_a_failed_upstream_gate_skips_the_user_gate_and_fixtures_with_its_reason(project,
                                                                                 full_run):
    import os

    env = {**os.environ, "FAIL_GATE_4": "1"}
    r = run_gate_session(project, *ARGS, "-k", "gate_8 or plain", env=env)
    assert r.returncode == 0, r.stdout[-3000:]
    recs = read_results(project)
    g8 = [x for x in recs if x["gate"] == "gate_8_minority_recall"][-1]
    assert g8["status"] == "skipped"
    assert "skipped: needs gate_4_finetune_enhanced, which failed: pretraining hurts (forced by " \
        "the test)" in g8["reason"], g8["reason"]
    # the plain test's fixture skips with the producing gate's reason (-rs lists it)
    assert any("test_zz_plain.py" in line and "SKIPPED" in line and
               "needs gate_4_finetune_enhanced, which failed: pretraining hurts (forced by the test)"
               in line
               for line in r.stdout.splitlines()), r.stdout[-3000:]


def test_a_user_gate_gets_the_profile_timeout_and_no_dependency_marker(pytester):
    """The runner, not pytest-dependency, skips a gate whose needed gate did not pass (one
    wording, across xdist workers and deselection), so no dependency marker is generated."""
    write_gate_suite(pytester.path)
    shutil.copyfile(REPO / "examples" / "test_gate_8_minority_recall.py",
                    pytester.path / "test_gate_8_minority_recall.py")
    items, _ = pytester.inline_genitems("--profile", "smoke", f"--data={SMOKE_DATA}",
                                        "test_gate_8_minority_recall.py")
    (item,) = items
    assert item.get_closest_marker("timeout").args == (600,)
    assert item.get_closest_marker("dependency") is None


def test_an_undeclared_gate_marker_is_a_usage_error(pytester):
    write_gate_suite(pytester.path)
    pytester.makepyfile(test_gate_8_mine='''
        import pytest

        @pytest.mark.gate("gate_8_mine")
        def test_gate_8_mine(gate):
            assert gate.passed
    ''')
    r = pytester.runpytest("--profile", "smoke", f"--data={SMOKE_DATA}", "--co")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*gate 'gate_8_mine' is not declared; declare it with*"])




@pytest.mark.parametrize("judge, said", [
    ("def test_gate_8_bad(finetuned_modle):", "takes a parameter 'finetuned_modle', which is no "
                                              "declared artifact"),
    ("def test_gate_8_bad(simple_model):", "takes 'simple_model', which gate_6_baseline_simplelstm "
                                           "produces, but 'gate_8_bad' does not need "
                                           "gate_6_baseline_simplelstm; add "
                                           "after='gate_6_baseline_simplelstm'"),
])
def test_a_judge_parameter_that_is_no_upstream_artifact_is_a_usage_error(pytester, judge, said):
    """Checked when the gate is declared (collection), naming the file and line: never a
    failed gate, never an artifact built without its gate judged."""
    write_gate_suite(pytester.path)
    pytester.makepyfile(test_gate_8_bad=f'''
        from moola.gates import gate, verdict


        @gate("gate_8_bad", after="gate_4_finetune_enhanced")
        {judge}
            return verdict(True, "never")
    ''')
    r = pytester.runpytest("--profile", "smoke", f"--data={SMOKE_DATA}")
    assert r.ret == pytest.ExitCode.USAGE_ERROR, r.stdout.str()
    err = r.stderr.str()
    assert "test_gate_8_bad.py:4: gate 'gate_8_bad' " in err and said in err, err
    assert not (pytester.path / "reports" / "gated_workflow_results.jsonl").exists()


def test_pytest_fixtures_lists_the_artifacts_with_their_docstrings(pytester):
    write_gate_suite(pytester.path)
    r = pytester.runpytest("--profile", "smoke", f"--data={SMOKE_DATA}", "--fixtures")
    out = r.stdout.str()
    for name in ("moola_config", "dataset", "baseline_model", "control_model", "encoder",
                 "finetuned_model", "random_init_model", "augmented_model", "simple_model",
                 "ensemble_model"):
        assert f"{name} [session scope]" in out, name
    r.stdout.fnmatch_lines(["*Gate 3's pretrained encoder*",
                            "*Gate 4's EnhancedSimpleLSTM started from the pretrained encoder*"])


def test_an_artifact_of_your_own_is_a_judge_parameter_and_a_fixture(pytester):
    """moola.gates.artifact(...) declared once in a test module: the judge and a plain test
    both receive it; gate 0 is judged first (its producing gate)."""
    write_gate_suite(pytester.path)
    pytester.makepyfile(test_gate_8_windows='''
        from moola.gates import artifact, gate, verdict


        def windows_per_class(ctx):
            import numpy as np

            return np.bincount(ctx.dataset.y).tolist()


        artifact("windows_per_class", windows_per_class, gate="gate_0_env",
                 doc="Labeled windows per class.")


        @gate("gate_8_windows", after="gate_0_env")
        def test_gate_8_windows(windows_per_class):
            return verdict(min(windows_per_class) >= 2, f"per class: {windows_per_class}",
                           metrics={"per_class": windows_per_class})


        def test_plain(windows_per_class):
            assert sum(windows_per_class) > 0
    ''')
    r = pytester.runpytest("--profile", "smoke", f"--data={SMOKE_DATA}", "-p", "no:randomly",
                           "-k", "gate_0 or gate_8 or plain")
    r.assert_outcomes(passed=3)
    recs = {x["gate"]: x for x in read_results(pytester.path)}
    assert recs["gate_8_windows"]["status"] == "passed"
    assert sum(recs["gate_8_windows"]["metrics"]["per_class"]) > 0
