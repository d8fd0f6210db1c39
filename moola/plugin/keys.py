"""What the plugin's modules share: the session's stash keys, the gate a test runs, the
warning category of a gate that passed with a warning."""

from __future__ import annotations

import pytest

CTX_KEY = pytest.StashKey["Any"]()
RECORDS_KEY = pytest.StashKey["list"]()
PLOTS_KEY = pytest.StashKey["Any"]()  # the session's PlotWorker, or None
JSON_REPORT_PATH_KEY = pytest.StashKey[str]()  # where report.json was written atomically
WARMUP_KEY = pytest.StashKey["Any"]()  # the numba warm-up process this session started, or None
WRITTEN_KEY = pytest.StashKey[set]()  # gates whose record this session appended to the log
SESSION_KEY = pytest.StashKey["Any"]()  # the running session (to stop it on a full disk)
DISK_FULL_KEY = pytest.StashKey[list]()  # DiskFullErrors met writing records / report.json
NO_DECISION_KEY = pytest.StashKey["Any"]()  # a session-end decision without candidates
EXPORT_ERRORS_KEY = pytest.StashKey[list]()  # controller: records whose model export failed
from moola.gates.decision_gate import DECISION  # noqa: E402,F401  (the chain's last gate)
VERDICT_KEY = pytest.StashKey["Any"]()


class MoolaGateWarning(UserWarning):
    """A gate passed with a warning (the chain continues)."""


def gate_name(item: pytest.Item) -> str | None:
    m = item.get_closest_marker("gate")
    return m.args[0] if m and m.args else None
