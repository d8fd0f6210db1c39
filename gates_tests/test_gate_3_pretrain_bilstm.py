"""gate_3_pretrain_bilstm: the pretrained encoder beats trivial reconstruction and a majority probe."""

import pytest


@pytest.mark.gate("gate_3_pretrain_bilstm")
def test_gate_3_pretrain_bilstm(gate):
    assert gate.passed, gate.reason
