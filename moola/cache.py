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
  mid-build leaves only a temporary directory, removed by the next build);
* the manifest records each file's size and SHA-256; an entry is verified the first time a
  process uses it, and one that fails (a truncated file, a bad copy, a partial sync, a file
  missing or added) is never served: it is moved aside to ``<kind>/.damaged/``, logged in
  ``events.jsonl`` and rebuilt, and the caller learns why (``CacheEntry.repaired``).

Artifacts are stored as JSON, ``.npz`` (loaded with ``allow_pickle=False``) and torch state
dicts (loaded with ``weights_only=True``): the cache never unpickles anything.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from filelock import FileLock

import moola
from moola.io_utils import jsonable
from moola.io_utils import atomic_write_json, file_sha256
from moola.report.jsonl import append_json, scan

MANIFEST = "manifest.json"
DAMAGED = ".damaged"  # <kind>/.damaged/<key>-<time>: entries that failed verification, kept to inspect
PACKAGE_ROOT = Path(moola.__file__).resolve().parent

log = logging.getLogger(__name__)


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
    repaired: str | None = None  # why an earlier entry was not served and this one was rebuilt

    def record(self, **extra: Any) -> dict[str, Any]:
        """What a verdict's `artifacts` say about this entry: path, key, whether it was a cache
        hit and the run that built it, plus `extra`."""
        return {"path": str(self.path), "key": self.key, "cache_hit": self.hit,
                "built_by_run": self.manifest.get("run_id"), **extra}


class CacheDamagedError(RuntimeError):
    """A cache entry failed verification and could not be moved aside or rebuilt."""


class ArtifactCache:
    """Directory-per-artifact cache with file locks and atomic publication."""

    def __init__(self, root: str | Path, run_id: str = "", rebuild: bool = False):
        self.root = Path(root)
        self.run_id = run_id
        self.rebuild = rebuild
        # built by this process: --rebuild rebuilds once per process, and such an artifact is
        # fresh for this run even if another session has since replaced it
        self._built: set[tuple[str, str]] = set()
        self._verified: set[tuple[str, str, int]] = set()  # (kind, key, manifest mtime)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def lookup(self, kind: str, key: str) -> CacheEntry | None:
        """The complete, verified artifact for (kind, key), or None. Never returns a partial or
        damaged build (a damaged one is left in place for the next build to move aside)."""
        p = self.path(kind, key)
        manifest = _read_manifest(p)
        if manifest is None or self._damage(kind, key, p, manifest) is not None:
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
            repaired = None
            damage = None if manifest is None else self._damage(kind, key, final, manifest)
            if damage is not None:
                repaired = self._move_aside(kind, key, final, damage)
                manifest = None
            force = self.rebuild and (kind, key) not in self._built
            # fresh for this run: built by this run, or by this process earlier in it (another
            # session may have rebuilt the same key since: that copy is as good as ours)
            stale = (fresh_for_run and manifest is not None
                     and manifest.get("run_id") != self.run_id
                     and (kind, key) not in self._built)
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
                    "checksums": file_checksums(tmp),  # before publication: verified on use
                    **extra,
                }
                # last: marks the build complete
                atomic_write_json(tmp / MANIFEST, jsonable(manifest), indent=1, sort_keys=True)
                publish_directory(tmp, final)
                shutil.rmtree(workdir, ignore_errors=True)
            except BaseException as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if repaired is not None and isinstance(exc, Exception):
                    raise CacheDamagedError(
                        f"{repaired}, and rebuilding it failed ({type(exc).__name__}: {exc}); "
                        f"fix the cause above and rerun (the damaged copy is kept under "
                        f"{final.parent / DAMAGED})") from exc
                raise
            self._built.add((kind, key))
            self._verified.add((kind, key, _manifest_mtime(final)))
            self._log_event(kind, key, "build")
            return CacheEntry(kind, key, final, False, manifest, repaired)

    def _damage(self, kind: str, key: str, path: Path, manifest: dict[str, Any]) -> str | None:
        """Why the entry at `path` must not be served, or None. Checked once per process per
        manifest (the files are small: verifying costs milliseconds, see docs/PERFORMANCE.md)."""
        stamp = (kind, key, _manifest_mtime(path))
        if stamp in self._verified:
            return None
        problem = verify_files(path, manifest)
        if problem is None:
            self._verified.add(stamp)
        return problem

    def _move_aside(self, kind: str, key: str, final: Path, damage: str) -> str:
        """Move a damaged entry to <kind>/.damaged/ (we hold its lock), log it, return the note
        that goes into the gate's verdict."""
        aside = final.parent / DAMAGED / f"{key}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        try:
            aside.parent.mkdir(exist_ok=True)
            os.replace(final, aside)
        except OSError as exc:
            raise CacheDamagedError(
                f"cache entry {final} failed its checksum ({damage}) and could not be moved "
                f"aside ({exc}); delete that directory (or rerun with --rebuild) and rerun"
            ) from exc
        self._log_event(kind, key, "damaged", detail=damage, moved_to=str(aside))
        log.warning("cache entry %s/%s failed its checksum (%s); moved to %s and rebuilding",
                    kind, key, damage, aside)
        return f"rebuilt: entry {kind}/{key} failed its checksum ({damage}; moved to {aside})"

    def events(self) -> list[dict[str, Any]]:
        """Every hit/build event recorded in this cache (used by tests and `moola report`)."""
        return scan(self.root / "events.jsonl").records  # a torn last line is skipped

    def _log_event(self, kind: str, key: str, event: str, **detail: Any) -> None:
        rec = {"kind": kind, "key": key, "event": event, "run_id": self.run_id,
               "pid": os.getpid(), "at": time.time(), **detail}
        append_json(self.root / "events.jsonl", [rec])  # one O_APPEND write: never interleaved


