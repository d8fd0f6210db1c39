"""The live status file (``status.json``) of a training run.

The training loop rewrites it atomically every few steps (fast tier) and after each evaluation
(full tier) so that ``moola status --watch`` -- or a person with ``cat`` / ``jq`` on another
machine after a sync -- can see where a long run is, and whether it has stalled
(``updated_unix`` stops moving while ``pid`` on ``host`` is still alive).

Fields (all optional for a reader; see docs/CONTRACTS.md):
``run_id, gate, phase (train|eval|done|failed), step, total_steps, epoch, max_epochs, loss, lr,
throughput (samples/s), eta_s, last_eval ({step, epoch, metrics, train_val_gap, timed_out, at}),
updated_at (ISO UTC), updated_unix, pid, host``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moola.io_utils import atomic_write_json

__all__ = ["StatusWriter", "read_status", "PHASES"]

PHASES = ("train", "eval", "done", "failed")


class StatusWriter:
    """Owns one ``status.json``: ``update(**fields)`` merges and rewrites it atomically.

    Throttling is the caller's job (the training loop writes every ``log_every_n_steps``).
    Values are made JSON-safe: numpy / torch scalars become numbers, NaN and inf become null.
    Thread-safe: the state is merged and written under a lock.
    """

    def __init__(self, path: str | os.PathLike, run_id: str, gate: str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"run_id": run_id, "gate": gate}

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
        rewrite the file. Returns the state as written."""
        phase = fields.get("phase")
        if phase is not None and phase not in PHASES:
            raise ValueError(f"status phase {phase!r}; allowed values: {', '.join(PHASES)}")
        now = time.time()
        with self._lock:
            self._state.update(_jsonable(fields))
            self._state["updated_at"] = (
                datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")
            )
            self._state["updated_unix"] = round(now, 3)
            self._state["pid"] = os.getpid()
            self._state["host"] = socket.gethostname()
            snapshot = dict(self._state)
            # No fsync: readers only need atomicity (os.replace); a status lost to a power cut
            # is harmless, and fsync on every write stalls training on slow disks.
            atomic_write_json(self.path, snapshot, fsync=False)
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
