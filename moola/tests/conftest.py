"""Shared test helpers for moola's unit tests.

`smoke_copy`: a private, writable copy of fixtures/smoke (tests edit real files in it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.fixture
def smoke_copy(tmp_path: Path) -> Path:
    """A copy of the smoke dataset under tmp_path; edit it freely."""
    dst = tmp_path / "ds"
    shutil.copytree(FIXTURES / "smoke", dst)
    return dst
