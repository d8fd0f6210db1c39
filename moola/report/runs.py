"""The results log read as runs: one summary per run, each record's model score, and how long
each gate took in earlier runs (the ETA of ``moola status``, the history of ``moola report``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from moola.report.fmt import num
from moola.report.results import gate_sort_key, latest_by_gate, parse_timestamp

STATUSES = ("passed", "warning", "inconclusive", "failed", "skipped")


@dataclass
class RunSummary:
    """One run of the log: its newest record per gate, when it ran and with which settings."""

    run_id: str
    gates: dict[str, dict[str, Any]]  # gate -> newest record, in chain order
    started: float | None = None  # unix time of the run's first record
    profile: str | None = None
    data: str | None = None
    counts: dict[str, int] = field(default_factory=dict)  # status -> gates

    @property
    def duration_s(self) -> float:
        """Time spent in the run's gates (their recorded durations added up)."""
        return sum(num(r.get("duration_s")) or 0.0 for r in self.gates.values())


def run_settings(rec: dict[str, Any]) -> tuple[str | None, str | None]:
    """(profile, data directory) from a record's resolved config."""
    cfg = rec.get("config") if isinstance(rec.get("config"), dict) else {}
    run = cfg.get("run") if isinstance(cfg.get("run"), dict) else {}
    profile, data = run.get("profile"), run.get("data")
    return (profile if isinstance(profile, str) else None, data if isinstance(data, str) else None)


def runs(records: list[dict[str, Any]]) -> list[RunSummary]:
    """Every run in the log, oldest first (by its first record's timestamp, then file order)."""
    first: dict[str, tuple[float, int]] = {}
    for pos, rec in enumerate(records):
        rid = rec.get("run_id")
        if not isinstance(rid, str) or not rid:
            continue
        ts = parse_timestamp(rec.get("timestamp"))
        key = (float("inf") if ts is None else ts, pos)
        if rid not in first or key < first[rid]:
            first[rid] = key
    out = []
    for rid in sorted(first, key=first.__getitem__):
        gates = latest_by_gate(records, rid)
        profile = data = None
        for rec in gates.values():
            profile, data = run_settings(rec)
            if profile or data:
                break
        counts = {s: n for s in STATUSES
                  if (n := sum(1 for r in gates.values() if r.get("status") == s))}
        started = first[rid][0]
        out.append(RunSummary(rid, gates, None if started == float("inf") else started,
                              profile, data, counts))
    return out


def classification(metrics: Any) -> tuple[str, dict[str, Any]] | None:
    """(where, metrics) of the classifier scores in a record's metrics: the metrics themselves
    (where "") or the first nested dict, up to two levels down, with a numeric macro-F1
    (gate 3's linear probe: "probe.metrics")."""
    if not isinstance(metrics, dict):
        return None
    if num(metrics.get("macro_f1")) is not None:
        return "", metrics
    for k, v in metrics.items():
        if not isinstance(v, dict):
            continue
        if num(v.get("macro_f1")) is not None:
            return k, v
        for k2, v2 in v.items():
            if isinstance(v2, dict) and num(v2.get("macro_f1")) is not None:
                return f"{k}.{k2}", v2
    return None


def chance_macro_f1(m: dict[str, Any]) -> float | None:
    """Expected macro-F1 of guessing a class uniformly at random, from the class supports.

    A class with share p is then predicted with precision p and recall 1/K, so its F1 is
    2 p (1/K) / (p + 1/K); chance is the mean over classes (0.5 for two balanced classes).
    """
    per_class = m.get("per_class")
    if not isinstance(per_class, dict) or not per_class:
        return None
    support = [num(v.get("support")) if isinstance(v, dict) else None for v in per_class.values()]
    if any(s is None for s in support) or not sum(support):
        return None
    k, total = len(support), sum(support)
    f1s = [2 * (s / total) / k / ((s / total) + 1 / k) for s in support]
    return sum(f1s) / k


def gate_durations(records: list[dict[str, Any]], exclude_run: str | None = None,
                   profile: str | None = None) -> dict[str, tuple[float, int]]:
    """{gate: (median duration in s, runs it comes from)} over the runs other than
    `exclude_run` whose gate ran (skipped gates took no time); only runs with `profile` when
    any has it (a smoke run says nothing about a full one)."""
    durations: dict[str, dict[str, list[float]]] = {}  # profile -> gate -> [s]
    for run in runs(records):
        if run.run_id == exclude_run:
            continue
        for gate, rec in run.gates.items():
            d = num(rec.get("duration_s"))
            if d is not None and rec.get("status") != "skipped":
                durations.setdefault(run.profile or "", {}).setdefault(gate, []).append(d)
    pool = durations.get(profile) if profile else None
    if not pool:  # no profile, or no earlier run with it: every run, better than nothing
        pool = {}
        for per_gate in durations.values():
            for gate, ds in per_gate.items():
                pool.setdefault(gate, []).extend(ds)
    return {g: (statistics.median(ds), len(ds)) for g, ds in sorted(
        pool.items(), key=lambda kv: gate_sort_key(kv[0]))}
