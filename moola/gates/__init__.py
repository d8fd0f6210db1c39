"""Gate logic (plain functions returning a Verdict), declared in one registry.

Declare a gate of your own with :func:`gate` and return :func:`verdict`; your judges may take
any declared artifact by name and apply the shared :mod:`moola.gates.criteria`
(docs/WRITE_YOUR_OWN_GATE.md). Importing this package declares the built-in gates
(:mod:`moola.gates.builtin`, then the decision, :mod:`moola.gates.decision_gate`), so a user's
gate can name them in `after`. The pytest plugin that runs the chain is :mod:`moola.plugin`.
"""

from moola.gates.registry import artifact, gate, verdict
from moola.verdict import Verdict

from moola.gates import builtin, decision_gate  # noqa: E402,F401,I001  (declares the gates)

__all__ = ["Verdict", "artifact", "gate", "verdict"]
