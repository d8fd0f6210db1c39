"""Crashes: a gate session SIGKILLed mid-training, and a writer SIGKILLed mid-append.

What a kill may leave behind, and what it may not:

* no complete artifact: a killed build has no ``manifest.json``, so nothing half-trained is
  ever served (``moola.cache``);
* no lost results: the controller appends each gate's record as soon as the gate is over, so a
  session killed in gate 3 has recorded gates 0-2; a writer killed inside ``append_records``
  leaves at worst an unterminated last line that readers skip and the next append closes;
* the build's workdir (``<cache>/<kind>/.<key>.work/checkpoints/last.pt``) survives, and the
  next session's build resumes training from it instead of starting over;
* a published artifact damaged afterwards (a truncated file) is never served: the next session
  moves it aside, rebuilds it, and the verdict says so.

Every session is a real ``pytest`` subprocess over a copy of gates_tests/ in a scratch project
(``moola.testing``, as in test_gate_reruns.py), killed with SIGKILL on its whole process group.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from moola.report.results import append_records, read_records, results_path, scan_records
from moola.testing import SMOKE_DATA, cache_events, run_gate_session, write_gate_suite

SESSION_ARGS = ("--profile", "smoke", f"--data={SMOKE_DATA}")

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------------------------
# helpers: a scratch project, sessions that can be killed, what a kill left behind
# ---------------------------------------------------------------------------------------------


def _ckpt_epoch(path: Path) -> int | None:
    """Epoch stored in a checkpoint, or None if it cannot be read (yet)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:
        return None


@dataclass
class Kill:
    """What a SIGKILLed session left: its checkpoint's epoch and its output."""

    kind: str
    epoch: int  # epoch of last.pt after the kill (0-based)
    workdir: Path
    output: str


def _kill_when_checkpointed(root: Path, kind: str, *args: str, timeout: float = 300) -> Kill:
    """Start a session; SIGKILL its process group once `kind`'s build wrote last.pt."""
    log = root / f"killed-{kind}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", *SESSION_ARGS, *args],
                                cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    # pretraining checkpoints in the work directory; a classifier in a replica's subdirectory
    patterns = [f"{kind}/.*.work/checkpoints/last.pt", f"{kind}/.*.work/*/checkpoints/last.pt"]
    pattern = " or ".join(patterns)
    deadline = time.monotonic() + timeout
    found = None
    try:
        while found is None and proc.poll() is None and time.monotonic() < deadline:
            hits = [h for p in patterns for h in (root / ".moola-cache").glob(p)]
            found = hits[0] if hits else None
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the session and anything it started
        proc.wait(30)
    output = log.read_text()
    assert found is not None, (
        f"no {pattern} appeared before the session ended (rc {proc.returncode}); output:\n"
        f"{output[-3000:]}")
    assert proc.returncode == -signal.SIGKILL, f"the session was not killed: {output[-2000:]}"
    epoch = _ckpt_epoch(found)
    assert epoch is not None, f"{found} is unreadable after the kill (it is written atomically)"
    return Kill(kind, epoch, found.parent.parent, output)


def _complete_artifacts(cache: Path, kind: str) -> list[Path]:
    """Key directories of `kind` holding a manifest (what the cache would serve)."""
    d = cache / kind
    return [p for p in d.glob("*/manifest.json") if not p.parent.name.startswith(".")] \
        if d.exists() else []


def _assert_log_whole(root: Path) -> list[dict]:
    res = scan_records(results_path(root / "reports"))
    assert res.skipped == [] and not res.torn_final_line, res.skipped
    return res.records


CHAIN = ["gate_0_env", "gate_1_smoke_enhanced", "gate_2_control_minirocket",
         "gate_3_pretrain_bilstm", "gate_4_finetune_enhanced"]


def _gate_records(root: Path) -> list[dict]:
    """The whole log's records without the decisions made at each session's end."""
    return [r for r in _assert_log_whole(root) if r["gate"] != "decision"]


def _events(root: Path, run_id: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in cache_events(root, run_id):
        out.setdefault(e["kind"], []).append(e["event"])
    return out


def _epoch_end_rows(metrics_csv: Path) -> list[int]:
    with open(metrics_csv, newline="") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh) if r.get("train_loss_epoch")]


# ---------------------------------------------------------------------------------------------
# gate sessions killed mid-training, then rerun (one scratch project, built up in order)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_gate_suite(tmp_path_factory.mktemp("faults"))


@pytest.fixture(scope="module")
def pretrain_killed(project) -> Kill:
    """The whole chain, killed once gate 3's pretraining checkpointed (gates 0-2 finished)."""
    return _kill_when_checkpointed(project, "encoder", "-x")


@pytest.fixture(scope="module")
def pretrain_rerun(project, pretrain_killed) -> subprocess.CompletedProcess:
    return run_gate_session(project, *SESSION_ARGS, "-k", "gate_3")


