"""The results log: ``reports/gated_workflow_results.jsonl``, one JSON record per gate per run.

The log is append-only and shared by processes (the pytest controller, a rerun in another shell).
Writes go through :mod:`moola.report.jsonl` (one ``os.write`` per line on an ``O_APPEND``
descriptor, a torn last line closed before the next append, a partial line cut off on a full
disk), here under the log's file lock and fsync'ed line by line: a SIGKILL can at worst leave a
final partial line, which :func:`read_records` skips, counting and warning about it.

Record fields (DESIGN.md, Outputs): ``run_id, gate, timestamp, model, config, metrics,
comparison, status (passed|failed|warning|inconclusive|skipped), reason, duration_s,
artifacts``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable

from moola.io_utils import jsonable
from moola.verdict import STATUSES
from moola.report.jsonl import ReadResult, append_lines, scan

__all__ = ["RESULTS_FILENAME", "ReadResult", "append_records", "gate_sort_key", "latest_by_gate",
           "latest_run_id", "make_record", "now_iso", "parse_timestamp", "read_records",
           "results_path", "scan_records"]

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


def append_records(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records to the JSONL log at `path` (created with its directory if missing).

    All records are validated before anything is written (a bad one raises ValueError and the log
    is untouched). Returns the number of records written.
    """
    lines = [_encode(r, i) for i, r in enumerate(records)]
    return append_lines(path, lines, lock_timeout=LOCK_TIMEOUT_S, fsync=True)


# every valid record of the log, the unreadable lines described (never raised on)
scan_records = scan


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
