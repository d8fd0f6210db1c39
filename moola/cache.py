"""Content-keyed artifact cache.

An artifact (a trained model, its predictions, an encoder) lives in a directory
``<root>/<kind>/<key>/`` where ``key`` hashes everything that produced it: the configuration
sections it depends on, the data fingerprint and the source of the producing code. A changed
input makes a new key; a second session with the same inputs reuses the artifact.

Writes are safe under concurrency and crashes:

* builds run under a per-key file lock (``filelock``), so two pytest-xdist workers or two
  sessions never train the same artifact twice at once;
* a build writes into a temporary directory and is renamed into place only when complete, with
  a ``manifest.json`` written last; a directory without a manifest is never served (a SIGKILL
  mid-build leaves only a temporary directory, removed by the next build).

Artifacts are stored as JSON, ``.npz`` (loaded with ``allow_pickle=False``) and torch state
dicts (loaded with ``weights_only=True``): the cache never unpickles anything.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from filelock import FileLock

import moola

MANIFEST = "manifest.json"
PACKAGE_ROOT = Path(moola.__file__).resolve().parent


def code_version(modules: Iterable[str]) -> str:
    """Hash of the source files of the named moola modules or packages (e.g. "pretrain").

    Part of every cache key, so a code fix in the producing code takes effect on rerun. Read
    once per process: the code that runs is the code that was imported, even if files change
    on disk during the session.
    """
    return _code_version(tuple(sorted(set(modules))))


@functools.lru_cache(maxsize=None)
def _code_version(modules: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in modules:
        p = PACKAGE_ROOT / name.replace(".", "/")
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p.with_suffix(".py")]
        for f in files:
            if "tests" in f.relative_to(PACKAGE_ROOT).parts or not f.exists():
                continue
            h.update(str(f.relative_to(PACKAGE_ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def make_key(parts: dict[str, Any]) -> str:
    """Stable key for a dict of JSON-serialisable inputs."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


@dataclass
class CacheEntry:
    """A complete artifact directory and how it was obtained in this call."""

    kind: str
    key: str
    path: Path
    hit: bool
    manifest: dict[str, Any]


class ArtifactCache:
    """Directory-per-artifact cache with file locks and atomic publication."""

    def __init__(self, root: str | Path, run_id: str = "", rebuild: bool = False):
        self.root = Path(root)
        self.run_id = run_id
        self.rebuild = rebuild
        self._rebuilt: set[tuple[str, str]] = set()  # --rebuild rebuilds once per process

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def lookup(self, kind: str, key: str) -> CacheEntry | None:
        """The complete artifact for (kind, key), or None. Never returns a partial build."""
        p = self.path(kind, key)
        manifest = _read_manifest(p)
        if manifest is None:
            return None
        return CacheEntry(kind, key, p, True, manifest)

    def get_or_build(
        self,
        kind: str,
        key: str,
        build: Callable[[Path, Path], dict[str, Any] | None],
        *,
        fresh_for_run: bool = False,
    ) -> CacheEntry:
        """Return the artifact (kind, key), building it with ``build(tmpdir)`` when needed.

        ``fresh_for_run``: an artifact built by an earlier run is rebuilt once for this run
        (the selected gate always runs its own work); one built by this run (e.g. by another
        xdist worker) is reused. ``build(tmpdir, workdir)`` writes the artifact's files into
        ``tmpdir`` and may return extra manifest fields; ``workdir`` is where training keeps
        its checkpoints: it survives a crash (the next build resumes from it), is cleared when
        a complete artifact is rebuilt, and is removed once the artifact is published.
        """
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            manifest = _read_manifest(final)
            force = self.rebuild and (kind, key) not in self._rebuilt
            stale = fresh_for_run and manifest is not None and manifest.get("run_id") != self.run_id
            if manifest is not None and not force and not stale:
                self._log_event(kind, key, "hit")
                return CacheEntry(kind, key, final, True, manifest)
            tmp = final.parent / f".{key}.tmp-{os.getpid()}"
            workdir = final.parent / f".{key}.work"
            _remove_partial_builds(final.parent, key)
            if manifest is not None:  # rebuilding a complete artifact: start training afresh
                shutil.rmtree(workdir, ignore_errors=True)
            tmp.mkdir()
            workdir.mkdir(exist_ok=True)
            t0 = time.time()
            try:
                extra = build(tmp, workdir) or {}
                manifest = {
                    "kind": kind,
                    "key": key,
                    "run_id": self.run_id,
                    "pid": os.getpid(),
                    "built_at": time.time(),
                    "build_s": round(time.time() - t0, 3),
                    "files": sorted(p.name for p in tmp.iterdir()),
                    **extra,
                }
                _write_json_atomic(tmp / MANIFEST, manifest)  # last: marks the build complete
                _publish(tmp, final)
                shutil.rmtree(workdir, ignore_errors=True)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._rebuilt.add((kind, key))
            self._log_event(kind, key, "build")
            return CacheEntry(kind, key, final, False, manifest)

    def events(self) -> list[dict[str, Any]]:
        """Every hit/build event recorded in this cache (used by tests and `moola report`)."""
        p = self.root / "events.jsonl"
        if not p.exists():
            return []
        out = []
        for line in p.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line from a killed process
        return out

    def _log_event(self, kind: str, key: str, event: str) -> None:
        rec = {"kind": kind, "key": key, "event": event, "run_id": self.run_id,
               "pid": os.getpid(), "at": time.time()}
        line = (json.dumps(rec) + "\n").encode()
        fd = os.open(self.root / "events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)  # one write on an O_APPEND fd: lines never interleave
        finally:
            os.close(fd)


def _read_manifest(p: Path) -> dict[str, Any] | None:
    m = p / MANIFEST
    if not m.is_file():
        return None
    try:
        return json.loads(m.read_text())
    except (json.JSONDecodeError, OSError):
        return None


def _remove_partial_builds(parent: Path, key: str) -> None:
    """Leftovers of a killed build or publication (we hold the lock, so none is in progress)."""
    for pattern in (f".{key}.tmp-*", f".{key}.old-*"):
        for leftover in parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def _publish(tmp: Path, final: Path) -> None:
    """Move the complete build `tmp` to `final`, replacing an older artifact.

    The old directory is renamed aside first and deleted only after the new one is in place:
    a reader that looks up `final` meanwhile (they read without the lock) finds an artifact at
    every moment but the instant between the two renames, instead of nothing for as long as
    deleting the old files took.
    """
    if not final.exists():
        os.replace(tmp, final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
