"""Shared test helpers for moola's unit tests.

`smoke_copy`: a private, writable copy of fixtures/smoke (tests edit real files in it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

# pandas registers its pyarrow extension types when its parquet engine is first created. A
# pytester test restores sys.modules at teardown, so if that first creation happened inside one
# (e.g. a pd.read_parquet in its body), the next pd.read_parquet would register them twice and
# fail ("A type extension with name pandas.period already defined"). Create it once, up front.
pd.io.parquet.get_engine("pyarrow")

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.fixture
def smoke_copy(tmp_path: Path) -> Path:
    """A copy of the smoke dataset under tmp_path; edit it freely."""
    dst = tmp_path / "ds"
    shutil.copytree(FIXTURES / "smoke", dst)
    return dst
