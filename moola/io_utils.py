"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Each writer puts the bytes into a temporary file in the *same directory* as the target (so the
final rename stays on one filesystem), flushes and fsyncs it, then ``os.replace``s it over the
target. ``os.replace`` is atomic on POSIX and Windows: a concurrent reader sees either the old
file or the new one, and a SIGKILL mid-write leaves at most a stray ``.<name>.*.tmp`` file.
JSON: :func:`jsonable` is the one rule turning numpy/torch values into plain JSON ones.
A full disk raises :class:`moola.diskspace.DiskFullError` naming the target and the bytes it
needed; the target is untouched and the temporary file removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
import math
from typing import Any, Mapping

from moola.diskspace import writing

__all__ = ["file_sha256", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save_npz",
           "atomic_torch_save", "copy_file"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True,
                       mode: int = 0o644) -> Path:
    """Write `data` to `path` atomically (temp file in the same dir + fsync + os.replace).

    Parent directories are created. Returns the target path. `fsync=False` skips the flush to
    disk (still atomic for readers, but not durable across a power loss); use it only for
    files rewritten many times a second. `mode`: the file's permissions (the temporary file
    starts private; reports are meant to be read by others, e.g. a sync to a web server).
    """
    target = Path(path)
    with writing(target, len(data)):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                        suffix=".tmp")
    try:
        with writing(target, len(data)), os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException:
        # Never leave the temp file behind; the target is untouched.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        _fsync_dir(target.parent)
    return target


def atomic_write_text(
    path: str | os.PathLike, text: str, *, encoding: str = "utf-8", fsync: bool = True
) -> Path:
    """Write `text` to `path` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding), fsync=fsync)


def atomic_write_json(
    path: str | os.PathLike,
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    fsync: bool = True,
) -> Path:
    """Serialise `obj` as JSON and write it atomically. Serialisation errors raise before any
    file is touched. NaN/inf are rejected (they are not JSON); convert them to null first."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False)
    return atomic_write_text(path, text + "\n", fsync=fsync)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """``np.savez`` (no pickles: loaded with allow_pickle=False), written atomically."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue(), fsync=False)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` (tensors and plain containers: loadable with weights_only=True),
    written atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue(), fsync=False)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """``shutil.copyfile`` with a full disk reported as DiskFullError naming `dst`. Not atomic:
    for files inside a directory that is published (renamed) only when complete."""
    with writing(dst, os.path.getsize(src)):
        shutil.copyfile(src, dst)
    return Path(dst)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; atomicity does not depend on it
    finally:
        os.close(fd)


def jsonable(obj: Any) -> Any:
    """Recursively convert numpy / torch scalars and arrays into plain JSON values."""
    if isinstance(obj, Mapping):  # dicts, and the artifacts' read-only mappings
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def save_json(path: str | os.PathLike, obj: Any) -> None:
    """Any value as JSON (:func:`jsonable`), atomically, not fsynced: the work files of a cache
    build (rebuilt if a crash loses them; the entry's publication is what is made durable)."""
    atomic_write_json(path, jsonable(obj), indent=1, sort_keys=True, fsync=False)
