"""gate_4_finetune_enhanced: does finetuning the pretrained encoder help over gate 1 (same recipe)?

Passes when it helps significantly; inconclusive (the chain continues) when the windows cannot
tell; fails when it significantly hurts or the model is degenerate (docs/JUDGING.md)."""

import pytest


@pytest.mark.gate("gate_4_finetune_enhanced")
def test_gate_4_finetune_enhanced(gate):
    assert gate.passed, gate.reason
