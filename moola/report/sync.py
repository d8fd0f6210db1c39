"""Background result sync (``--sync-cmd``): make results visible elsewhere while training runs.

Seed 002: a run nobody could see, because the copy to the laptop was an afterthought run from
the laptop side, and the busy machine did not answer. Here the training process itself *pushes*:
after every checkpoint / evaluation it calls :meth:`SyncRunner.trigger`, which starts the user's
shell command (e.g. ``rsync -a {reports}/ laptop:moola-reports/``) in the background.

Rules:
* ``trigger`` never blocks training: the command runs in a daemon thread + child process;
* triggers that arrive while a sync runs are coalesced into one follow-up sync;
* a failing command (non-zero exit, not found, hung past ``run_timeout``) is logged with its
  output to the sync log and as a ``logging`` warning, and never raises;
* ``close()`` runs one final sync (after any in flight) and waits a bounded time for it.

The command gets ``MOOLA_SYNC_REASON`` (why it runs: "checkpoint", "eval", "final", ...) and
``MOOLA_REPORTS`` in its environment; ``{reports}`` in the command is replaced by the (shell-quoted)
reports directory.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shlex
import signal
import subprocess
import threading
from pathlib import Path

log = logging.getLogger(__name__)

OUTPUT_TAIL_CHARS = 2000  # how much of a failing command's output goes into the warning


class SyncRunner:
    """Runs `cmd` in the background on :meth:`trigger`, coalescing, never raising.

    Args:
        cmd: shell command; empty or blank -> a no-op runner (``enabled`` is False).
        log_path: file the command's stdout/stderr and one header line per run are appended to.
        reports_dir: substituted for ``{reports}``; default: the directory of `log_path`.
        run_timeout: seconds after which a hung sync is killed (its process group), so one stuck
            rsync cannot block every later sync; None = never.
    """

    def __init__(self, cmd: str | None, log_path: str | Path, reports_dir: str | Path | None = None,
                 run_timeout: float | None = 900.0) -> None:
        self.log_path = Path(log_path)
        self.reports_dir = Path(reports_dir) if reports_dir is not None else self.log_path.parent
        raw = (cmd or "").strip()
        self.cmd = raw.replace("{reports}", shlex.quote(str(self.reports_dir))) if raw else ""
        if run_timeout is not None and not run_timeout > 0:
            raise ValueError(f"run_timeout must be a positive number of seconds or None, got {run_timeout!r}")
        self.run_timeout = run_timeout
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._busy = False
        self._pending: str | None = None
        self._closed = False
        self._proc: subprocess.Popen | None = None
        # counters, for tests and the end-of-run summary
        self.runs = 0
        self.failures = 0
        self.coalesced = 0
        self.last_returncode: int | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cmd)

    def trigger(self, reason: str = "") -> None:
        """Start a sync now, or once the running one finishes. Returns at once; never raises."""
        if not self.enabled:
            return
        with self._lock:
            if self._closed:
                log.debug("sync trigger %r after close() ignored", reason)
                return
            self._start_or_queue(reason)

    def _start_or_queue(self, reason: str) -> None:
        """Under self._lock: run now if idle, else remember the newest reason for one follow-up."""
        if self._busy:
            if self._pending is not None:
                self.coalesced += 1
            self._pending = reason
            return
        self._busy = True
        self._idle.clear()
        try:
            threading.Thread(target=self._worker, args=(reason,), name="moola-sync", daemon=True).start()
        except RuntimeError as exc:  # cannot start a thread (interpreter shutting down)
            self._busy = False
            self._idle.set()
            log.warning("sync not started (%s): %s", reason, exc)

    def _worker(self, reason: str) -> None:
        """Run syncs until no trigger is pending."""
        while True:
            try:
                self._run_once(reason)
            except Exception as exc:  # never let a sync problem escape into training
                self.failures += 1
                log.warning("sync (%s) failed unexpectedly: %r", reason, exc)
            with self._lock:
                if self._pending is None:
                    self._busy = False
                    self._idle.set()
                    return
                reason, self._pending = self._pending, None

    def _run_once(self, reason: str) -> None:
        self.runs += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        env = dict(os.environ, MOOLA_SYNC_REASON=reason, MOOLA_REPORTS=str(self.reports_dir))
        with open(self.log_path, "ab") as fh:
            fh.write(f"--- {stamp} sync ({reason or 'no reason given'}): {self.cmd}\n".encode())
            fh.flush()
            start = fh.tell()
            try:
                proc = subprocess.Popen(
                    self.cmd, shell=True, stdin=subprocess.DEVNULL, stdout=fh,
                    stderr=subprocess.STDOUT, env=env, start_new_session=True,
                )
            except OSError as exc:
                self.failures += 1
                self.last_returncode = None
                fh.write(f"--- could not start: {exc}\n".encode())
                log.warning("sync command could not start (%s): %s; command: %s", reason, exc, self.cmd)
                return
            self._proc = proc
            timed_out = False
            try:
                rc = proc.wait(timeout=self.run_timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                rc = proc.wait()
            self._proc = None
            self.last_returncode = rc
            if rc == 0 and not timed_out:
                fh.write(b"--- ok\n")
                return
            self.failures += 1
            what = (f"hung for more than {self.run_timeout:g} s and was killed" if timed_out
                    else f"exited with status {rc}" + (" (command not found)" if rc == 127 else ""))
            fh.write(f"--- failed: {what}\n".encode())
        output = _read_from(self.log_path, start)
        log.warning(
            "sync command %s (%s); training goes on. command: %s\noutput (tail): %s\nfull log: %s",
            what, reason, self.cmd, output[-OUTPUT_TAIL_CHARS:].strip() or "(none)", self.log_path,
        )

    @property
    def running(self) -> bool:
        """True while a sync is running or queued."""
        return not self._idle.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no sync is running or queued; False if `timeout` passed first."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 60.0) -> bool:
        """Run one final sync (after any in flight) and wait up to `timeout` seconds for it.

        Returns True when everything finished in time. A sync still running after the timeout is
        left to finish on its own (it runs in its own session) and is reported as a warning.
        """
        if not self.enabled:
            return True
        with self._lock:
            if self._closed:
                return self._idle.is_set()
            self._start_or_queue("final")
            self._closed = True
        if self._idle.wait(timeout):
            return True
        proc = self._proc
        log.warning(
            "final sync still running after %g s%s; leaving it to finish in the background "
            "(log: %s)", timeout, f" (pid {proc.pid})" if proc else "", self.log_path,
        )
        return False


def _kill_group(proc: subprocess.Popen) -> None:
    """Terminate the hung sync's whole process group (the shell and e.g. its ssh child)."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        if grace is None:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