def _read_manifest(p: Path) -> dict[str, Any] | None:
    m = p / MANIFEST
    if not m.is_file():
        return None
    try:
        return json.loads(m.read_text())
    except (json.JSONDecodeError, OSError):
        return None


def file_checksums(directory: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"size", "sha256"}} of every file under `directory` (manifest excluded)."""
    out = {}
    for f in sorted(directory.rglob("*")):
        if f.is_file() and f.name != MANIFEST:
            out[f.relative_to(directory).as_posix()] = {"size": f.stat().st_size,
                                                        "sha256": file_sha256(f)}
    return out


def verify_files(directory: Path, manifest: dict[str, Any]) -> str | None:
    """What is wrong with the files of an entry against its manifest's checksums, or None."""
    expected = manifest.get("checksums")
    if not isinstance(expected, dict):
        return "its manifest has no checksums (written by an older moola, or altered)"
    problems = []
    for name, want in sorted(expected.items()):
        f = directory / name
        if not f.is_file():
            problems.append(f"{name} is missing")
        elif f.stat().st_size != want.get("size"):
            problems.append(f"{name} has {f.stat().st_size} bytes, expected {want.get('size')}")
        elif file_sha256(f) != want.get("sha256"):
            problems.append(f"{name}'s content changed")
    present = {f.relative_to(directory).as_posix() for f in directory.rglob("*")
               if f.is_file() and f.name != MANIFEST}
    problems += [f"{name} was added" for name in sorted(present - expected.keys())]
    return "; ".join(problems) or None


def _manifest_mtime(path: Path) -> int:
    try:
        return (path / MANIFEST).stat().st_mtime_ns
    except OSError:
        return -1


def _remove_partial_builds(parent: Path, key: str) -> None:
    """Leftovers of a killed build or publication (we hold the lock, so none is in progress)."""
    for pattern in (f".{key}.tmp-*", f".{key}.old-*"):
        for leftover in parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def publish_directory(tmp: Path, final: Path) -> None:
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
