"""Every number in the configuration has an allowed range, checked wherever it comes from."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest

from moola.config import INF, RANGES, SECTIONS, ConfigError, load_config


def _numeric_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)
            if f.type in ("int", "float")]


def test_every_numeric_key_has_a_range():
    missing = [k for k in _numeric_keys() if k not in RANGES]
    assert not missing, f"add these keys to moola.config.RANGES: {missing}"
    assert not set(RANGES) - set(_numeric_keys()), "RANGES names keys that do not exist"


def test_every_default_and_profile_lies_in_its_range():
    for profile in ("smoke", "standard", "full"):
        load_config(profile)  # raises ConfigError if a shipped value is out of range


def _outside(key: str) -> float:
    lo, hi, lo_open, hi_open = RANGES[key]
    is_int = dict((f"{s}.{f.name}", f.type) for s, c in SECTIONS.items()
                  for f in fields(c))[key] == "int"
    if lo_open or lo > -INF:  # one step below the low end (or the low end itself when open)
        return lo if lo_open else (lo - 1 if is_int else lo - 0.5)
    return hi + 1


@pytest.mark.parametrize("key", sorted(RANGES))
def test_a_value_outside_the_range_is_a_usage_error_naming_key_source_and_range(key):
    with pytest.raises(ConfigError) as err:
        load_config("standard", overrides={key: _outside(key)}, override_source="--test")
    msg = str(err.value)
    assert "--test" in msg and f"'{key}'" in msg, msg
    assert "allowed range" in msg, msg


@pytest.mark.parametrize("option", ["--max-epochs=0", "--batch-size=0"])
def test_impossible_counts_on_the_command_line_stop_pytest_before_anything_runs(option, tmp_path):
    r = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", option,
                        "-p", "moola.plugin"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 4, r.stdout + r.stderr  # pytest's usage error
    assert "allowed range: >= 1" in r.stderr, r.stderr
