"""gate_5_augment: pseudo-samples are faithful and do not significantly hurt the real scored
windows (inconclusive when the windows cannot tell)."""

import pytest


@pytest.mark.gate("gate_5_augment")
def test_gate_5_augment(gate):
    assert gate.passed, gate.reason
