"""gate_1_smoke_enhanced: EnhancedSimpleLSTM from scratch learns, with skill over chance."""

import pytest


@pytest.mark.gate("gate_1_smoke_enhanced")
@pytest.mark.dependency(name="gate_1_smoke_enhanced", depends=["gate_0_env"], scope="session")
def test_gate_1_smoke_enhanced(gate):
    assert gate.passed, gate.reason
