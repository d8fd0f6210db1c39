"""gate_1_smoke_enhanced: EnhancedSimpleLSTM from scratch learns, with skill over chance."""

import pytest


@pytest.mark.gate("gate_1_smoke_enhanced")
def test_gate_1_smoke_enhanced(gate):
    assert gate.passed, gate.reason
