"""gate_7_ensemble: the calibrated ensemble is not worse than its best member."""

import pytest


@pytest.mark.gate("gate_7_ensemble")
def test_gate_7_ensemble(gate):
    assert gate.passed, gate.reason
