"""examples/gates.toml lists every configuration key with its default, meaning and profile values.

The file's keys are commented out (as shipped it changes nothing), so these tests read the
`# key = value` lines and the meaning line above each; a key added to moola/config.py without an
entry there, or a changed default, fails here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from moola.config import PROFILE_OVERRIDES, PROFILES, Config, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gates.toml"
KEY_LINE = re.compile(r"^# ([a-z_]\w*) = (.+)$")
PROFILE_NOTE = re.compile(r"\b(smoke|standard|full): (\"[^\"]*\"|[^,;\s]+)")


def _toml_value(text: str):
    return tomllib.loads(f"v = {text}")["v"]


def _entries() -> dict[str, dict[str, tuple[object, str]]]:
    """{section: {key: (value, meaning)}} in file order."""
    out: dict[str, dict[str, tuple[object, str]]] = {}
    section, previous = None, ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^\[(\w+)\]$", line):
            section = m[1]
            out[section] = {}
        elif (m := KEY_LINE.match(line)) and section:
            out[section][m[1]] = (_toml_value(m[2]), previous.removeprefix("# ").strip())
        previous = line
    return out


def test_the_example_lists_exactly_the_schema_keys_with_their_defaults():
    entries, defaults = _entries(), Config().to_dict()
    assert {s: list(keys) for s, keys in entries.items()} == \
        {s: list(keys) for s, keys in defaults.items()}, "sections or keys differ from the schema"
    for section, keys in defaults.items():
        for key, default in keys.items():
            value, meaning = entries[section][key]
            assert value == default and type(value) is type(default), (
                f"examples/gates.toml: {section}.{key} = {value!r}, the schema's default is "
                f"{default!r}")
            assert len(meaning) > 10 and not KEY_LINE.match(f"# {meaning}"), (
                f"examples/gates.toml: {section}.{key} has no line of meaning above it")


def test_the_profile_values_named_in_the_example_are_the_profiles():
    defaults = Config().to_dict()
    for section, keys in _entries().items():
        for key, (_value, meaning) in keys.items():
            named = {p: _toml_value(v) for p, v in PROFILE_NOTE.findall(meaning)}
            actual = {p: PROFILE_OVERRIDES[p][section][key] for p in PROFILES
                      if PROFILE_OVERRIDES[p].get(section, {}).get(key,
                                                                    defaults[section][key])
                      != defaults[section][key]}
            assert named == actual, f"examples/gates.toml: {section}.{key}: {meaning!r}"


@pytest.mark.parametrize("profile", PROFILES)
def test_as_shipped_the_example_changes_no_profile(profile):
    assert load_config(profile, EXAMPLE) == load_config(profile)


def test_uncommented_the_example_loads_as_exactly_the_defaults(tmp_path):
    every_key = tmp_path / "gates.toml"
    every_key.write_text(re.sub(r"(?m)^# ([a-z_]\w* = )", r"\1",
                                EXAMPLE.read_text(encoding="utf-8")))
    assert load_config("standard", every_key) == Config()
