"""moola's pytest options and ini keys as a user meets them: --help, typed ini keys, --fold.

pytester sessions on copies of the real gates_tests/ suite; they collect or run gate 0 only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# loaded before any inline pytester session (see test_plugin.py: C extensions load once)
import moola.data  # noqa: F401
import moola.gates  # noqa: F401
import moola.train  # noqa: F401
from moola.config import load_config
from moola.plugin.options import KNOBS, _schema_type
from moola.testing import SUITE_INI, read_results, write_gate_suite

pytest_plugins = ["pytester"]

SMOKE = Path(__file__).resolve().parents[2] / "fixtures" / "smoke"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    write_gate_suite(pytester.path)
    return pytester


def _help(project: pytest.Pytester) -> str:
    r = project.runpytest("--help")
    assert r.ret == 0
    return " ".join(r.stdout.str().split())  # undo the help formatter's line wrapping


def test_help_shows_metavars_and_the_profiles_defaults(project):
    text = _help(project)
    assert "MOOLA_" not in text  # argparse's placeholder metavars (--seed=MOOLA_SEED)
    for line in [
        "--profile={smoke,standard,full,auto}",
        "--gates-config=FILE",
        "--accelerator={auto,cpu,cuda,mps}",
        "--seed=N base seed; replicas train at N, N + 1000, ... (default 17)",
        "--fold=N split file splits/fold_<N>.json",
        "--max-epochs=N epochs of the shared supervised recipe, raised to fit train.min_steps "
        "and a patience (each replica records the epochs it could run) (default 40; smoke 15, "
        "full 60)",
        "--data=DIR dataset directory (default data/synthetic; smoke fixtures/smoke)",
        "--deterministic deterministic algorithms (slower) (default off)",
        "--eval-timeout=SECONDS",
    ]:
        assert line in text, line
    # every knob's default is the one the profile really resolves to
    standard = load_config("standard")
    for name, key, _metavar, _text in KNOBS:
        section, field = key.split(".")
        value = getattr(getattr(standard, section), field)
        shown = ("on" if value else "off") if isinstance(value, bool) else (value or "none")
        assert f"--{name}" in text and f"(default {shown}" in text.split(f"--{name}", 1)[1], name


def test_ini_keys_are_declared_with_the_schema_types(project):
    text = _help(project)
    names = {"str": "string", "int": "int", "float": "float", "bool": "bool"}
    for name, key, _metavar, _text in KNOBS:
        ini = "moola_" + name.replace("-", "_")
        assert f"{ini} ({names[_schema_type(key)]}): {key}:" in text, ini
    assert "moola_seed (int)" in text and "moola_deterministic (bool)" in text
    assert "moola_eval_timeout (float)" in text and "moola_data (string)" in text


def test_typed_ini_values_apply(project):
    (project.path / "pytest.ini").write_text(
        SUITE_INI + "moola_profile = smoke\nmoola_seed = 11\nmoola_deterministic = true\n"
                    "moola_eval_timeout = 30.5\n")
    r = project.runpytest("--co", f"--data={SMOKE}")
    r.stdout.fnmatch_lines(["*profile=smoke*seed=11 deterministic=True",
                            "*eval_timeout=30.5s*"])


def test_an_unset_ini_flag_leaves_the_gates_config_value(project):
    # a bool ini key reads False when unset unless declared with default None: it would then
    # override --gates-config, which sits below ini in the precedence
    cfg = project.path / "gates.toml"
    cfg.write_text("[run]\ndeterministic = true\nrebuild = true\n")
    r = project.runpytest("--profile", "smoke", f"--gates-config={cfg}", "--co")
    r.stdout.fnmatch_lines(["*deterministic=True", "*rebuild=True"])


def test_a_bad_ini_value_is_a_usage_error_naming_the_key(project):
    (project.path / "pytest.ini").write_text(SUITE_INI + "moola_seed = eleven\n")
    r = project.runpytest("--profile", "smoke", "--co")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*'run.seed' (moola_seed)*eleven*"])


def test_fold_option_selects_the_split_file(project):
    r = project.runpytest("--profile", "smoke", "-k", "gate_0", f"--data={SMOKE}", "--fold", "3")
    r.assert_outcomes(failed=1, deselected=8)
    (rec,) = read_results(project.path)
    assert "fold_3.json" in rec["reason"] and rec["config"]["run"]["fold"] == 3
