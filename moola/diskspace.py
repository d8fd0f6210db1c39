"""A full disk, said plainly: which directory, which file, how much space.

Every file moola writes goes through a writer that turns ``ENOSPC`` / ``EDQUOT`` into a
:class:`DiskFullError` naming the file, the bytes it needed and the space left on its
filesystem (``shutil.disk_usage``). The writers are atomic (temporary file + rename) or, for the
results log, truncate a partly written line back: a full disk leaves no torn record and no
half-published cache entry, and what was finished before stays on disk for the rerun.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Iterator

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """No space (or quota) left while writing `path`; the message says what to do."""

    def __init__(self, path: str | os.PathLike, needed: int | None = None,
                 cause: OSError | None = None):
        self.path = Path(path)
        self.directory = _existing_dir(self.path)
        self.needed = needed
        code = cause.errno if cause is not None and cause.errno else errno.ENOSPC
        super().__init__(code, "disk quota exceeded" if code == errno.EDQUOT
                         else "no space left on device")
        self.filename = str(self.path)

    @property
    def free(self) -> int | None:
        """Bytes free now (read when the message is shown: after the writer cleaned up)."""
        return free_bytes(self.directory)

    def __str__(self) -> str:
        need = f"{human_bytes(self.needed)} needed, " if self.needed is not None else ""
        return (f"disk full: {self.strerror} writing {self.path} ({need}"
                f"{human_bytes(self.free)} free in {self.directory}); free space there (or "
                f"point run.reports / run.cache at another disk) and rerun: records already "
                f"written are kept and finished training resumes from its checkpoints")

    def __reduce__(self):  # picklable (xdist, multiprocessing) with its fields
        return (type(self), (self.path, self.needed, OSError(self.errno, self.strerror)))


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError saying the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


@contextlib.contextmanager
def writing(path: str | os.PathLike, needed: int | None = None) -> Iterator[None]:
    """Inside: a full disk raises :class:`DiskFullError` naming `path` (and `needed` bytes)."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        if exc.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(path, needed, exc) from exc
        raise


def as_disk_full(exc: OSError, fallback_dirs: list[Path]) -> DiskFullError:
    """A DiskFullError for an ENOSPC raised by code that did not say what it wrote: the file
    the OS names, else the first of `fallback_dirs` (the run's reports and cache)."""
    if isinstance(exc, DiskFullError):
        return exc
    target = exc.filename or (fallback_dirs[0] if fallback_dirs else ".")
    return DiskFullError(target, None, exc)


def free_bytes(directory: Path) -> int | None:
    """Bytes available to this user on `directory`'s filesystem (None if it cannot be read)."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def human_bytes(n: int | None) -> str:
    """1536 -> '1.5 KB'; None -> 'unknown'."""
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _existing_dir(path: Path) -> Path:
    p = path if path.is_dir() else path.parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p
