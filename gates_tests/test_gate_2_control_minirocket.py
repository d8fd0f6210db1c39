"""gate_2_control_minirocket: the MiniRocket control does not beat the deep baseline."""

import pytest


@pytest.mark.gate("gate_2_control_minirocket")
def test_gate_2_control_minirocket(gate):
    assert gate.passed, gate.reason
