"""Shared test helpers for moola's unit tests.

`smoke_copy`: a private, writable copy of fixtures/smoke (tests edit real files in it).
Test modules marked `slow` run first (see `pytest_collection_modifyitems`).
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


@pytest.hookimpl(trylast=True)  # after moola's plugin put the gate tests in chain order
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a test marked `slow` first, then the gate chain's modules, then the rest,
    each group in collection order (a stable sort that keeps each module's tests together).

    Under `-n auto --dist loadfile --no-loadscope-reorder` pytest-xdist hands out whole
    modules in this order. Its default order (most tests first) leaves the one-test modules
    that run a whole chain, a minute each, for the end, where one worker runs them while the
    other idles. Longest first keeps the workers' finish times close; the many small modules
    fill the end.
    """
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    chain = {item.path for item in items if item.get_closest_marker("gate")}
    items.sort(key=lambda item: 0 if item.path in slow else 1 if item.path in chain else 2)
