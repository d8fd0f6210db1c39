"""Atomic writes: the target is whole or untouched, no temp files are left behind."""

import json
import os

import pytest

from moola import io_utils
from moola.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text


def test_writes_and_creates_parent_dirs(tmp_path):
    target = tmp_path / "a" / "b" / "f.bin"
    assert atomic_write_bytes(target, b"\x00\x01") == target
    assert target.read_bytes() == b"\x00\x01"
    atomic_write_text(target, "héllo")
    assert target.read_text(encoding="utf-8") == "héllo"
    assert os.listdir(target.parent) == ["f.bin"]


def test_json_roundtrip_and_nan_rejected_before_touching_file(tmp_path):
    target = tmp_path / "s.json"
    atomic_write_json(target, {"a": [1, 2.5, None]})
    assert json.loads(target.read_text()) == {"a": [1, 2.5, None]}
    with pytest.raises(ValueError):
        atomic_write_json(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": [1, 2.5, None]}
    assert os.listdir(tmp_path) == ["s.json"]


def test_failed_replace_leaves_target_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(io_utils.os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]
