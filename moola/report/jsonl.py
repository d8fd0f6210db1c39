"""Append-only JSON Lines logs shared by processes: the results log and the cache's events log.

Writes are crash-tolerant and interleave-free:

* each line is written with one ``os.write`` on an ``O_APPEND`` descriptor, so lines from
  several processes never interleave, and a SIGKILL can at worst leave a *final* partial line
  without its newline;
* before appending, a file that does not end with a newline gets one, so a torn line never
  merges with the next record (it stays an unreadable line of its own);
* a full disk mid-line truncates the partial line away and raises
  :class:`moola.diskspace.DiskFullError`: the lines written before stay whole;
* with `lock_timeout`, a batch of lines is appended under ``filelock.FileLock(path + ".lock")``
  (the results log: a batch stays together; the torn-line check cannot race another writer).

:func:`scan` reads every JSON object line and describes, never raises on, the others.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from moola.diskspace import writing

log = logging.getLogger(__name__)


def _write_all(fd: int, data: bytes) -> None:
    """os.write once; loop only on the (rare) short write a signal can cause."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def append_lines(path: str | Path, lines: list[bytes], *, lock_timeout: float | None = None,
                 fsync: bool = False) -> int:
    """Append newline-terminated `lines` to `path` (created with its directory if missing).

    `lock_timeout`: hold the log's file lock for the batch (None: no lock); `fsync`: flush each
    line to the disk before the next. Returns the number of lines written.
    """
    if not lines:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path, sum(map(len, lines))):
        if lock_timeout is None:
            _append(path, lines, fsync)
        else:
            with FileLock(str(path) + ".lock", timeout=lock_timeout):
                _append(path, lines, fsync)
    return len(lines)


def _append(path: Path, lines: list[bytes], fsync: bool) -> None:
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
                if fsync:
                    os.fsync(fd)
            except OSError:
                # a full disk mid-line: cut the partial line off, keep the whole ones
                os.ftruncate(fd, size)
                raise
            size += len(line)
    finally:
        os.close(fd)


def append_json(path: str | Path, objects: list[Any], **kw: Any) -> int:
    """Append each object as one compact JSON line (see :func:`append_lines` for `kw`)."""
    lines = [(json.dumps(o, ensure_ascii=False) + "\n").encode("utf-8") for o in objects]
    return append_lines(path, lines, **kw)


@dataclass
class ReadResult:
    """What :func:`scan` found: the JSON objects and the lines it had to skip."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one message per unreadable line
    torn_final_line: bool = False


def scan(path: str | Path) -> ReadResult:
    """Every JSON object line of `path` in file order; unreadable lines are described in
    ``skipped``. A missing file is an empty log."""
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
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if i == len(lines) and not last_terminated:
                out.torn_final_line = True
                out.skipped.append(f"{path}:{i}: torn final line ({len(raw)} bytes, no newline; "
                                   f"a writer was killed mid-write) skipped")
            else:
                msg = getattr(exc, "msg", type(exc).__name__)
                out.skipped.append(f"{path}:{i}: not valid JSON ({msg}) skipped")
            continue
        if not isinstance(rec, dict):
            out.skipped.append(f"{path}:{i}: a JSON {type(rec).__name__}, not a record, skipped")
            continue
        out.records.append(rec)
    return out
