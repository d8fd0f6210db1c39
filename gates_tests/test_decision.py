"""decision: the model to deploy (the simplest approved, skilful model no other beats
significantly), or nothing, and what each step bought."""

import pytest


@pytest.mark.gate("decision")
def test_decision(gate):
    assert gate.passed, gate.reason
