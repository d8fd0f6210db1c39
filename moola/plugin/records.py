"""The results log and report.json: each gate's record appended as its test ends, the
session-end decision, report.json written atomically, and the terminal summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moola.plugin.keys import (CTX_KEY, DECISION, DISK_FULL_KEY, EXPORT_ERRORS_KEY,
                               JSON_REPORT_PATH_KEY, NO_DECISION_KEY, RECORDS_KEY, SESSION_KEY,
                               VERDICT_KEY, WRITTEN_KEY, gate_name)
from moola.plugin.outputs import disk_full, export_model

def decision_summary(record: dict[str, Any]) -> dict[str, Any]:
    """report.json's top-level "decision": the recommended model (a name or null), why, and
    the evidence (the decision record's metrics)."""
    m = record.get("metrics") or {}
    export = (record.get("artifacts") or {}).get("model_export") or {}
    return {"recommended": m.get("recommended"), "reason": record.get("reason"),
            "status": record.get("status"), "expected": m.get("expected"),
            "indistinguishable": m.get("indistinguishable"), "steps": m.get("steps"),
            "candidates": m.get("candidates"), "model_path": export.get("path"),
            "run_id": record.get("run_id")}



class JsonReportHooks:
    """pytest-json-report hooks bound to one session's config (pytester runs several)."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.config.stash[SESSION_KEY] = session

    def pytest_json_runtest_metadata(self, item: pytest.Item, call: pytest.CallInfo):
        """Attach the verdict (when the test produced one) to the JSON report entry."""
        gate = gate_name(item)
        if gate is None:
            return None
        v = item.stash.get(VERDICT_KEY, None)
        return {"gate": gate, "verdict": v.to_dict()} if v is not None else {"gate": gate}

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Controller only (workers' reports arrive here under -n): once a gate test is over,
        append its record at once, so that a run killed later keeps it, and refresh
        report.json. Runs after pytest-json-report has folded the report into its entry."""
        if report.when != "teardown" or hasattr(self.config, "workerinput"):
            return
        plugin = getattr(self.config, "_json_report", None)
        test = getattr(plugin, "_json_tests", {}).get(report.nodeid)
        if test is not None:
            self._append([test])
            self._save_in_progress(plugin)

    @pytest.hookimpl(trylast=True)
    def pytest_json_modifyreport(self, json_report: dict) -> None:
        """Controller only: append the records not yet written (a gate interrupted before its
        teardown), make the decision if this session judged gates but not it (stopped early by
        -x, or -k without it), put it under report.json's top-level "decision", then write the
        final report.json atomically."""
        self._append(json_report.get("tests", []))
        self._session_decision()
        decision = next((r for r in self.config.stash[RECORDS_KEY] if r["gate"] == DECISION),
                        None)
        if decision is None and self.config.stash.get(NO_DECISION_KEY, None) is not None:
            v = self.config.stash[NO_DECISION_KEY]
            decision = {"metrics": v.metrics, "reason": v.reason, "status": v.status,
                        "run_id": self.config.stash[CTX_KEY].run_id}
        if decision is not None:
            json_report["decision"] = decision_summary(decision)
        _save_json_report_atomically(self.config, json_report)

    def _session_decision(self) -> None:
        """The decision from what this session judged, when it judged gates and not it."""
        from moola.diskspace import DiskFullError
        from moola.gates.decision_gate import make_decision
        from moola.verdict import Verdict
        from moola.report.records import record_from_verdict
        from moola.report.results import append_records

        ctx = self.config.stash[CTX_KEY]
        written = self.config.stash[WRITTEN_KEY]
        if DECISION in written or not written:
            return
        records = self.config.stash[RECORDS_KEY]
        if self.config.stash.get(DISK_FULL_KEY, None) or any(
                (r.get("artifacts") or {}).get("disk_full") for r in records):
            return  # a full disk stopped the session: nothing more is written
        # the verdicts of the gates this session recorded (ran as tests): the same set serially
        # and under -n, where the workers judged them and their records carry the verdicts
        recorded = {r["gate"] for r in records}
        verdicts = {g: v for g, v in ctx.verdicts.items() if g in recorded} or {
            r["gate"]: Verdict.from_dict(r) for r in records}
        verdicts.pop(DECISION, None)
        gate0 = verdicts.get("gate_0_env")
        crashed = False
        ctx.build_allowed = False  # read what the gates built; never train here
        try:
            if gate0 is not None and not gate0.passed:
                from moola.gates.runner import skip_reason

                v = Verdict(gate=DECISION, status="skipped", reason=skip_reason(gate0),
                            config=ctx.cfg.to_dict(),
                            metrics={"recommended": None, "reason": skip_reason(gate0)})
            else:
                v = make_decision(ctx, verdicts)
            if v.metrics.get("recommended") and ctx.cfg.run.export_models:
                export_model(self.config, ctx, v)  # marks it; exports only what exists
        except Exception as exc:  # a decision that cannot be made says why, never a traceback
            crashed = True
            v = Verdict(gate=DECISION, status="failed", config=ctx.cfg.to_dict(),
                        reason=f"the decision could not be made from this session's gates "
                               f"({type(exc).__name__}: {exc}); rerun it with pytest "
                               f"gates_tests -k decision",
                        metrics={"recommended": None})
        finally:
            ctx.build_allowed = True
        if not crashed and not (v.metrics.get("candidates") or v.metrics.get("recommended")):
            # no gate that trains a model was judged (e.g. -k gate_0, or gate 0 failed): the
            # answer goes into report.json only, the results log keeps the gates' records
            self.config.stash[NO_DECISION_KEY] = v
            return
        v.reason = (f"{v.reason} [made at the end of the session from the gates it judged: "
                    f"{', '.join(g for g in verdicts)}]")
        record = record_from_verdict(v.to_dict(), ctx)
        try:
            append_records(ctx.reports / "gated_workflow_results.jsonl", [record])
        except DiskFullError as exc:
            disk_full(self.config, exc)
            return
        written.add(DECISION)
        self.config.stash[RECORDS_KEY].append(record)

    def _append(self, tests: list[dict]) -> None:
        """Records of the gate tests among `tests` whose gate this session has not written."""
        from moola.diskspace import DiskFullError
        from moola.report.records import record_from_json_test
        from moola.report.results import append_records

        ctx = self.config.stash[CTX_KEY]
        written = self.config.stash[WRITTEN_KEY]
        records = [r for r in (record_from_json_test(t, ctx) for t in tests)
                   if r is not None and r["gate"] not in written]
        if not records:
            return
        try:
            append_records(ctx.reports / "gated_workflow_results.jsonl", records)
        except DiskFullError as exc:
            disk_full(self.config, exc)
            return
        written.update(r["gate"] for r in records)
        self.config.stash[RECORDS_KEY].extend(records)
        self.config.stash.setdefault(EXPORT_ERRORS_KEY, []).extend(
            r for r in records if (r["artifacts"].get("model_export") or {}).get("error"))

    def _save_in_progress(self, plugin) -> None:
        """report.json as it stands mid-run: the finished tests, marked in progress."""
        import time

        report = {"created": time.time(), "in_progress": True, "exitcode": None,
                  "root": str(self.config.rootpath),
                  "tests": [t for t in plugin._json_tests.values() if "teardown" in t]}
        _save_json_report_atomically(self.config, report, final=False)


def _save_json_report_atomically(config: pytest.Config, json_report: dict,
                                 final: bool = True) -> None:
    """Write the report where pytest-json-report would, but atomically, and (final) switch its
    own save off: it rewrites the file in place (open + write), so a reader or a --sync-cmd
    could catch it half-written. Same content: ``json.dump(report, default=str, indent=...)``.
    A full disk is reported (summary, exit code), never a traceback."""
    import json

    from moola.diskspace import DiskFullError
    from moola.io_utils import atomic_write_text

    path = config.option.json_report_file or config.stash.get(JSON_REPORT_PATH_KEY, None)
    if not path:
        return
    text = json.dumps(json_report, default=str, indent=config.option.json_report_indent)
    try:
        atomic_write_text(path, text, fsync=False)
    except DiskFullError as exc:
        disk_full(config, exc)
    if final:
        config.option.json_report_file = None  # read by the library right after this hook
        config.stash[JSON_REPORT_PATH_KEY] = str(path)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """A gate test that passed on an inconclusive or warning verdict is counted as such in
    pytest's footer ("2 passed, 5 inconclusive, 1 warned"), not as one more pass; the outcome
    (and the exit code) stays passed: the chain continues on these verdicts."""
    if report.when != "call" or not report.passed:
        return None
    status = dict(report.user_properties).get("moola_status")
    if status == "inconclusive":
        return "inconclusive", "i", "INCONCLUSIVE"
    if status == "warning":
        return "warned", "w", "WARNED"
    return None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for exc in config.stash.get(DISK_FULL_KEY, []):
        terminalreporter.write_sep("=", "moola: disk full", red=True)
        terminalreporter.write_line(str(exc), red=True)
    for r in config.stash.get(EXPORT_ERRORS_KEY, []):
        terminalreporter.write_sep("=", "moola: model export failed", red=True)
        terminalreporter.write_line(f"{r['gate']}: {r['artifacts']['model_export']['error']}",
                                    red=True)
    records = config.stash.get(RECORDS_KEY, [])
    if not records:
        return
    from moola.report.summary import format_decision, format_summary

    decision = next((r for r in records if r["gate"] == DECISION), None)
    if decision is not None:  # the answer first
        terminalreporter.write_sep("=", "moola decision")
        for line in format_decision(decision):
            terminalreporter.write_line(line, bold=line.startswith("DEPLOY"))
    terminalreporter.write_sep("=", "moola gates")
    for line in format_summary(records):
        terminalreporter.write_line(line)
    ctx = config.stash[CTX_KEY]
    terminalreporter.write_line(
        f"results: {ctx.reports / 'gated_workflow_results.jsonl'} (run_id {ctx.run_id}); "
        f"details: {ctx.reports / 'report.json'}; watch: moola status {ctx.reports}")
    exported = [Path(p).name for p in (r["artifacts"].get("model_export", {}).get("path")
                                       for r in records if r["gate"] != DECISION) if p]
    decision = next((r for r in records if r["gate"] == DECISION), None)
    rec = ((decision or {}).get("artifacts") or {}).get("model_export") or {}
    if rec.get("path"):
        terminalreporter.write_line(
            f"deploy: moola predict --model {rec['path']} --data DIR_OR_CSV --out "
            f"predictions.csv  (the recommended model; all exported: {', '.join(exported)})")
    elif exported:
        from moola.export.exporter import models_dir

        named = ((decision or {}).get("metrics") or {}).get("recommended")
        why = (f"the recommended '{named}' is not among them: {rec.get('reason')}" if named
               else "none is recommended (see the decision above)")
        terminalreporter.write_line(f"models: {models_dir(ctx)}/ ({', '.join(exported)}); {why}")
