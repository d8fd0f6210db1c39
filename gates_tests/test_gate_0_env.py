"""gate_0_env: environment, data and split are valid."""

import pytest


@pytest.mark.gate("gate_0_env")
@pytest.mark.dependency(name="gate_0_env", scope="session")
def test_gate_0_env(gate):
    assert gate.passed, gate.reason
