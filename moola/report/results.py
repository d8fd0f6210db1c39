"""The results log: ``reports/gated_workflow_results.jsonl``, one JSON record per gate per run.

The log is append-only and shared by processes (the pytest controller, a rerun in another shell).
Writes are made crash-tolerant and interleave-free:

* every append holds ``filelock.FileLock(path + ".lock")``;
* each record is one line written with a single ``os.write`` on an ``O_APPEND`` descriptor and
  then fsync'ed, so a SIGKILL can at worst leave a *final* partial line without its newline;
* before appending, a file that does not end with a newline gets one, so a torn line never merges
  with the next record (it stays an unreadable line of its own);
* :func:`read_records` skips unreadable lines, counting and warning about them, instead of
  crashing;
* a full disk mid-line truncates the partial line away and raises
  :class:`moola.diskspace.DiskFullError`: the records written before stay whole.

Record fields (DESIGN.md, Outputs): ``run_id, gate, timestamp, model, config, metrics,
comparison, status (passed|failed|warning|inconclusive|skipped), reason, duration_s,
artifacts``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from filelock import FileLock

from moola.diskspace import writing
from moola.gates.verdict import STATUSES, jsonable

log = logging.getLogger(__name__)

RESULTS_FILENAME = "gated_workflow_results.jsonl"
RECORD_FIELDS = (
    "run_id",
    "gate",
    "timestamp",
    "model",
    "config",
    "metrics",
    "comparison",
    "status",
    "reason",
    "duration_s",
    "artifacts",
)
LOCK_TIMEOUT_S = 60.0  # a writer holds the lock for milliseconds; a minute means something is stuck


def results_path(reports_dir: str | Path = "reports") -> Path:
    """Where the results log of a reports directory lives."""
    return Path(reports_dir) / RESULTS_FILENAME


def now_iso() -> str:
    """Current time as an ISO-8601 UTC timestamp with microseconds (sortable, parseable)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def make_record(**fields_: Any) -> dict[str, Any]:
    """A record with every field of the format present (missing ones are None, timestamp = now).

    Unknown extra fields (e.g. ``key_metric``) are kept after the standard ones.
    """
    rec: dict[str, Any] = {k: fields_.get(k) for k in RECORD_FIELDS}
    if rec["timestamp"] is None:
        rec["timestamp"] = now_iso()
    rec.update({k: v for k, v in fields_.items() if k not in rec})
    return rec


def _encode(record: Any, index: int) -> bytes:
    """One record -> one JSON line (bytes, newline-terminated); bad records raise ValueError."""
    if not isinstance(record, dict):
        raise ValueError(f"record #{index} is a {type(record).__name__}, expected a dict")
    for key in ("run_id", "gate", "status"):
        if not record.get(key):
            raise ValueError(f"record #{index} has no '{key}'; every record needs run_id, gate, status")
    if record["status"] not in STATUSES:
        raise ValueError(
            f"record #{index} ({record['gate']}): status {record['status']!r}; "
            f"allowed: {', '.join(STATUSES)}"
        )
    rec = make_record(**record)
    # jsonable: numpy scalars -> numbers, NaN/inf -> null (strict JSON, readable by jq)
    line = json.dumps(jsonable(rec), ensure_ascii=False, allow_nan=False)
    return line.encode("utf-8") + b"\n"


def _write_all(fd: int, data: bytes) -> None:
    """os.write once; loop only on the (rare) short write a signal can cause."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def append_records(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records to the JSONL log at `path` (created with its directory if missing).

    All records are validated before anything is written (a bad one raises ValueError and the log
    is untouched). Returns the number of records written.
    """
    lines = [_encode(r, i) for i, r in enumerate(records)]
    if not lines:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path, sum(map(len, lines))), \
            FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # a previous writer was killed mid-line: terminate that line so it stays separate
                log.warning("%s: last line was torn (no newline); closing it before appending", path)
                _write_all(fd, b"\n")
                size += 1
            for line in lines:
                try:
                    _write_all(fd, line)
                    os.fsync(fd)
                except OSError:
                    # a full disk mid-line: cut the partial line off, keep the whole records
                    os.ftruncate(fd, size)
                    raise
                size += len(line)
        finally:
            os.close(fd)
    return len(lines)


