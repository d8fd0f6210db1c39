"""The terminal summary table: gate, status, key metric vs threshold, reason, duration."""

from __future__ import annotations

from typing import Any

STATUS_MARK = {"passed": "PASS", "failed": "FAIL", "warning": "WARN",
               "inconclusive": "INCONCLUSIVE", "skipped": "SKIP"}


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def key_metric_text(rec: dict[str, Any]) -> str:
    km = rec.get("key_metric") or {}
    if not km or km.get("value") is None:
        return "-"
    txt = f"{km.get('name')}={_fmt(km.get('value'))}"
    if km.get("threshold") is not None:
        txt += f" {km.get('op', '')} {_fmt(km.get('threshold'))}".rstrip()
    return txt


def format_summary(records: list[dict[str, Any]], reason_width: int = 90) -> list[str]:
    """Lines of a fixed-width table, one row per record, reasons shortened to fit."""
    rows = [("gate", "status", "key metric vs threshold", "time", "reason")]
    for r in records:
        reason = " ".join(str(r.get("reason") or "").split())
        if len(reason) > reason_width:
            reason = reason[: reason_width - 3] + "..."
        rows.append((r.get("gate", "?"), STATUS_MARK.get(r.get("status"), str(r.get("status"))),
                     key_metric_text(r), f"{(r.get('duration_s') or 0):.1f}s", reason))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    out = []
    for i, row in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
        if i == 0:
            out.append("-" * (sum(widths) + 8 + min(reason_width, 40)))
    return out
