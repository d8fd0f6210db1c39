"""Results-log records derived from the pytest-json-report report (one per gate per run)."""

from __future__ import annotations

import time
from typing import Any

from moola.io_utils import jsonable


def records_from_json_report(json_report: dict[str, Any], ctx) -> list[dict[str, Any]]:
    """One record per gate test in the report, in the results-log format of DESIGN.md."""
    records = [record_from_json_test(t, ctx) for t in json_report.get("tests", [])]
    return [r for r in records if r is not None]


def record_from_json_test(test: dict[str, Any], ctx) -> dict[str, Any] | None:
    """The record of one test entry of the JSON report (None for a test that is not a gate).

    A gate test that produced a verdict contributes that verdict. One skipped before its fixture
    ran (a user's pytest-dependency marker, -x) or that crashed outside the gate gets a record
    built from the test outcome, so every gate of the run appears in the log.
    """
    meta = test.get("metadata") or {}
    gate = meta.get("gate")
    if not gate:
        return None
    v = meta.get("verdict")
    if v is None:
        v = _verdict_from_outcome(test, gate)
    return record_from_verdict(v, ctx, gate, duration_s=v.get("duration_s") or _duration(test),
                               nodeid=test.get("nodeid"))


def record_from_verdict(v: dict[str, Any], ctx, gate: str | None = None, *,
                        duration_s: float | None = None,
                        nodeid: str | None = None) -> dict[str, Any]:
    """The results-log record of a verdict (``Verdict.to_dict()``), e.g. the decision made at
    the end of a session that stopped early."""
    return jsonable({
        "run_id": ctx.run_id,
        "gate": gate or v["gate"],
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": v.get("model"),
        "config": v.get("config") or ctx.cfg.to_dict(),
        "metrics": v.get("metrics") or {},
        "comparison": v.get("comparison"),
        "status": v["status"],
        "reason": v.get("reason", ""),
        "duration_s": duration_s if duration_s is not None else v.get("duration_s"),
        "artifacts": v.get("artifacts") or {},
        "key_metric": v.get("key_metric"),
        "nodeid": nodeid,
    })


def _duration(test: dict[str, Any]) -> float:
    return round(sum((test.get(s) or {}).get("duration", 0.0)
                     for s in ("setup", "call", "teardown")), 3)


def _verdict_from_outcome(test: dict[str, Any], gate: str) -> dict[str, Any]:
    outcome = test.get("outcome")
    longrepr = ""
    for stage in ("setup", "call", "teardown"):
        st = test.get(stage) or {}
        if st.get("longrepr"):
            longrepr = str(st["longrepr"])
            break
    if outcome == "skipped":
        # pytest's skip longrepr is "(file, line, 'Skipped: reason')"
        reason = longrepr.split("Skipped: ", 1)[-1].rstrip("')\"") if longrepr else "skipped"
        return {"status": "skipped", "reason": reason}
    last = longrepr.strip().splitlines()[-1] if longrepr.strip() else outcome
    return {"status": "passed" if outcome == "passed" else "failed", "reason": last}
