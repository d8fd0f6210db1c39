"""The terminal summary table: gate, status, key metric vs threshold, reason, duration."""

from __future__ import annotations

from typing import Any

from moola.report import fmt

STATUS_MARK = {"passed": "PASS", "failed": "FAIL", "warning": "WARN",
               "inconclusive": "INCONCLUSIVE", "skipped": "SKIP"}


def format_summary(records: list[dict[str, Any]], reason_width: int = 90) -> list[str]:
    """Lines of a fixed-width table, one row per record, reasons shortened to fit."""
    rows = [("gate", "status", "key metric vs threshold", "time", "reason")]
    for r in records:
        rows.append((str(r.get("gate", "?")),
                     STATUS_MARK.get(r.get("status"), fmt.text(r.get("status"))),
                     fmt.key_metric(r) or "-", fmt.human_duration(r.get("duration_s")),
                     fmt.shorten(fmt.text(r.get("reason")), reason_width)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    out = []
    for i, row in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
        if i == 0:
            out.append("-" * (sum(widths) + 8 + min(reason_width, 40)))
    return out
