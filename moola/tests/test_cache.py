"""The content-keyed artifact cache: hits, rebuilds, locks, and no partial artifact ever served."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from moola.cache import ArtifactCache, code_version, make_key


def _writer(value: str):
    def build(tmp: Path, workdir: Path):
        (tmp / "value.txt").write_text(value)
        return {"note": value}

    return build


def test_build_then_hit_and_key_changes_with_inputs(tmp_path):
    cache = ArtifactCache(tmp_path, run_id="r1")
    k1 = make_key({"lr": 0.01, "data": "abc"})
    e1 = cache.get_or_build("model", k1, _writer("one"))
    assert not e1.hit and (e1.path / "value.txt").read_text() == "one"
    e2 = cache.get_or_build("model", k1, _writer("two"))
    assert e2.hit and (e2.path / "value.txt").read_text() == "one"
    assert make_key({"lr": 0.02, "data": "abc"}) != k1
    assert [e["event"] for e in cache.events()] == ["build", "hit"]
    assert e1.manifest["run_id"] == "r1" and e1.manifest["note"] == "one"


def test_fresh_for_run_rebuilds_once_per_run(tmp_path):
    key = make_key({"x": 1})
    ArtifactCache(tmp_path, run_id="old").get_or_build("m", key, _writer("old"))
    cache = ArtifactCache(tmp_path, run_id="new")
    e = cache.get_or_build("m", key, _writer("new"), fresh_for_run=True)
    assert not e.hit and (e.path / "value.txt").read_text() == "new"
    # a second request in the same run (another gate, another xdist worker) reuses it
    e = cache.get_or_build("m", key, _writer("newer"), fresh_for_run=True)
    assert e.hit and (e.path / "value.txt").read_text() == "new"


def test_rebuild_flag_rebuilds_once_per_process(tmp_path):
    key = make_key({"x": 1})
    ArtifactCache(tmp_path, run_id="a").get_or_build("m", key, _writer("a"))
    cache = ArtifactCache(tmp_path, run_id="b", rebuild=True)
    assert not cache.get_or_build("m", key, _writer("b")).hit
    assert cache.get_or_build("m", key, _writer("c")).hit


def test_failed_build_leaves_nothing_servable(tmp_path):
    cache = ArtifactCache(tmp_path, run_id="r")
    key = make_key({"x": 2})

    def broken(tmp: Path, workdir: Path):
        (tmp / "half.txt").write_text("partial")
        raise RuntimeError("training diverged")

    with pytest.raises(RuntimeError):
        cache.get_or_build("m", key, broken)
    assert cache.lookup("m", key) is None
    assert not list((tmp_path / "m").glob(f".{key}.tmp-*"))
    assert not cache.get_or_build("m", key, _writer("ok")).hit


_KILLED_BUILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from moola.cache import ArtifactCache
    def build(tmp, workdir):
        (tmp / "half.txt").write_text("partial")
        (workdir / "checkpoint.txt").write_text("epoch 3")
        Path(sys.argv[2]).write_text("started")
        time.sleep(60)
    ArtifactCache(Path(sys.argv[1]), run_id="victim").get_or_build("m", "k", build)
""")


def test_sigkill_mid_build_is_never_served_and_workdir_survives_for_resume(tmp_path):
    flag = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD, str(tmp_path / "c"), str(flag)])
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert flag.exists(), "the build never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cache = ArtifactCache(tmp_path / "c", run_id="next")
    assert cache.lookup("m", "k") is None  # the partial build is not an artifact

    seen = {}

    def resume(tmp: Path, workdir: Path):
        seen["checkpoint"] = (workdir / "checkpoint.txt").read_text()
        (tmp / "value.txt").write_text("done")

    e = cache.get_or_build("m", "k", resume)
    assert seen["checkpoint"] == "epoch 3"  # training can resume from the killed build
    assert sorted(p.name for p in e.path.iterdir()) == ["manifest.json", "value.txt"]
    assert not (tmp_path / "c" / "m" / ".k.work").exists()


def _locked_build(root: str, out: str) -> None:
    def build(tmp: Path, workdir: Path):
        with open(out, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        (tmp / "v.txt").write_text("x")

    ArtifactCache(Path(root), run_id="same").get_or_build("m", "k", build)


def test_two_processes_build_once_under_the_lock(tmp_path):
    out = tmp_path / "builds.txt"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_locked_build, args=(str(tmp_path / "c"), str(out)))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert len(out.read_text().splitlines()) == 1
    events = [e["event"] for e in ArtifactCache(tmp_path / "c").events()]
    assert sorted(events) == ["build", "hit"]


def test_manifest_is_json_and_cache_holds_no_pickles(tmp_path):
    e = ArtifactCache(tmp_path, run_id="r").get_or_build("m", "k", _writer("v"))
    json.loads((e.path / "manifest.json").read_text())
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))


def test_code_version_tracks_source():
    assert code_version(["train"]) == code_version(["train"])
    assert code_version(["train"]) != code_version(["models"])


def test_rebuild_never_leaves_the_artifact_missing_while_the_old_one_is_deleted(tmp_path, monkeypatch):
    # readers look artifacts up without the lock: deleting the old directory before the new one
    # is in place would show them no artifact for as long as the deletion takes
    import moola.cache as cache_mod

    key = make_key({"x": 1})
    ArtifactCache(tmp_path, run_id="r1").get_or_build("m", key, _writer("old"))
    final = tmp_path / "m" / key
    seen = []
    real_rmtree = cache_mod.shutil.rmtree

    def watching_rmtree(path, *a, **kw):
        real_rmtree(path, *a, **kw)
        seen.append((Path(path).name, (final / "manifest.json").is_file()))  # after deleting

    monkeypatch.setattr(cache_mod.shutil, "rmtree", watching_rmtree)
    e = ArtifactCache(tmp_path, run_id="r2").get_or_build("m", key, _writer("new"), fresh_for_run=True)
    assert (e.path / "value.txt").read_text() == "new"
    assert seen and all(present for _name, present in seen), seen
    assert not list((tmp_path / "m").glob(f".{key}.old-*"))  # the old one is gone afterwards


def test_leftover_of_a_killed_publication_is_cleaned_on_the_next_build(tmp_path):
    key = make_key({"x": 2})
    stray = tmp_path / "m" / f".{key}.old-12345"
    stray.mkdir(parents=True)
    (stray / "value.txt").write_text("half")
    ArtifactCache(tmp_path, run_id="r1").get_or_build("m", key, _writer("v"))
    assert not stray.exists()
