"""The live status file (``status.json``) of a training run.

The training loop rewrites it atomically every few steps (fast tier) and after each evaluation
(full tier) so that ``moola status --watch`` -- or a person with ``cat`` / ``jq`` on another
machine after a sync -- can see where a long run is, and whether it has stalled
(``updated_unix`` stops moving while ``pid`` on ``host`` is still alive).

Fields (all optional for a reader; see docs/CONTRACTS.md):
``run_id, gate, phase (train|eval|done|failed), step, total_steps, epoch (0-based, as in
metrics.csv), max_epochs, loss, lr, throughput (samples/s), eta_s (of the current fit),
last_eval ({step, epoch, metrics, train_val_gap, timed_out, at}), updated_at (ISO UTC),
updated_unix, pid, host``; from the gate runner ``chain`` (the gate names in order),
``gate_started_unix`` and ``gates`` (the finished ones: {gate: {status, reason, duration_s}});
from the replica loop ``replica`` (its name), ``replica_index`` (1-based) and ``replica_count``,
or, while replicas train together, ``replicas_together`` ({done, training, count}) with
``step`` / ``total_steps`` / ``eta_s`` summed over the gate's replicas.
Every fit ends with phase "done"; a gate is over when it is listed in ``gates``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moola.diskspace import DiskFullError
from moola.io_utils import atomic_write_json

log = logging.getLogger(__name__)

__all__ = ["StatusWriter", "read_status", "PHASES"]

PHASES = ("train", "eval", "done", "failed")


class StatusWriter:
    """Owns one ``status.json``: ``update(**fields)`` merges and rewrites it atomically.

    The training loop calls it every ``log_every_n_steps`` and around each evaluation. With
    `min_interval_s` > 0, an update that keeps the phase and comes sooner than that after the
    last write is merged but not written (the next write carries it; :meth:`flush` forces
    one): a tiny model's steps take milliseconds, and a file rewrite per step cost more than a
    person watching can see. A phase change (train, eval, done, failed) is always written.
    Values are made JSON-safe: numpy / torch scalars become numbers, NaN and inf become null.
    Thread-safe: the state is merged and written under a lock.
    """

    def __init__(self, path: str | os.PathLike, run_id: str, gate: str,
                 min_interval_s: float = 0.0) -> None:
        self.path = Path(path)
        self.min_interval_s = float(min_interval_s)
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"run_id": run_id, "gate": gate}
        self._written_at: float | None = None  # monotonic time of the last write
        self._dirty = False
        self.disk_full: Exception | None = None  # the last write refused for lack of space

    @property
    def gate(self) -> str:
        """The gate now reported; setting it takes effect at the next :meth:`update`."""
        with self._lock:
            return self._state["gate"]

    @gate.setter
    def gate(self, value: str) -> None:
        with self._lock:
            self._state["gate"] = value

    @property
    def state(self) -> dict[str, Any]:
        """A copy of what was last written (or is about to be)."""
        with self._lock:
            return dict(self._state)

    def update(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into the current state (a key set to None is written as null) and
        rewrite the file (unless throttled, see the class). Returns the merged state."""
        phase = fields.get("phase")
        if phase is not None and phase not in PHASES:
            raise ValueError(f"status phase {phase!r}; allowed values: {', '.join(PHASES)}")
        with self._lock:
            changes_phase = phase is not None and phase != self._state.get("phase")
            self._state.update(_jsonable(fields))
            self._dirty = True
            due = (changes_phase or self._written_at is None or self.min_interval_s <= 0
                   or time.monotonic() - self._written_at >= self.min_interval_s)
            return self._write() if due else dict(self._state)

    def flush(self) -> dict[str, Any]:
        """Write what an update merged without writing (a no-op when nothing is pending)."""
        with self._lock:
            return self._write() if self._dirty else dict(self._state)

    def _write(self) -> dict[str, Any]:
        now = time.time()
        self._state["updated_at"] = (
            datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")
        )
        self._state["updated_unix"] = round(now, 3)
        self._state["pid"] = os.getpid()
        self._state["host"] = socket.gethostname()
        snapshot = dict(self._state)
        # No fsync: readers only need atomicity (os.replace); a status lost to a power cut is
        # harmless, and fsync on every write stalls training on slow disks.
        try:
            atomic_write_json(self.path, snapshot, fsync=False)
        except DiskFullError as exc:
            # the live view is a convenience: a full disk must not kill the training it shows
            # (the records and report.json, written later, report it and end the run)
            if not self.disk_full:
                log.warning("status file not updated: %s", exc)
            self.disk_full = exc
            return snapshot
        self._written_at, self._dirty = time.monotonic(), False
        return snapshot


def read_status(path: str | os.PathLike) -> dict[str, Any] | None:
    """Read a status file; None when it is missing, unreadable or not a JSON object.

    Never raises for a bad file: a watcher must keep watching. Fields may be missing or null.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy/torch scalars and arrays to numbers/lists, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, int, str)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return _jsonable(obj.tolist())
    return str(obj)
