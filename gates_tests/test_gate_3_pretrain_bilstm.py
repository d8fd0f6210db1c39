"""gate_3_pretrain_bilstm: the pretrained encoder beats trivial reconstruction and a majority probe."""

import pytest


@pytest.mark.gate("gate_3_pretrain_bilstm")
@pytest.mark.dependency(name="gate_3_pretrain_bilstm", depends=["gate_2_control_minirocket"], scope="session")
def test_gate_3_pretrain_bilstm(gate):
    assert gate.passed, gate.reason
