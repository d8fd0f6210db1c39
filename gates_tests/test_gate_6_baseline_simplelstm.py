"""gate_6_baseline_simplelstm: a simple SimpleLSTM trains on the selected device; does the
pretrained model beat it (warns when the simple model is significantly better)?"""

import pytest


@pytest.mark.gate("gate_6_baseline_simplelstm")
def test_gate_6_baseline_simplelstm(gate):
    assert gate.passed, gate.reason
