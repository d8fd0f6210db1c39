"""The verdict a gate returns: passed or not, why, and the evidence.

A plain record type at the bottom of the package: the gates produce verdicts, the report,
the approval rule and the exporter read them (docs/DESIGN.md, "Layers")."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from moola.io_utils import jsonable  # noqa: F401  (re-exported: the verdict's JSON rule)

STATUSES = ("passed", "failed", "warning", "inconclusive", "skipped")


@dataclass
class Verdict:
    """Outcome of one gate.

    `status` is passed | failed | warning | inconclusive | skipped. A warning passes (the chain
    continues) but is shown as such in the summary and results log. Inconclusive: a comparison
    these windows cannot decide either way; the chain continues and the reason states the
    smallest difference the data could have detected. `reason` is one line a person can act on:
    what was expected, what was observed, what to do.
    """

    gate: str
    status: str
    reason: str
    model: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    key_metric: dict[str, Any] | None = None  # {"name", "value", "threshold", "op"} for the table

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Verdict.status {self.status!r}; allowed: {', '.join(STATUSES)}")

    @property
    def passed(self) -> bool:
        """True for passed, warning and inconclusive: the chain may continue."""
        return self.status in ("passed", "warning", "inconclusive")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN/inf become None, numpy scalars become Python numbers)."""
        # not dataclasses.asdict: it deep-copies, and the artifacts' read-only mappings
        # (types.MappingProxyType) cannot be copied; jsonable copies into plain values anyway
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Verdict":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)
