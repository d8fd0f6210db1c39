"""``moola status [--watch]``: where a run is, read from ``reports/status.json``.

Answers "where are we": the gate and its place in the chain ("4th of 8"), the gate's own
progress (a gate trains several replicas, seeds x folds: replica i of R and the share of the
gate done, not only the current replica's epoch), an ETA for the gate and, where earlier runs in
the results log tell how long the remaining gates take, for the chain; then the current
replica's loss, throughput and last evaluation, and the gates of this run already finished.
Every line fits the terminal width. Every field of the status file may be missing or null (a
run that crashed early, an older writer): unknown values print as "—" and nothing raises.

Exit codes: 0 the run is live or finished, 1 it looks stalled or its process is gone (or the
status file cannot be read), 2 there is no status file.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import shutil
import socket
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moola.report import fmt
from moola.report.fmt import DASH, human_duration, num
from moola.report.progress import FINISHED_PHASES, chain_of, finished_gates, ordinal, progress
from moola.report.results import (
    gate_sort_key,
    latest_by_gate,
    latest_run_id,
    parse_timestamp,
    read_records,
    results_path,
)
from moola.report.status import read_status

STATUS_FILENAME = "status.json"
EXIT_OK, EXIT_STALE, EXIT_MISSING = 0, 1, 2
BAR_WIDTH = 30  # at most; narrower terminals get a shorter bar
MIN_REASON_COLUMNS = 30  # a narrower reason column says nothing: the reason gets its own line


def progress_bar(done: Any, total: Any, width: int = BAR_WIDTH) -> str:
    """``[#######.......]  45.0%``; an empty bar with "—" when the total is unknown."""
    d, t = num(done), num(total)
    if d is None or t is None or t <= 0:
        return "[" + "." * width + "]     " + DASH
    frac = min(1.0, max(0.0, d / t))
    filled = int(round(frac * width))
    return "[" + "#" * filled + "." * (width - filled) + f"] {100 * frac:5.1f}%"


def format_metrics(metrics: Any, limit: int = 8) -> str:
    """``val_loss 0.45 · val_macro_f1 0.61`` from a flat-ish metrics dict (nested values
    skipped)."""
    if not isinstance(metrics, dict) or not metrics:
        return DASH
    parts = [f"{k} {fmt.number(v, '.4g')}" for k, v in metrics.items() if num(v) is not None]
    if not parts:
        return DASH
    more = f" (+{len(parts) - limit} more)" if len(parts) > limit else ""
    return " · ".join(parts[:limit]) + more


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
    pid = status.get("pid")
    pid = int(pid) if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None
    local = pid is not None and isinstance(status.get("host"), str) and status["host"] == host
    if phase in FINISHED_PHASES:
        # every fit and every gate ends with phase "done": while the session's process lives
        # and the chain has gates to go, the run is between two fits or two gates
        chain, finished = chain_of(status), finished_gates(status)
        if local and chain and not set(chain) <= set(finished) and pid_alive(pid):
            gate = fmt.text(status.get("gate"))
            what = (f"{gate} is over, the next gate is starting" if gate in finished else
                    f"a training of {gate} is over, the next one is starting")
            return Liveness("live", f"{what} (process {pid}, last update {ago})", age)
        if phase == "done":
            return Liveness("done", f"finished (last update {ago})", age)
        return Liveness("failed", f"finished with a failure (last update {ago})", age)
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
# Rendering (every line fits `width` columns)
# ---------------------------------------------------------------------------------------------


def terminal_width() -> int:
    """Columns of the terminal (COLUMNS when set; 100 when not a terminal)."""
    return max(40, shutil.get_terminal_size((100, 24)).columns)


def pack(first: str, segments: list[str], width: int, indent: int = 2, sep: str = " · ") -> list[str]:
    """`first` then `segments` joined by `sep`, wrapped at segment boundaries into lines of at
    most `width` columns (continuations indented by `indent`); text longer than a line is
    wrapped at words, never cut."""
    lines, line = [], first
    for seg in segments:
        if not seg:
            continue
        joiner = sep if line.strip() else ""
        if len(line) + len(joiner) + len(seg) <= width:
            line += joiner + seg
            continue
        if line.strip():
            lines.append(line)
        line = " " * indent + seg
    lines.append(line)
    out = []
    for ln in lines:
        out += textwrap.wrap(ln, width, subsequent_indent=" " * indent,
                             break_on_hyphens=False) if len(ln) > width else [ln]
    return [ln.rstrip() for ln in out]


def _bar_line(label: str, fraction: float | None, rest: list[str], width: int) -> list[str]:
    bar_w = max(10, min(BAR_WIDTH, width // 6))  # 13 at 80 columns: bar and facts on one line
    bar = progress_bar(fraction, None if fraction is None else 1.0, bar_w)
    return pack(f"{label:<10}{bar}", rest, width, indent=10)


def _epoch(x: Any) -> str:
    # status.json counts epochs from 0, as metrics.csv does; people count the one under way
    # from 1, so the last of 150 epochs reads 150/150, not 149/150
    e = num(x)
    return DASH if e is None else fmt.integer(e + 1)


def _where(s: dict[str, Any]) -> list[str]:
    return [f"epoch {_epoch(s.get('epoch'))}/{fmt.integer(s.get('max_epochs'))}",
            f"step {fmt.integer(s.get('step'))}/{fmt.integer(s.get('total_steps'))}"]


def _speed(s: dict[str, Any]) -> list[str]:
    thr = num(s.get("throughput"))
    thr_s = DASH if thr is None else f"{thr:,.0f}" if thr >= 100 else f"{thr:.3g}"
    return [f"loss {fmt.number(s.get('loss'), '.4g')}", f"lr {fmt.number(s.get('lr'), '.3g')}",
            f"{thr_s} samples/s"]


def _eval_lines(ev: Any, what: str, width: int) -> list[str]:
    if not isinstance(ev, dict) or not ev:
        return pack(f"last evaluation of {what}: {DASH}", [], width)
    head = (f"last evaluation of {what} (epoch {_epoch(ev.get('epoch'))}, "
            f"step {fmt.integer(ev.get('step'))}):")
    if ev.get("timed_out") is True:
        return pack(f"{head} timed out", ["abandoned after the eval timeout; training went on"],
                    width)
    gap = num(ev.get("train_val_gap"))
    gap_s = DASH if gap is None else fmt.number(gap, "+.4g")
    metrics = format_metrics(ev.get("metrics")).split(" · ") + [f"train/val gap {gap_s}"]
    return pack(f"{head} {metrics[0]}", metrics[1:], width)


def _gates_table(records: list[dict[str, Any]], run_id: str | None, live_gates: Any,
                 width: int) -> list[str]:
    # a live run's finished gates are in status.json ("gates") and, as each gate ends, in the
    # results log; the log also holds the gates a read-only session judged
    live = {g: v for g, v in live_gates.items() if isinstance(v, dict)} \
        if isinstance(live_gates, dict) else {}
    if not records and not live:
        return ["finished gates: " + DASH + " (no results log yet)"]
    note = ""
    if run_id is None:
        run_id = latest_run_id(records)
        note = " (the status file has no run_id: the newest run in the log)"
    rows = latest_by_gate(records, run_id) if records else {}
    for gate, v in live.items():
        rows.setdefault(gate, v)
    if not rows:
        return [fmt.shorten(f"finished gates: {DASH} (none recorded for run {run_id})", width)]
    out = pack(f"finished gates of run {run_id}{note}:", [], width)
    order = sorted(rows, key=gate_sort_key)
    cells = [(g, fmt.text(rows[g].get("status")), human_duration(rows[g].get("duration_s")),
              fmt.text(rows[g].get("reason"))) for g in order]
    gw = max(len("gate"), *(len(c[0]) for c in cells))
    sw = max(len("status"), *(len(c[1]) for c in cells))
    tw = max(len("time"), *(len(c[2]) for c in cells))
    below = width - (gw + sw + tw + 8) < MIN_REASON_COLUMNS  # narrow: reasons on a line of their own
    head = f"  {'gate':<{gw}}  {'status':<{sw}}  {'time':>{tw}}"
    out.append(head if below else f"{head}  reason")
    for gate, status_, took, reason in cells:
        row = f"  {gate:<{gw}}  {status_:<{sw}}  {took:>{tw}}"
        if below:
            out += [row, "      " + fmt.shorten(reason, width - 6)]
        else:
            out.append(f"{row}  {fmt.shorten(reason, width - len(row) - 2)}")
    decision = rows.get("decision")
    if decision is not None:  # the answer, on a line of its own
        out += ["", "decision: " + fmt.text(decision.get("reason"))]
    return [fmt.shorten(line, width).rstrip() for line in out]


def render(status: dict[str, Any], records: list[dict[str, Any]], liveness: Liveness,
           now: float | None = None, width: int | None = None) -> str:
    """The text `moola status` prints for one status file, in lines of at most `width`."""
    width = terminal_width() if width is None else max(40, width)
    s, p = status, progress(status, records, now)
    lines = pack(f"run {fmt.text(s.get('run_id'))}", [f"state {liveness.state}: {liveness.message}"],
                 width)
    where = f" ({ordinal(p.position[0])} of {p.position[1]} in the chain)" if p.position else ""
    lines += pack(f"gate {fmt.text(p.gate)}{where}", [f"phase {fmt.text(s.get('phase'))}"], width)
    gate_eta = f"ETA {human_duration(p.gate_eta_s)}"
    if p.gate_over:
        done = finished_gates(s).get(p.gate or "", {})
        lines += _bar_line("this gate", 1.0, [f"over: {fmt.text(done.get('status'))}"], width)
    elif p.replica is not None:
        i, n, name = p.replica
        lines += _bar_line("this gate", p.gate_fraction, [f"replica {i} of {n}", gate_eta], width)
        lines += _bar_line("replica", p.replica_fraction, ([name] if name else []) + _where(s)
                           + [f"ETA {human_duration(s.get('eta_s'))}"] + _speed(s), width)
        lines += _eval_lines(s.get("last_eval"), f"replica {name or i}", width)
    elif isinstance(s.get("replicas_together"), dict):  # moola.train.together
        t = s["replicas_together"]
        lines += _bar_line("this gate", p.gate_fraction, [
            f"replicas {fmt.integer(t.get('done'))} of {fmt.integer(t.get('count'))} done, "
            f"{fmt.integer(t.get('training'))} training together",
            f"step {fmt.integer(s.get('step'))}/{fmt.integer(s.get('total_steps'))}", gate_eta],
            width)
    else:
        lines += _bar_line("this gate", p.gate_fraction, _where(s) + [gate_eta] + _speed(s), width)
        lines += _eval_lines(s.get("last_eval"), "this training", width)
    if p.chain:
        done = len(p.finished)
        if liveness.state in ("done", "failed"):  # the session is over (perhaps run with -k):
            over = [f"{done} of {len(p.chain)} gates judged; the session is over"]  # none to come
            lines += _bar_line("chain", done / len(p.chain), over, width)
        else:
            eta = ([f"ETA {human_duration(p.chain_eta_s)} ({p.chain_eta_note})"]
                   if p.chain_eta_note else [])
            lines += _bar_line("chain", done / len(p.chain),
                               [f"{done} of {len(p.chain)} gates finished"] + eta, width)
    lines += pack(f"pid {fmt.text(s.get('pid'))} on {fmt.text(s.get('host'))}",
                  [f"updated {fmt.text(s.get('updated_at'))}"], width)
    lines.append("")
    rid = s.get("run_id") if isinstance(s.get("run_id"), str) else None
    lines += _gates_table(records, rid, s.get("gates"), width)
    return "\n".join(lines)


def missing_message(path: Path) -> str:
    return (
        f"no status file at {path}: no run has written one there.\n"
        f"Start a run with `make gates` (or `pytest gates_tests --profile smoke`), or pass the "
        f"reports directory of an existing run: `moola status DIR`."
    )


def snapshot(reports: Path, stale_after: float, now: float | None = None,
             width: int | None = None) -> tuple[str, int, str]:
    """(text, exit code, state) for one look at a reports directory."""
    path = reports / STATUS_FILENAME
    if not path.exists():
        return missing_message(path), EXIT_MISSING, "missing"
    status = read_status(path)
    if status is None:
        return (
            f"status file {path} exists but is not a readable JSON object; "
            f"the writer may be broken (look at the run's log)",
            EXIT_STALE,
            "unreadable",
        )
    records = read_records(results_path(reports))
    live = assess(status, now=now, stale_after=stale_after)
    return render(status, records, live, now=now, width=width), live.exit_code, live.state


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