@pytest.fixture(scope="module")
def finetune_killed(project, pretrain_rerun) -> Kill:
    """`-k gate_4` with gates 0-3 cached, killed once finetuning checkpointed."""
    assert pretrain_rerun.returncode == 0, pretrain_rerun.stdout[-3000:]
    return _kill_when_checkpointed(project, "finetuned", "-k", "gate_4")


@pytest.fixture(scope="module")
def finetune_rerun(project, finetune_killed) -> subprocess.CompletedProcess:
    return run_gate_session(project, *SESSION_ARGS, "-k", "gate_4")


def test_sigkill_during_pretraining_serves_nothing_then_gate_3_resumes(project, pretrain_killed,
                                                                        pretrain_rerun):
    cache = project / ".moola-cache"
    # the killed session: only finished upstream artifacts are complete, no results written
    assert _complete_artifacts(cache, "baseline") and _complete_artifacts(cache, "control")
    r = pretrain_rerun
    assert r.returncode == 0, r.stdout[-3000:]
    (encoder,) = _complete_artifacts(cache, "encoder")
    report = json.loads((encoder.parent / "report.json").read_text())
    assert report["resumed_from_epoch"] == pretrain_killed.epoch + 1, (
        f"pretraining was killed after epoch {pretrain_killed.epoch}; the rerun should resume "
        f"at {pretrain_killed.epoch + 1}, report.json says {report['resumed_from_epoch']}")
    assert [h["epoch"] for h in report["history"]] == list(range(report["epochs_run"]))
    assert not pretrain_killed.workdir.exists()  # removed once the artifact was published
    *killed, rec = _gate_records(project)
    # the killed session's finished gates were recorded as each finished; gate 3's was not
    assert [r["gate"] for r in killed] == CHAIN[:3]
    assert len({r["run_id"] for r in killed}) == 1 and killed[0]["run_id"] != rec["run_id"]
    assert rec["gate"] == "gate_3_pretrain_bilstm" and rec["status"] in ("passed", "inconclusive", "warning"), rec["reason"]
    ev = _events(project, rec["run_id"])
    # gate 3 needs gates 0 and 1 (not the control): only their work is read, from the cache
    assert set(ev["baseline"]) == {"hit"} and ev["encoder"] == ["build"] and "control" not in ev


def test_sigkill_during_finetuning_serves_nothing(project, finetune_killed):
    cache = project / ".moola-cache"
    assert _complete_artifacts(cache, "finetuned") == [], "a killed build was published"
    assert (finetune_killed.workdir / "checkpoints" / "last.pt").is_file()
    assert finetune_killed.epoch >= 0
    recs = _gate_records(project)
    assert [r["gate"] for r in recs] == CHAIN[:4]  # the kill wrote no gate-4 record
    # the live status file names the dead process (exit 1: crashed), readable by `moola status`
    st = subprocess.run([sys.executable, "-m", "moola.cli", "status", str(project / "reports")],
                        capture_output=True, text=True, timeout=60)
    assert st.returncode == 1 and "crashed or was killed" in st.stdout, st.stdout + st.stderr


def test_gate_4_rerun_after_sigkill_resumes_from_the_checkpoint_and_passes(
        project, finetune_killed, finetune_rerun):
    r = finetune_rerun
    assert r.returncode == 0, r.stdout[-3000:]
    recs = _gate_records(project)
    rec = recs[-1]
    assert rec["gate"] == "gate_4_finetune_enhanced" and rec["status"] in ("passed", "inconclusive", "warning"), rec["reason"]
    (artifact,) = _complete_artifacts(project / ".moola-cache", "finetuned")
    # the replica that was training when the kill came resumed from its last checkpoint
    replica = finetune_killed.workdir.name
    (fit,) = [r for r in json.loads((artifact.parent / "replicas.json").read_text())
              if r["replica"] == replica]
    assert fit["resumed_from_epoch"] == finetune_killed.epoch + 1, (
        f"killed after epoch {finetune_killed.epoch}; replicas.json says resumed_from_epoch="
        f"{fit['resumed_from_epoch']} for {replica}")
    # the history is whole: epochs from the killed session, then the rerun's
    assert [h["epoch"] for h in fit["history"]] == list(range(fit["epochs_run"]))
    assert _epoch_end_rows(artifact.parent / "replicas" / f"{replica}.csv") == \
        list(range(fit["epochs_run"]))
    ev = _events(project, rec["run_id"])
    # upstream from the cache (judged by gates 3 and 4, so hit more than once); gate 4 built
    # gate 4 built once (its model export then reads it: a hit)
    assert set(ev["encoder"]) == set(ev["baseline"]) == {"hit"}
    assert ev["finetuned"][0] == "build" and "build" not in ev["finetuned"][1:], ev["finetuned"]
    assert not finetune_killed.workdir.exists()


