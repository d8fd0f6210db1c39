"""Keep Python's cyclic garbage collector off the long-lived objects of a gate session.

torch, sklearn and pandas leave hundreds of thousands of module-level objects that live until the
process ends. Every full collection walks all of them again: pytest's unraisable-exception check
collects at the end of a session and the interpreter collects once more at exit, which cost
~1.5 s of a warm ``pytest -k gate_6`` (measured; docs/PERFORMANCE.md). ``gc.freeze()`` moves what
exists now into a permanent generation that collections skip, so we freeze once the heavy imports
are done, and again when the session's tests are over.

Only the outermost session freezes: a pytester session run in-process by moola's own tests must
not pin its (soon to be garbage) objects in the outer test process.
"""

from __future__ import annotations

import gc

_depth = 0


def session_configured() -> None:
    """A session is configured (its heavy imports are done): freeze, if it is the outermost."""
    global _depth
    _depth += 1
    if _depth == 1:
        gc.freeze()


def session_finished() -> None:
    """Tests are over: freeze what exists (lazily imported sklearn, pandas, sktime ...) so the
    collections pytest and the interpreter run on the way out skip it. A collection here first
    would cost what we save; the price is that a garbage cycle left at this point is never
    finalised (the process is about to end)."""
    if _depth == 1:
        gc.freeze()


def session_unconfigured() -> None:
    global _depth
    _depth = max(0, _depth - 1)