@dataclass
class ReadResult:
    """What :func:`scan_records` found: the valid records and the lines it had to skip."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one message per unreadable line
    torn_final_line: bool = False


def scan_records(path: str | Path) -> ReadResult:
    """Read every valid record of the log; describe (never raise on) unreadable lines.

    A missing file is an empty log.
    """
    path = Path(path)
    out = ReadResult()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    lines = data.split(b"\n")
    last_terminated = data.endswith(b"\n")
    if last_terminated:
        lines.pop()  # the empty string after the final newline
    for i, raw in enumerate(lines, start=1):
        is_final_unterminated = (i == len(lines)) and not last_terminated
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if is_final_unterminated:
                out.torn_final_line = True
                out.skipped.append(
                    f"{path}:{i}: torn final line ({len(raw)} bytes, no newline; a writer was "
                    f"killed mid-write) skipped"
                )
            else:
                out.skipped.append(f"{path}:{i}: not valid JSON ({exc.msg}) skipped")
            continue
        if not isinstance(rec, dict):
            out.skipped.append(f"{path}:{i}: a JSON {type(rec).__name__}, not a record, skipped")
            continue
        out.records.append(rec)
    return out


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All valid records of the log in file (append) order; unreadable lines are skipped with a
    warning that says how many and where."""
    res = scan_records(path)
    if res.skipped:
        log.warning(
            "%s: skipped %d unreadable line(s): %s",
            path,
            len(res.skipped),
            "; ".join(res.skipped[:5]) + (" ..." if len(res.skipped) > 5 else ""),
        )
    return res.records


def parse_timestamp(value: Any) -> float | None:
    """ISO-8601 string or unix number -> unix seconds; None when missing or unparseable.

    Naive ISO timestamps are taken as UTC.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        s = value.strip()
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        try:
            t = _dt.datetime.fromisoformat(s)
        except ValueError:
            return None
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return t.timestamp()
    return None


def _newest(records: list[dict[str, Any]]) -> list[tuple[float, int, dict[str, Any]]]:
    """(timestamp, file position, record), sorted oldest first; a record without a readable
    timestamp sorts before every timestamped one, file order breaking ties."""
    keyed = []
    for pos, rec in enumerate(records):
        if not isinstance(rec, dict):
            continue
        ts = parse_timestamp(rec.get("timestamp"))
        keyed.append((float("-inf") if ts is None else ts, pos, rec))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return keyed


def latest_by_gate(
    records: list[dict[str, Any]], run_id: str | None = None
) -> dict[str, dict[str, Any]]:
    """The newest record (by timestamp, then file order) of each gate, optionally of one run.

    The result is ordered by gate (``gate_0_...`` before ``gate_10_...``).
    """
    latest: dict[str, dict[str, Any]] = {}
    for _, _, rec in _newest(records):
        gate = rec.get("gate")
        if not isinstance(gate, str) or not gate:
            continue
        if run_id is not None and rec.get("run_id") != run_id:
            continue
        latest[gate] = rec  # later (newer) overwrites older
    return {g: latest[g] for g in sorted(latest, key=gate_sort_key)}


def latest_run_id(records: list[dict[str, Any]]) -> str | None:
    """run_id of the newest record in the log (None for an empty log)."""
    for _, _, rec in reversed(_newest(records)):
        rid = rec.get("run_id")
        if isinstance(rid, str) and rid:
            return rid
    return None


def gate_sort_key(gate: str) -> tuple[int, str]:
    """Sort gates by their number (gate_2 before gate_10), unnumbered ones last."""
    m = re.match(r"gate_(\d+)", gate or "")
    return (int(m.group(1)) if m else 1 << 30, gate or "")
