"""status.json: merged updates, JSON-safe values, tolerant reads, never a torn file."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from moola.report.status import StatusWriter, read_status

REPO = Path(__file__).resolve().parents[2]


def test_update_merges_and_stamps(tmp_path):
    path = tmp_path / "status.json"
    w = StatusWriter(path, run_id="r1", gate="gate_1")
    w.update(phase="train", step=3, loss=np.float32(0.5))
    state = w.update(step=4, lr=1e-3, last_eval={"timed_out": True, "metrics": {"v": float("nan")}})
    on_disk = read_status(path)
    assert on_disk == state
    assert on_disk["run_id"] == "r1" and on_disk["gate"] == "gate_1"
    assert on_disk["phase"] == "train" and on_disk["step"] == 4 and on_disk["loss"] == 0.5
    assert on_disk["last_eval"]["metrics"]["v"] is None  # NaN is not JSON
    assert on_disk["pid"] == os.getpid() and on_disk["host"]
    assert on_disk["updated_at"].endswith("+00:00")
    assert math.isclose(on_disk["updated_unix"], time.time(), abs_tol=60)


def test_bad_phase_lists_allowed(tmp_path):
    w = StatusWriter(tmp_path / "s.json", "r", "g")
    with pytest.raises(ValueError, match="train, eval, done, failed"):
        w.update(phase="running")


@pytest.mark.parametrize("content", [None, "", "{not json", "[1, 2]", "\xff\xfe"])
def test_read_status_tolerant(tmp_path, content):
    path = tmp_path / "status.json"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    assert read_status(path) is None


def test_read_status_partial_fields(tmp_path):
    path = tmp_path / "status.json"
    path.write_text('{"step": null, "gate": "g"}')
    assert read_status(path) == {"step": None, "gate": "g"}


WRITER = """
import sys
from moola.report.status import StatusWriter
w = StatusWriter(sys.argv[1], "run", "gate")
for i in range(int(sys.argv[2])):
    w.update(phase="train", step=i, loss=1.0 / (i + 1), note="x" * (i % 500))
"""


def test_reads_never_see_a_torn_file_while_another_process_rewrites(tmp_path):
    path = tmp_path / "status.json"
    StatusWriter(path, "run", "gate").update(phase="train", step=-1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "2000"], env=env)
    reads, steps = 0, set()
    try:
        while proc.poll() is None or reads < 200:
            data = json.loads(path.read_text())  # strict: a torn file would raise here
            steps.add(data["step"])
            reads += 1
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert read_status(path)["step"] == 1999
    assert reads >= 200 and len(steps) > 1


def test_gate_can_be_switched_on_a_shared_writer(tmp_path):
    w = StatusWriter(tmp_path / "status.json", "r", "")
    w.gate = "gate_4"
    assert w.update(step=1)["gate"] == "gate_4" and w.gate == "gate_4"


def test_throttled_writer_merges_but_writes_phase_changes_at_once(tmp_path):
    path = tmp_path / "status.json"
    w = StatusWriter(path, "r", "g", min_interval_s=60)
    w.update(phase="train", step=1)  # the first update is always written
    w.update(step=2)  # same phase, too soon: merged, not written
    assert read_status(path)["step"] == 1 and w.state["step"] == 2
    w.update(phase="eval")  # a phase change is written at once, with everything merged
    on_disk = read_status(path)
    assert on_disk["phase"] == "eval" and on_disk["step"] == 2
    w.update(step=3)
    assert read_status(path)["step"] == 2
    w.flush()
    assert read_status(path)["step"] == 3
    before = read_status(path)["updated_unix"]
    w.flush()  # nothing pending: no rewrite
    assert read_status(path)["updated_unix"] == before


def test_throttled_writer_writes_again_once_the_interval_passed(tmp_path):
    path = tmp_path / "status.json"
    w = StatusWriter(path, "r", "g", min_interval_s=0.05)
    w.update(phase="train", step=1)
    time.sleep(0.06)
    w.update(step=2)
    assert read_status(path)["step"] == 2
