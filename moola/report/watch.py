"""``moola status [--watch]``: what a run is doing now, read from ``reports/status.json``.

Shows the current gate and phase, a progress bar, loss / lr / throughput / ETA, the last
evaluation, and the gates of this run already recorded in the results log. Every field of the
status file may be missing or null (a run that crashed early, an older writer): unknown values
print as "—" and nothing raises.

Exit codes: 0 the run is live or finished, 1 it looks stalled or its process is gone (or the
status file cannot be read), 2 there is no status file.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moola.report.results import (
    gate_sort_key,
    latest_by_gate,
    latest_run_id,
    parse_timestamp,
    read_records,
    results_path,
)

DASH = "—"
STATUS_FILENAME = "status.json"
FINISHED_PHASES = ("done", "failed")
EXIT_OK, EXIT_STALE, EXIT_MISSING = 0, 1, 2
BAR_WIDTH = 30


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _read_status_fallback(path: Path) -> dict[str, Any] | None:
    """Tolerant reader used until ``moola.report.status.read_status`` exists."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def load_status(path: str | Path) -> dict[str, Any] | None:
    """The status file as a dict, or None when it is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        from moola.report.status import read_status  # the writer's own tolerant reader
    except ImportError:
        read_status = _read_status_fallback
    try:
        data = read_status(path)
    except Exception:  # a reader bug must not hide the run: fall back to plain JSON
        data = _read_status_fallback(path)
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------------------------------------
# Formatting helpers (all accept None / junk and return "—")
# ---------------------------------------------------------------------------------------------


def num(x: Any) -> float | None:
    """A finite float from a number or numeric string; None otherwise (bools are not numbers)."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt_num(x: Any, spec: str = ".4g") -> str:
    v = num(x)
    return DASH if v is None else format(v, spec)


def fmt_int(x: Any) -> str:
    v = num(x)
    return DASH if v is None else f"{int(v):,}"


def human_duration(seconds: Any) -> str:
    """42 s, 12 min 5 s, 3 h 20 min, 2 d 4 h; "—" when unknown."""
    s = num(seconds)
    if s is None:
        return DASH
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec} s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def progress_bar(done: Any, total: Any, width: int = BAR_WIDTH) -> str:
    """``[#######.......]  45.0%``; an empty bar with "—" when the total is unknown."""
    d, t = num(done), num(total)
    if d is None or t is None or t <= 0:
        return "[" + "." * width + "]     " + DASH
    frac = min(1.0, max(0.0, d / t))
    filled = int(round(frac * width))
    return "[" + "#" * filled + "." * (width - filled) + f"] {100 * frac:5.1f}%"


def _text(x: Any) -> str:
    if x is None or (isinstance(x, str) and not x.strip()):
        return DASH
    return str(x)


