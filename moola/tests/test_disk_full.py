"""A full disk (issue 15, part 2): a clear message naming the directory, the file and the space
needed; no torn record, no half-published cache entry; what was finished is kept, and a rerun
after space is freed continues from it.

The writers are tested with an injected ENOSPC; whole gate sessions with a real full
filesystem: a small tmpfs mounted over the scratch project's ``reports/`` or ``.moola-cache/``
(needs root, as on the development and CI machines; skipped elsewhere).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from moola import io_utils
from moola.diskspace import DiskFullError, as_disk_full, human_bytes, writing
from moola.report import jsonl
from moola.report.results import append_records, results_path, scan_records
from moola.testing import SMOKE_DATA, run_gate_session, write_gate_suite

SESSION = ("--profile", "smoke", f"--data={SMOKE_DATA}", "-k", "gate_0 or gate_1")


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ---------------------------------------------------------------------------------------------
# the writers, with an injected ENOSPC
# ---------------------------------------------------------------------------------------------


def test_atomic_write_on_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "reports" / "report.json"
    io_utils.atomic_write_text(target, "old")

    class _Full:
        def __init__(self, fd, mode):
            self.fh = open(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[:10])  # a partial write, then the disk is full
            _enospc()

    monkeypatch.setattr(io_utils.os, "fdopen", _Full)
    with pytest.raises(DiskFullError) as err:
        io_utils.atomic_write_text(target, "x" * 5000)
    monkeypatch.undo()
    msg = str(err.value)
    assert f"writing {target} (4.9 KB needed, " in msg and f"free in {target.parent})" in msg
    assert "free space there" in msg and "rerun" in msg
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]  # no temp file


def test_append_on_a_full_disk_cuts_the_partial_line_and_keeps_the_records(tmp_path, monkeypatch):
    path = results_path(tmp_path / "reports")
    append_records(path, [{"run_id": "a", "gate": "gate_0_env", "status": "passed"}])
    before = path.read_bytes()
    real_write = os.write

    class _OS:  # the module's `os`: half a line gets written, then the disk is full
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def write(fd, data):
            real_write(fd, bytes(data[: len(data) // 2]))
            _enospc()

    monkeypatch.setattr(jsonl, "os", _OS())
    with pytest.raises(DiskFullError) as err:
        append_records(path, [{"run_id": "b", "gate": "gate_1_smoke_enhanced",
                               "status": "passed", "reason": "x" * 1000}])
    monkeypatch.undo()
    assert f"writing {path} (" in str(err.value)
    assert path.read_bytes() == before  # no torn line: the partial record was cut off
    append_records(path, [{"run_id": "c", "gate": "gate_0_env", "status": "passed"}])
    res = scan_records(path)
    assert [r["run_id"] for r in res.records] == ["a", "c"] and res.skipped == []


def test_disk_full_helpers():
    with pytest.raises(DiskFullError):
        with writing("/nonexistent/dir/file.bin", 10):
            _enospc()
    with pytest.raises(PermissionError):  # other errors pass through unchanged
        with writing("x"):
            raise PermissionError(errno.EACCES, "denied")
    quota = as_disk_full(OSError(errno.EDQUOT, "quota", "/tmp/q.bin"), [])
    assert "disk quota exceeded writing /tmp/q.bin" in str(quota)
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KB"


# ---------------------------------------------------------------------------------------------
# whole sessions on a real full filesystem (tmpfs)
# ---------------------------------------------------------------------------------------------


def _mount_tmpfs(where: Path, size_kb: int) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): needs root")


@pytest.fixture
def small_fs(tmp_path):
    """mount(where, size_kb): a tmpfs over a scratch project's directory, unmounted after."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the CI and development machines have it)")
    mounted: list[Path] = []

    def mount(where: Path, size_kb: int) -> Path:
        _mount_tmpfs(where, size_kb)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(directory: Path, leave_bytes: int = 0) -> Path:
    """Fill `directory`'s filesystem, leaving `leave_bytes` free. The session under test may
    write between the free-space reading and this write; a full disk is the aim, so running
    out of space here ends the filling (what was written stays)."""
    filler = directory / f"filler-{uuid.uuid4().hex[:6]}"
    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
    left = memoryview(b"\0" * max(free - leave_bytes, 0))
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: nothing left to flush on close
        while left:
            try:
                left = left[fh.write(left):]
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


