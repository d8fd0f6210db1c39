"""gate_4_finetune_enhanced: finetuning the pretrained encoder improves on gate 1 under the same recipe."""

import pytest


@pytest.mark.gate("gate_4_finetune_enhanced")
@pytest.mark.dependency(name="gate_4_finetune_enhanced", depends=["gate_3_pretrain_bilstm"], scope="session")
def test_gate_4_finetune_enhanced(gate):
    assert gate.passed, gate.reason
