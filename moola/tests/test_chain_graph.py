"""The chain as a graph of needs, in real smoke sessions: a failed optional step (gate 5, no
pseudo-sample survives `augment.quality_min = 1.0`) skips only what needs it, `gates.skip`
leaves a gate out on purpose, and the decision is made in every session, under `-x` too, and
alone from the cache with `-k decision`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from moola.testing import cache_events, read_results, run_gate_session, write_gate_suite

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "fixtures" / "smoke"

pytestmark = pytest.mark.slow


def _session(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run_gate_session(root, "--profile", "smoke", f"--data={SMOKE}", *args)


def _run(root: Path) -> dict[str, dict]:
    """The last run's records by gate."""
    recs = read_results(root)
    run = recs[-1]["run_id"]
    return {r["gate"]: r for r in recs if r["run_id"] == run}


def _report(root: Path) -> dict:
    return json.loads((root / "reports" / "report.json").read_text())


@pytest.fixture(scope="module")
def failed_augment(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A scratch project after `-x` stopped the chain at gate 5 (no pseudo-sample survives)."""
    root = write_gate_suite(tmp_path_factory.mktemp("graph"))
    (root / "strict.toml").write_text("[augment]\nquality_min = 1.0\n")
    (root / "skip.toml").write_text('[augment]\nquality_min = 1.0\n'
                                    '[gates]\nskip = ["gate_5_augment"]\n')
    return root, _session(root, "-x", "--gates-config=strict.toml")


def test_x_stops_at_the_failed_gate_and_the_decision_is_still_made(failed_augment):
    root, r = failed_augment
    assert r.returncode == 1, r.stdout[-3000:]
    recs = _run(root)
    assert recs["gate_5_augment"]["status"] == "failed"
    reason = recs["gate_5_augment"]["reason"]
    assert "no pseudo-sample survived the filters" in reason
    assert "augment.quality_min = 1.0" in reason and "gates.skip" in reason, reason
    assert "accepted pseudo-samples differ" not in reason  # none was accepted
    assert "gate_6_baseline_simplelstm" not in recs  # -x stopped the session
    d = recs["decision"]
    assert "made at the end of the session" in d["reason"]
    assert d["metrics"]["recommended"] in (None, "baseline", "control", "finetuned")
    assert "augmented" in d["metrics"]["candidates"]
    assert not d["metrics"]["candidates"]["augmented"]["eligible"]
    # pretraining judged against the same recipe from a random encoder, and reported as a step
    g4 = recs["gate_4_finetune_enhanced"]["comparison"]
    assert g4["pretraining"]["reference"] == "random_init" and g4["builds_on"]
    assert d["metrics"]["steps"]["pretraining"]["reference"] == "random_init"
    report = _report(root)
    assert report["decision"]["recommended"] == d["metrics"]["recommended"]
    assert r.stdout.index("moola decision") < r.stdout.index("moola gates")


def test_a_failed_optional_gate_skips_only_what_needs_it(failed_augment):
    root, _ = failed_augment
    r = _session(root, "--gates-config=strict.toml", "-k",
                 "gate_5 or gate_6 or gate_7 or decision")
    recs = _run(root)
    assert recs["gate_5_augment"]["status"] == "failed", r.stdout[-3000:]
    assert recs["gate_6_baseline_simplelstm"]["status"] != "skipped"
    assert recs["gate_7_ensemble"]["status"] != "skipped", recs["gate_7_ensemble"]["reason"]
    assert "augmented" in recs["gate_7_ensemble"]["metrics"]["excluded"]
    assert recs["decision"]["status"] in ("passed", "failed")
    assert "made at the end" not in recs["decision"]["reason"]  # it ran as a test


def test_gates_skip_leaves_a_gate_out_and_the_rest_runs(failed_augment):
    root, _ = failed_augment
    r = _session(root, "--gates-config=skip.toml", "-k", "gate_5 or gate_6 or decision")
    recs = _run(root)
    g5 = recs["gate_5_augment"]
    assert g5["status"] == "skipped", r.stdout[-3000:]
    assert g5["reason"] == "skipped: left out on purpose (gates.skip)"
    assert recs["gate_6_baseline_simplelstm"]["status"] != "skipped"
    assert "augmented" in recs["decision"]["metrics"]["not_candidates"]
    assert "left out on purpose" in r.stdout


def test_the_decision_reruns_alone_from_the_cache(failed_augment):
    root, _ = failed_augment
    r = _session(root, "--gates-config=strict.toml", "-k", "decision")
    assert r.returncode in (0, 1), r.stdout[-3000:]
    recs = _run(root)
    assert list(recs) == ["decision"]
    run = recs["decision"]["run_id"]
    assert {e["event"] for e in cache_events(root, run)} <= {"hit"}  # nothing trained
    assert _report(root)["decision"]["recommended"] == recs["decision"]["metrics"]["recommended"]
    st = subprocess.run([sys.executable, "-m", "moola.cli", "status", str(root / "reports")],
                        capture_output=True, text=True, timeout=60)
    assert "decision: deploy" in st.stdout, st.stdout  # moola status says it too


def test_an_unknown_gate_in_gates_skip_is_a_usage_error(tmp_path):
    root = write_gate_suite(tmp_path)
    (root / "bad.toml").write_text('[gates]\nskip = ["gate_5_augmnet"]\n')
    r = _session(root, "--gates-config=bad.toml", "--co")
    assert r.returncode == 4
    assert "gates.skip names 'gate_5_augmnet', which is not a declared gate" in r.stderr
    (root / "bad2.toml").write_text('[gates]\nparsimony_order = ["contrl", "baseline"]\n')
    r = _session(root, "--gates-config=bad2.toml", "--co")
    assert r.returncode == 4 and "gates.parsimony_order names 'contrl'" in r.stderr, r.stderr


def test_under_xdist_the_session_end_decision_is_made_from_the_workers_records(failed_augment):
    root, _ = failed_augment
    r = _session(root, "-n", "2", "-k", "gate_0 or gate_1")
    assert r.returncode == 0, r.stdout[-3000:]
    recs = _run(root)
    assert set(recs) == {"gate_0_env", "gate_1_smoke_enhanced", "decision"}
    d = recs["decision"]
    assert "made at the end of the session" in d["reason"]
    assert list(d["metrics"]["candidates"]) == ["baseline"]  # what this session judged
    assert _report(root)["decision"]["recommended"] == d["metrics"]["recommended"]