def _session(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "")}
    return run_gate_session(root, *SESSION, env={k: v for k, v in env.items() if v})




@pytest.mark.slow
def test_reports_full_ends_the_run_clearly_keeps_the_records_and_a_rerun_continues(tmp_path,
                                                                                   small_fs):
    root = write_gate_suite(tmp_path / "project")
    # 600 KB: two runs of gates 0-1 with their plots and exported model (about 60 KB each)
    reports = small_fs(root / "reports", 600)
    first = _session(root)  # room for everything: two records
    assert first.returncode == 0, first.stdout[-3000:]
    log = results_path(reports)
    kept = scan_records(log).records
    # gates 0 and 1, and the decision made at the session's end from them
    assert [r["gate"] for r in kept] == ["gate_0_env", "gate_1_smoke_enhanced", "decision"]
    filler = _fill(reports, leave_bytes=6_000)  # room for about one record
    r = _session(root)
    out = r.stdout
    assert r.returncode != 0, out[-3000:]
    assert "moola: disk full" in out and f"no space left on device writing {reports}/" in out
    assert "Traceback" not in out and "OSError" not in out, out[-3000:]
    res = scan_records(log)
    assert res.skipped == [] and not res.torn_final_line  # no torn record
    assert res.records[:3] == kept  # every record already written is kept
    filler.unlink()  # space freed: the rerun continues (gate 1 from the cache) and passes
    again = _session(root)
    assert again.returncode == 0, again.stdout[-3000:]
    res = scan_records(log)
    assert res.records[:3] == kept and res.skipped == []
    assert [r["gate"] for r in res.records[-3:]] == ["gate_0_env", "gate_1_smoke_enhanced",
                                                    "decision"]
    assert json.loads((reports / "report.json").read_text())["exitcode"] == 0


def _ckpt_epoch(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


@pytest.mark.slow
def test_cache_full_mid_training_publishes_nothing_and_the_rerun_resumes(tmp_path, small_fs):
    root = write_gate_suite(tmp_path / "project")
    cache = small_fs(root / ".moola-cache", 64_000)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", *SESSION], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # once the second replica has checkpointed, the disk fills up (as a full disk would)
    deadline, ckpt, filler = time.monotonic() + 300, None, None
    while proc.poll() is None and time.monotonic() < deadline and filler is None:
        done = list(cache.glob("baseline/.*.work/*/done.json"))
        ckpts = [p for p in cache.glob("baseline/.*.work/*/checkpoints/last.pt")
                 if not (p.parent.parent / "done.json").exists()]
        if done and ckpts:
            ckpt = ckpts[0]
            filler = _fill(cache)
        time.sleep(0.01)
    out = proc.communicate(timeout=300)[0]
    assert filler is not None, f"no second replica checkpointed before the end: {out[-3000:]}"
    assert proc.returncode != 0, out[-3000:]
    assert f"disk full: no space left on device writing {cache}/baseline/" in out, out[-3000:]
    recs = scan_records(results_path(root / "reports")).records
    assert recs[-1]["gate"] == "gate_1_smoke_enhanced" and recs[-1]["status"] == "failed"
    assert recs[-1]["reason"].startswith("disk full: no space left on device writing ")
    assert "free space there" in recs[-1]["reason"]
    # nothing half-published: no manifest, no temporary build directory
    assert not list(cache.glob("baseline/*/manifest.json"))
    assert not list(cache.glob("baseline/.*.tmp-*"))
    epoch = _ckpt_epoch(ckpt)  # the checkpoint written before the disk filled is whole
    replica = ckpt.parent.parent.name
    filler.unlink()
    again = _session(root)
    assert again.returncode == 0, again.stdout[-3000:]
    (artifact,) = [p.parent for p in cache.glob("baseline/*/manifest.json")]
    fits = {f["replica"]: f for f in json.loads((artifact / "replicas.json").read_text())}
    assert fits[replica]["resumed_from_epoch"] == epoch + 1, fits[replica]
