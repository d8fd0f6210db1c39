"""Gate logic (plain functions returning a Verdict) and the pytest plugin that runs the chain.

Declare a gate of your own with :func:`gate` and return :func:`passed` (docs/WRITE_YOUR_OWN_GATE.md).
"""

from moola.gates.registry import gate, passed
from moola.gates.verdict import Verdict

__all__ = ["Verdict", "gate", "passed"]