@pytest.fixture(scope="module")
def damaged_rerun(project, finetune_rerun) -> tuple[Path, subprocess.CompletedProcess]:
    """Gate 4's published artifact truncated on disk (a bad copy), then `-k gate_6`."""
    assert finetune_rerun.returncode == 0, finetune_rerun.stdout[-3000:]
    (artifact,) = _complete_artifacts(project / ".moola-cache", "finetuned")
    pooled = artifact.parent / "pooled.npz"
    pooled.write_bytes(pooled.read_bytes()[: pooled.stat().st_size // 2])
    return artifact.parent, run_gate_session(project, *SESSION_ARGS, "-k", "gate_6")


def test_a_damaged_entry_is_moved_aside_and_rebuilt_and_the_verdict_says_so(project,
                                                                              damaged_rerun):
    entry, r = damaged_rerun
    assert r.returncode == 0, r.stdout[-3000:]
    rec = _gate_records(project)[-1]
    assert rec["gate"] == "gate_6_baseline_simplelstm" and rec["status"] != "skipped", rec
    note = f"rebuilt: entry finetuned/{entry.name} failed its checksum (pooled.npz has"
    assert note in rec["reason"], rec["reason"]
    assert rec["artifacts"]["cache_repairs"][0].startswith(note)
    (aside,) = (entry.parent / ".damaged").iterdir()
    assert aside.name.startswith(entry.name) and (aside / "pooled.npz").is_file()
    ev = [e for e in cache_events(project, rec["run_id"]) if e["kind"] == "finetuned"]
    assert [e["event"] for e in ev][:2] == ["damaged", "build"], ev
    assert "pooled.npz has" in ev[0]["detail"]
    (rebuilt,) = _complete_artifacts(project / ".moola-cache", "finetuned")
    assert rebuilt.parent == entry  # same inputs, same key: rebuilt in place, and served next


# ---------------------------------------------------------------------------------------------
# the results log: a writer killed mid-append
# ---------------------------------------------------------------------------------------------

_APPENDER = textwrap.dedent("""
    import os, sys, time
    import moola.report.jsonl as jsonl
    import moola.report.results as results
    path, flag = sys.argv[1], sys.argv[2]
    real_write, stall = os.write, []

    class _OS:  # the module's `os`; with `stall` set, a line gets half written, then we hang
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def write(fd, data):
            if not stall or len(data) < 2:
                return real_write(fd, data)
            n = real_write(fd, bytes(data[: len(data) // 2]))  # a short write, as a signal
            open(flag, "w").close()                             # can cause one
            time.sleep(120)
            return n

    jsonl.os = _OS()  # the appender behind append_records
    pad = "x" * 20_000
    for i in range(100_000):
        if i == 6:
            stall.append(True)  # the 7th record: killed mid-line while holding the lock
        results.append_records(path, [{"run_id": "victim", "gate": f"gate_{i % 8}",
                                       "status": "passed", "reason": pad, "seq": i}])
""")


def test_sigkill_mid_append_leaves_whole_records_and_the_log_stays_usable(tmp_path):
    reports = tmp_path / "reports"
    path = results_path(reports)
    flag = tmp_path / "mid-line"
    proc = subprocess.Popen([sys.executable, "-c", _APPENDER, str(path), str(flag)],
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert flag.exists(), f"the writer never reached its 7th record (rc {proc.poll()})"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    before = scan_records(path)
    assert not path.read_bytes().endswith(b"\n")  # the kill landed mid-line
    assert [r["seq"] for r in before.records] == list(range(6))  # whole records only
    assert all(r["reason"] == "x" * 20_000 for r in before.records)
    assert before.torn_final_line and len(before.skipped) == 1, before.skipped
    # a new session's append starts on a line of its own
    append_records(path, [{"run_id": "next", "gate": "gate_0_env", "status": "passed",
                           "reason": "after the kill"}])
    after = scan_records(path)
    assert after.records[:-1] == before.records
    assert after.records[-1]["run_id"] == "next" and after.records[-1]["reason"] == "after the kill"
    assert not after.torn_final_line and path.read_bytes().endswith(b"\n")
    assert len(after.skipped) == 1 and "not valid JSON" in after.skipped[0]  # closed, not merged
    assert read_records(path) == after.records
    # the tools still read it: a finished run's status, and the HTML report of the new run
    from moola.report.status import StatusWriter

    StatusWriter(reports / "status.json", run_id="next", gate="gate_0_env").update(phase="done")
    for cmd in (["status", str(reports)], ["report", "--reports", str(reports)]):
        out = subprocess.run([sys.executable, "-m", "moola.cli", *cmd], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, f"moola {' '.join(cmd)}: {out.stdout}{out.stderr}"
    assert "after the kill" in (reports / "report.html").read_text()
