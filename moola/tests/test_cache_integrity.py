"""A damaged cache entry (truncated, altered, incomplete) is never served: it is moved aside,
logged and rebuilt, and the caller learns why (issue 15, part 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moola.cache import DAMAGED, ArtifactCache, CacheDamagedError, make_key


def _build(value: float):
    def build(tmp: Path, workdir: Path):
        np.savez(tmp / "preds.npz", proba=np.full((50, 3), value))
        (tmp / "models").mkdir()
        (tmp / "models" / "seed1_fold0.pt").write_bytes(b"weights" * 100)
        (tmp / "metrics.json").write_text(json.dumps({"macro_f1": value}))

    return build


@pytest.fixture
def built(tmp_path):
    key = make_key({"x": 1})
    ArtifactCache(tmp_path, run_id="first").get_or_build("finetuned", key, _build(0.5))
    return tmp_path, key, tmp_path / "finetuned" / key


def _reopen(root: Path, key: str, value: float = 0.25):
    cache = ArtifactCache(root, run_id="second")
    return cache, cache.get_or_build("finetuned", key, _build(value))


def test_manifest_lists_size_and_sha256_of_every_file_nested_ones_too(built):
    _, _, path = built
    sums = json.loads((path / "manifest.json").read_text())["checksums"]
    assert set(sums) == {"preds.npz", "models/seed1_fold0.pt", "metrics.json"}
    assert sums["models/seed1_fold0.pt"]["size"] == 700
    assert all(len(s["sha256"]) == 64 for s in sums.values())


def test_intact_entry_is_served(built):
    root, key, _ = built
    cache, entry = _reopen(root, key)
    assert entry.hit and entry.repaired is None
    assert [e["event"] for e in cache.events()] == ["build", "hit"]


@pytest.mark.parametrize("damage, expect", [
    (lambda p: (p / "preds.npz").write_bytes((p / "preds.npz").read_bytes()[:100]),
     "preds.npz has 100 bytes"),
    (lambda p: (p / "models" / "seed1_fold0.pt").write_bytes(b"WEIGHTS" * 100),
     "models/seed1_fold0.pt's content changed"),
    (lambda p: (p / "metrics.json").unlink(), "metrics.json is missing"),
    (lambda p: (p / "stray.txt").write_text("x"), "stray.txt was added"),
])
def test_damaged_entry_is_moved_aside_logged_and_rebuilt(built, damage, expect):
    root, key, path = built
    damage(path)
    cache, entry = _reopen(root, key, value=0.25)
    assert not entry.hit
    assert entry.repaired.startswith(f"rebuilt: entry finetuned/{key} failed its checksum")
    assert expect in entry.repaired
    with np.load(entry.path / "preds.npz") as z:  # the rebuilt entry, not the damaged one
        assert z["proba"][0, 0] == 0.25
    (aside,) = (root / "finetuned" / DAMAGED).iterdir()
    assert aside.name.startswith(key) and (aside / "manifest.json").is_file()
    events = cache.events()
    assert [e["event"] for e in events] == ["build", "damaged", "build"]
    assert expect in events[1]["detail"] and events[1]["moved_to"] == str(aside)
    # the rebuilt entry verifies: a third session is served it
    assert _reopen(root, key)[1].hit


def test_manifest_without_checksums_is_not_trusted(built):
    root, key, path = built
    m = json.loads((path / "manifest.json").read_text())
    del m["checksums"]
    (path / "manifest.json").write_text(json.dumps(m))
    _, entry = _reopen(root, key)
    assert not entry.hit and "has no checksums" in entry.repaired


def test_lookup_never_returns_a_damaged_entry(built):
    root, key, path = built
    assert ArtifactCache(root).lookup("finetuned", key) is not None
    (path / "preds.npz").write_bytes(b"")
    assert ArtifactCache(root).lookup("finetuned", key) is None
    assert path.is_dir()  # lookup holds no lock: it leaves the moving aside to the next build


def test_damaged_entry_whose_rebuild_fails_names_the_entry_and_the_fix(built):
    root, key, path = built
    (path / "preds.npz").write_bytes(b"junk")

    def broken(tmp, workdir):
        raise FileNotFoundError("data/train.parquet")

    with pytest.raises(CacheDamagedError) as err:
        ArtifactCache(root).get_or_build("finetuned", key, broken)
    msg = str(err.value)
    assert f"entry finetuned/{key} failed its checksum" in msg
    assert "rebuilding it failed (FileNotFoundError: data/train.parquet)" in msg
    assert "fix the cause above and rerun" in msg and DAMAGED in msg
    assert not path.exists()  # never served again