def _fmt_metric_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if num(v) is not None:
        return fmt_num(v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(num(e) is not None for e in v):
        return f"[{fmt_num(v[0], '.3g')}, {fmt_num(v[1], '.3g')}]"
    if v is None:
        return DASH
    return None  # nested: not shown on one line


def format_metrics(metrics: Any, limit: int = 8) -> str:
    """``val_loss 0.45  val_macro_f1 0.61`` from a flat-ish metrics dict (nested values skipped)."""
    if not isinstance(metrics, dict) or not metrics:
        return DASH
    parts = []
    for k, v in metrics.items():
        s = _fmt_metric_value(v)
        if s is not None:
            parts.append(f"{k} {s}")
    if not parts:
        return DASH
    more = f"  (+{len(parts) - limit} more)" if len(parts) > limit else ""
    return "  ".join(parts[:limit]) + more


# ---------------------------------------------------------------------------------------------
# Liveness
# ---------------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    try:  # Linux: an exited but unreaped child is a zombie, not a live run
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _status_time(status: dict[str, Any]) -> float | None:
    t = num(status.get("updated_unix"))
    return t if t is not None else parse_timestamp(status.get("updated_at"))


@dataclass
class Liveness:
    """state: live | done | failed | stale | crashed | unknown; message: one line for a person."""

    state: str
    message: str
    age_s: float | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.state in ("live", "done", "failed") else EXIT_STALE


def assess(status: dict[str, Any], now: float | None = None, stale_after: float = 120.0,
           host: str | None = None) -> Liveness:
    """Decide whether the run behind a status file is live, finished, stalled or gone."""
    now = time.time() if now is None else now
    host = socket.gethostname() if host is None else host
    phase = status.get("phase")
    t = _status_time(status)
    age = None if t is None else max(0.0, now - t)
    ago = DASH if age is None else f"{human_duration(age)} ago"
    if phase == "done":
        return Liveness("done", f"finished (last update {ago})", age)
    if phase == "failed":
        return Liveness("failed", f"finished with a failure (last update {ago})", age)

    pid = status.get("pid")
    pid = int(pid) if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None
    local = pid is not None and isinstance(status.get("host"), str) and status["host"] == host
    # a dead local pid is definitive (pid reuse can only make a dead run look alive, never the
    # reverse), so report it without waiting for the stale timeout
    if local and not pid_alive(pid):
        return Liveness(
            "crashed",
            f"process {pid} is gone: the run crashed or was killed (last update {ago})",
            age,
        )
    if age is None:
        if local:
            return Liveness("live", f"process {pid} is running (the status file has no update time)")
        return Liveness(
            "unknown",
            "cannot tell whether the run is alive: the status file has no updated_unix/updated_at"
            + ("" if pid is None else f" and pid {pid} is not on this host"),
        )
    if age > stale_after:
        return Liveness(
            "stale",
            f"no update for {human_duration(age)}: the run looks stalled "
            f"(--stale-after {human_duration(stale_after)})",
            age,
        )
    return Liveness("live", f"running (last update {ago})", age)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _progress_lines(s: dict[str, Any]) -> list[str]:
    step, total = s.get("step"), s.get("total_steps")
    epoch, max_epochs = s.get("epoch"), s.get("max_epochs")
    where = f"step {fmt_int(step)}/{fmt_int(total)}   epoch {fmt_int(epoch)}/{fmt_int(max_epochs)}"
    if num(step) is not None and num(total):
        bar = progress_bar(step, total)
    else:
        bar = progress_bar(epoch, max_epochs)
    thr = num(s.get("throughput"))
    thr_s = DASH if thr is None else f"{thr:,.0f} samples/s" if thr >= 100 else f"{thr:.3g} samples/s"
    return [
        f"progress  {bar}   {where}",
        f"loss {fmt_num(s.get('loss'))}   lr {fmt_num(s.get('lr'), '.3g')}   "
        f"throughput {thr_s}   ETA {human_duration(s.get('eta_s'))}",
    ]


def _eval_line(ev: Any) -> str:
    if not isinstance(ev, dict) or not ev:
        return f"last eval  {DASH}"
    head = f"last eval  step {fmt_int(ev.get('step'))}, epoch {fmt_int(ev.get('epoch'))}"
    if ev.get("at"):
        head += f", at {ev['at']}"
    if ev.get("timed_out") is True:
        return head + ": timed out (evaluation abandoned after the eval timeout; training went on)"
    gap = num(ev.get("train_val_gap"))
    gap_s = DASH if gap is None else f"{gap:+.4g}"
    return f"{head}: {format_metrics(ev.get('metrics'))}   train/val gap {gap_s}"


def _gates_table(records: list[dict[str, Any]], run_id: str | None,
                 live_gates: Any = None) -> list[str]:
    # gates finished so far in a live run are in status.json ("gates"); the results log is
    # written at the end of the session, so it only knows earlier and finished runs
    live = {g: v for g, v in live_gates.items() if isinstance(v, dict)} \
        if isinstance(live_gates, dict) else {}
    if not records and not live:
        return ["finished gates  " + DASH + " (no results log yet)"]
    note = ""
    if run_id is None:
        run_id = latest_run_id(records)
        note = " (status file has no run_id: showing the newest run in the log)"
    rows = latest_by_gate(records, run_id) if records else {}
    for gate, v in live.items():
        rows.setdefault(gate, v)
    if not rows:
        return [f"finished gates  {DASH} (none recorded for run {run_id})"]
    out = [f"finished gates of run {run_id}{note}:"]
    width = max(len("gate"), *(len(g) for g in rows))
    out.append(f"  {'gate':<{width}}  {'status':<8}  {'duration':>11}  reason")
    for gate in sorted(rows, key=gate_sort_key):
        r = rows[gate]
        reason = _text(r.get("reason")).replace("\n", " ")
        if len(reason) > 110:
            reason = reason[:107] + "..."
        out.append(
            f"  {gate:<{width}}  {_text(r.get('status')):<8}  "
            f"{human_duration(r.get('duration_s')):>11}  {reason}"
        )
    return out


def render(status: dict[str, Any], records: list[dict[str, Any]], liveness: Liveness) -> str:
    """The text `moola status` prints for one status file."""
    pid, host = status.get("pid"), status.get("host")
    lines = [
        f"run {_text(status.get('run_id'))}   gate {_text(status.get('gate'))}   "
        f"phase {_text(status.get('phase'))}",
        f"state {liveness.state}: {liveness.message}   "
        f"[pid {_text(pid)} on {_text(host)}, updated {_text(status.get('updated_at'))}]",
    ]
    lines += _progress_lines(status)
    lines.append(_eval_line(status.get("last_eval")))
    lines.append("")
    rid = status.get("run_id") if isinstance(status.get("run_id"), str) else None
    lines += _gates_table(records, rid, status.get("gates"))
    return "\n".join(lines)


def missing_message(path: Path) -> str:
    return (
        f"no status file at {path}: no run has written one there.\n"
        f"Start a run with `make gates` (or `pytest gates_tests --profile smoke`), or pass the "
        f"reports directory of an existing run: `moola status DIR`."
    )


def snapshot(reports: Path, stale_after: float, now: float | None = None) -> tuple[str, int, str]:
    """(text, exit code, state) for one look at a reports directory."""
    path = reports / STATUS_FILENAME
    if not path.exists():
        return missing_message(path), EXIT_MISSING, "missing"
    status = load_status(path)
    if status is None:
        return (
            f"status file {path} exists but is not a readable JSON object; "
            f"the writer may be broken (look at the run's log)",
            EXIT_STALE,
            "unreadable",
        )
    records = read_records(results_path(reports))
    live = assess(status, now=now, stale_after=stale_after)
    return render(status, records, live), live.exit_code, live.state


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moola status",
        description="Show what a moola run is doing, from REPORTS_DIR/status.json and the results "
        "log. Exit 0: live or finished; 1: stalled, crashed or unreadable; 2: no status file.",
    )
    p.add_argument("reports", nargs="?", default="reports", metavar="REPORTS_DIR",
                   help="reports directory of the run (default: reports)")
    p.add_argument("--watch", action="store_true",
                   help="refresh until the run is done, failed or stale (Ctrl-C to leave)")
    p.add_argument("--interval", type=_positive, default=2.0, metavar="S",
                   help="seconds between refreshes with --watch (default: 2)")
    p.add_argument("--stale-after", type=_positive, default=120.0, metavar="S",
                   help="a run with no status update for this long looks stalled (default: 120)")
    return p


def status_main(argv: list[str] | None = None) -> int:
    """Entry point of ``moola status``; returns the exit code."""
    args = build_parser().parse_args(argv)
    reports = Path(args.reports)
    out = sys.stdout
    clear = args.watch and out.isatty()
    try:
        while True:
            text, code, state = snapshot(reports, args.stale_after)
            if clear:
                out.write("\x1b[H\x1b[2J")
            stamp = _dt.datetime.now().strftime("%H:%M:%S")
            out.write(text + (f"\n\n(refreshed {stamp}, every {args.interval:g} s; Ctrl-C to leave)"
                              if args.watch and state == "live" else "") + "\n")
            out.flush()
            if not args.watch or state != "live":
                return code
            time.sleep(args.interval)
    except KeyboardInterrupt:
        out.write("\n")
        return EXIT_OK
