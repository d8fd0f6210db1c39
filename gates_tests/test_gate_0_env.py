"""gate_0_env: environment, data and split are valid."""

import pytest


@pytest.mark.gate("gate_0_env")
def test_gate_0_env(gate):
    assert gate.passed, gate.reason
