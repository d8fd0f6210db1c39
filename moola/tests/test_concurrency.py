"""Concurrency: the chain under pytest-xdist, and two sessions sharing one reports/ and cache.

* ``pytest -n 2`` judges every gate exactly as a serial run does (same statuses, metrics and
  comparisons, same seed), trains the shared encoder once, and writes each results record once
  (the controller writes the log; workers only compute);
* two sessions started at once on the same project both finish; the results log keeps every
  record of both whole; the baseline is built under the file lock, once per run (each run
  selected gate 1, so each rebuilds it for itself, one after the other), and each run's verdict
  rests on a complete artifact that run built.

Real ``pytest`` subprocesses in scratch projects (``moola.testing``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from moola.testing import SMOKE_DATA, cache_events, write_gate_suite

NOT_7 = ("-k", "not gate_7")
CHAIN_0_6 = [  # and the decision, which judges gate 7 from the cache (it uses every gate)
    "gate_0_env", "gate_1_smoke_enhanced", "gate_2_control_minirocket", "gate_3_pretrain_bilstm",
    "gate_4_finetune_enhanced", "gate_5_augment", "gate_6_baseline_simplelstm", "decision"]

pytestmark = pytest.mark.slow


def _start(root: Path, *args: str) -> subprocess.Popen:
    """A smoke session in `root`, its output going to a log file there (never a full pipe)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "--profile", "smoke",
           f"--data={SMOKE_DATA}", *args]
    n = len(list(root.glob("session-*.log")))
    with open(root / f"session-{n}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    proc.log = Path(log.name)  # type: ignore[attr-defined]
    return proc


def _finish(*procs: subprocess.Popen, timeout: float = 900) -> None:
    """Wait for every session; each must pass (exit 0). Kills what is left on a failure."""
    try:
        for p in procs:
            p.wait(timeout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(30)
    for p in procs:
        assert p.returncode == 0, (f"{' '.join(map(str, p.args[3:]))} exited {p.returncode}:\n"
                                   f"{p.log.read_text()[-4000:]}")


def _lines(root: Path) -> list[dict]:
    """Every line of the results log; each must be one valid JSON record."""
    raw = (root / "reports" / "gated_workflow_results.jsonl").read_bytes()
    assert raw.endswith(b"\n"), "the results log ends inside a line"
    return [json.loads(line) for line in raw.splitlines()]


def _events(root: Path, run_id: str, kind: str) -> list[str]:
    return [e["event"] for e in cache_events(root, run_id) if e["kind"] == kind]


def _judged(rec: dict, root: Path) -> dict:
    """What a verdict says (not how long it took, nor in which project directory)."""
    said = json.dumps({k: rec[k] for k in ("status", "reason", "metrics", "comparison", "model")})
    return json.loads(said.replace(str(root), "<project>"))


@pytest.fixture(scope="module")
def serial_and_xdist(tmp_path_factory) -> dict[str, Path]:
    """Gates 0-6 in two fresh projects, one serial and one with `-n 2`, run side by side."""
    serial = write_gate_suite(tmp_path_factory.mktemp("serial"))
    xdist = write_gate_suite(tmp_path_factory.mktemp("xdist"))
    # the xdist run exports the models too (off in smoke): each exactly once under -n 2
    _finish(_start(serial, *NOT_7), _start(xdist, "-n", "2", "--export-models", *NOT_7))
    return {"serial": serial, "xdist": xdist}


def test_xdist_judges_every_gate_like_a_serial_run(serial_and_xdist):
    roots = serial_and_xdist
    serial, xdist = (_lines(roots[k]) for k in ("serial", "xdist"))
    assert [r["gate"] for r in serial] == CHAIN_0_6
    assert sorted(r["gate"] for r in xdist) == sorted(CHAIN_0_6)  # one record each, none twice
    assert len({r["run_id"] for r in xdist}) == 1  # workers share the controller's run id
    by_gate = {r["gate"]: r for r in xdist}
    for s in serial:
        x = by_gate[s["gate"]]
        assert _judged(x, roots["xdist"]) == _judged(s, roots["serial"]), (
            f"{s['gate']}: -n 2 judged {x['status']} ({x['reason']}), serially "
            f"{s['status']} ({s['reason']})")
    assert all(r["status"] in ("passed", "warning", "inconclusive") for r in serial)
    f1 = {r["gate"]: r["metrics"]["macro_f1"] for r in xdist if "macro_f1" in (r["metrics"] or {})}
    assert set(f1) >= {"gate_1_smoke_enhanced", "gate_4_finetune_enhanced", "gate_5_augment",
                       "gate_6_baseline_simplelstm"}


def test_xdist_trains_each_artifact_once(serial_and_xdist):
    root = serial_and_xdist["xdist"]
    (run_id,) = {r["run_id"] for r in _lines(root)}
    for kind in ("baseline", "control", "encoder", "finetuned", "augmented", "simple"):
        events = _events(root, run_id, kind)
        assert events.count("build") == 1, f"{kind}: {events} (each artifact trained once)"
    # each approved model exported once, by the worker that ran its gate: one refit per model
    refits = [e["key"] for e in cache_events(root, run_id)
              if e["kind"] == "refit" and e["event"] == "build"]
    assert len(refits) == len(set(refits)) >= 4, refits
    models = root / "reports" / "runs" / run_id / "models"
    dirs = {p.name for p in models.iterdir() if p.is_dir()}
    assert {"augmented", "baseline", "control", "finetuned", "simple"} <= dirs <= {
        "augmented", "baseline", "control", "finetuned", "simple", "ensemble"}
    assert (models / "recommended.json").is_file()


def test_two_sessions_at_once_share_reports_and_cache_without_corruption(serial_and_xdist):
    root = serial_and_xdist["serial"]  # gates 0-6 already ran here: its records must survive
    before = _lines(root)
    sel = ("-k", "gate_0 or gate_1")
    _finish(_start(root, *sel), _start(root, *sel))
    lines = _lines(root)
    assert lines[: len(before)] == before
    new = lines[len(before):]
    runs = sorted({r["run_id"] for r in new})
    assert len(runs) == 2, f"expected records of two runs, got {runs}"
    builds = []
    for run_id in runs:
        mine = [r for r in new if r["run_id"] == run_id]
        assert sorted(r["gate"] for r in mine) == ["decision", "gate_0_env",
                                                   "gate_1_smoke_enhanced"]
        (g1,) = [r for r in mine if r["gate"] == "gate_1_smoke_enhanced"]
        assert g1["status"] == "passed", g1["reason"]
        art = g1["artifacts"]["baseline"]
        # gate 1 was selected in both runs, so each built it itself (once), under the lock
        assert art["built_by_run"] == run_id and art["cache_hit"] is False, art
        # built once (its model export then reads it back: a hit, even though the other
        # session may have rebuilt the same key meanwhile)
        ev = _events(root, run_id, "baseline")
        assert ev[0] == "build" and "build" not in ev[1:], ev
        builds.append(g1)
    # both verdicts rest on complete, equivalent artifacts (same key, same seed, same result)
    assert builds[0]["artifacts"]["baseline"]["key"] == builds[1]["artifacts"]["baseline"]["key"]
    assert _judged(builds[0], root) == _judged(builds[1], root)
    (earlier,) = [r for r in before if r["gate"] == "gate_1_smoke_enhanced"]
    assert _judged(builds[0], root) == _judged(earlier, root)
    key_dir = Path(builds[0]["artifacts"]["baseline"]["path"])
    manifest = json.loads((key_dir / "manifest.json").read_text())
    assert manifest["run_id"] in runs and sorted(manifest["files"]) == sorted(
        p.name for p in key_dir.iterdir() if p.name != "manifest.json")
    assert not list(key_dir.parent.glob(".*.tmp-*")), "a temporary build directory was left"
