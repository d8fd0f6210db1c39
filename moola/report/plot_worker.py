"""Draw a session's PNGs in a separate process, so that training never waits for matplotlib.

Importing matplotlib and rendering two figures cost ~1.2 s per gate on the session's critical
path (measured, docs/PERFORMANCE.md). A gate session instead starts this module as a child
process once it knows gates will run (``python -m moola.report.plot_worker LOG``), sends it one JSON
line per figure on stdin, and at the end of the session closes stdin and waits for it: the
figures are drawn on the core the (single-threaded) training leaves idle.

Protocol: one JSON object per line, ``{"kind": "learning_curves" | "confusion_matrix", ...}``
with the keyword arguments of :func:`moola.report.plots.plot_learning_curves` /
:func:`~moola.report.plots.plot_confusion_matrix`. A figure that fails is appended, with its
traceback, to the log file named on the command line (``reports/plots.log``; created only then),
and the worker goes on with the next one: plots are a view of the results, never a verdict.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KINDS = ("learning_curves", "confusion_matrix")


class PlotWorker:
    """Client side: a child process that draws the figures it is sent.

    ``PlotWorker.start(log_path)`` returns None (and logs why) when matplotlib is not installed
    or the process cannot start; callers then draw nothing, as before.
    """

    def __init__(self, proc: subprocess.Popen, log_path: Path) -> None:
        self.proc, self.log_path = proc, log_path
        self.sent = 0

    @classmethod
    def start(cls, log_path: str | os.PathLike) -> "PlotWorker | None":
        if importlib.util.find_spec("matplotlib") is None:
            log.warning("plots skipped: matplotlib is not installed; install the 'plots' extra: "
                        "pip install 'moola[plots]'")
            return None
        log_path = Path(log_path)
        try:  # the worker writes `log_path` only when a figure fails
            proc = subprocess.Popen([sys.executable, "-m", "moola.report.plot_worker",
                                     str(log_path)], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as exc:
            log.warning("plots skipped: could not start the plot process (%s)", exc)
            return None
        return cls(proc, log_path)

    def submit(self, kind: str, **kwargs: Any) -> bool:
        """Queue one figure; False (logged) when the process has gone away."""
        if kind not in KINDS:
            raise ValueError(f"plot kind {kind!r}; allowed: {', '.join(KINDS)}")
        line = json.dumps({"kind": kind, **kwargs}, default=os.fspath) + "\n"
        try:
            self.proc.stdin.write(line.encode("utf-8"))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            log.warning("plot process exited early (code %s); see %s", self.proc.poll(),
                        self.log_path)
            return False
        self.sent += 1
        return True

    def close(self, timeout: float = 120.0) -> bool:
        """No more figures: wait up to `timeout` s for the queued ones. True when all drew."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            log.warning("plot process did not finish %d figure(s) within %.0f s; killed; see %s",
                        self.sent, timeout, self.log_path)
            code = None
        if code not in (0, None):
            log.warning("plot process exited with code %s; see %s", code, self.log_path)
        return code == 0


def draw(job: dict[str, Any]) -> Path | None:
    """Draw one figure described by `job` (the protocol above)."""
    from moola.report import plots

    job = dict(job)
    kind = job.pop("kind", None)
    if kind == "learning_curves":
        return plots.plot_learning_curves(**job)
    if kind == "confusion_matrix":
        return plots.plot_confusion_matrix(**job)
    raise ValueError(f"plot kind {kind!r}; allowed: {', '.join(KINDS)}")


def serve(lines: Any, log_path: Path) -> int:
    """Draw every job read from `lines`; returns how many failed (each one is appended to
    `log_path`, which is created only then)."""
    failed = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            draw(json.loads(line))
        except Exception:  # one bad figure must not cost the others
            failed += 1
            _log_failure(log_path, f"plot failed for {line.strip()[:300]}")
    return failed


def _log_failure(log_path: Path, what: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {what}\n{traceback.format_exc()}\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    log_path = Path(args[0] if args else "plots.log")
    try:
        os.nice(5)  # training comes first when both want the same core
    except OSError:
        pass
    try:
        warm_up()
    except Exception:
        _log_failure(log_path, "plot process could not load matplotlib")
        return 2
    return 1 if serve(sys.stdin, log_path) else 0


def warm_up() -> None:
    """Load matplotlib and its fonts now, while the first gate trains, not when its figures
    are due (plots.py imports matplotlib lazily, on the first figure)."""
    from moola.report import plots

    api = plots._figure_api()
    if api is not None:
        Figure, Canvas = api
        fig = Figure(figsize=(1, 1))
        fig.subplots().set_title("warm-up")
        Canvas(fig).draw()


if __name__ == "__main__":
    sys.exit(main())
