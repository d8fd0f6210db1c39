"""moola's layers only point down (docs/DESIGN.md, "Layers"): the import-linter contracts in
pyproject.toml hold for the code as it is, and fail on a deliberately added upward import
(inside a function, where a lazy import would hide it from a reader)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from moola.testing import REPO

LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(root),
                                                       "PATH": "/usr/bin:/bin"})


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(REPO / "moola", root / "moola",
                    ignore=shutil.ignore_patterns("tests", "__pycache__"))
    shutil.copyfile(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_layers_point_down(tmp_path):
    r = _lint(_copy(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "moola's layers point down KEPT" in r.stdout
    assert "the gate layer points down KEPT" in r.stdout


def test_an_upward_import_inside_a_function_breaks_the_contract(tmp_path):
    root = _copy(tmp_path)
    with open(root / "moola" / "io_utils.py", "a") as f:
        f.write("\n\ndef _sneaky():\n    from moola.gates import registry  # noqa: F401\n")
    r = _lint(root)
    assert r.returncode != 0, r.stdout
    assert "moola's layers point down BROKEN" in r.stdout
    assert "moola.io_utils is not allowed to import moola.gates" in r.stdout, r.stdout


def test_the_gate_layer_keeps_its_order(tmp_path):
    """The registry sits below the built-in gates: it must not reach up to declare them."""
    root = _copy(tmp_path)
    with open(root / "moola" / "gates" / "registry.py", "a") as f:
        f.write("\n\ndef _sneaky():\n    import moola.gates.builtin  # noqa: F401\n")
    r = _lint(root)
    assert r.returncode != 0, r.stdout
    assert "the gate layer points down BROKEN" in r.stdout, r.stdout
