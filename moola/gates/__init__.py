"""Gate logic (plain functions returning a Verdict) and the pytest plugin that runs the chain."""

from moola.gates.verdict import Verdict

__all__ = ["Verdict"]
