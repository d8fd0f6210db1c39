"""gate_2_control_minirocket: the MiniRocket control does not beat the deep baseline."""

import pytest


@pytest.mark.gate("gate_2_control_minirocket")
@pytest.mark.dependency(name="gate_2_control_minirocket", depends=["gate_1_smoke_enhanced"], scope="session")
def test_gate_2_control_minirocket(gate):
    assert gate.passed, gate.reason
