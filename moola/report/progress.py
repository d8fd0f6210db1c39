"""Where a run is, from its status file and the results log: the gate's place in the chain,
its progress over its replicas (seeds x folds) and the ETAs of the gate and of the chain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from moola.report.fmt import num
from moola.report.results import latest_by_gate
from moola.report.runs import gate_durations, run_settings

FINISHED_PHASES = ("done", "failed")
MIN_FRACTION_FOR_ETA = 0.02  # below it elapsed / fraction says more about start-up than speed


def chain_of(status: dict[str, Any]) -> list[str]:
    """The gate names of the chain, in order, as the run wrote them (empty when unknown)."""
    chain = status.get("chain")
    return [g for g in chain if isinstance(g, str)] if isinstance(chain, list) else []


def finished_gates(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The gates this run finished, as the status file lists them ({gate: summary})."""
    gates = status.get("gates")
    return {g: v for g, v in gates.items() if isinstance(v, dict)} if isinstance(gates, dict) else {}


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, ... 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass
class Progress:
    """Where a run is, derived from its status file and the results log."""

    gate: str | None
    position: tuple[int, int] | None  # (1-based place of the gate in the chain, chain length)
    gate_over: bool  # the gate has finished (its summary is in the status file)
    replica: tuple[int, int, str | None] | None  # (1-based index, count, name)
    replica_fraction: float | None  # of the current replica's (or the gate's only) training
    gate_fraction: float | None
    gate_eta_s: float | None
    chain: list[str]
    finished: list[str]  # gates of the chain finished in this run
    chain_eta_s: float | None
    chain_eta_note: str


def _fraction(done: Any, total: Any) -> float | None:
    d, t = num(done), num(total)
    return None if d is None or not t or t <= 0 else min(1.0, max(0.0, d / t))


def progress(status: dict[str, Any], records: list[dict[str, Any]],
             now: float | None = None) -> Progress:
    """The gate's place in the chain, its progress over its replicas and the ETAs.

    The gate's ETA is its elapsed time scaled by the share still to do (or the trainer's own ETA
    when the gate trains one model); the chain's adds, for each gate still to come, its median
    duration in earlier runs of the log (same profile where there are any).
    """
    now = time.time() if now is None else now
    gate = status.get("gate") if isinstance(status.get("gate"), str) and status["gate"] else None
    chain = chain_of(status)
    position = (chain.index(gate) + 1, len(chain)) if gate in chain else None
    finished_live = finished_gates(status)
    fit_over = status.get("phase") in FINISHED_PHASES  # one fit of the gate, or the gate itself
    gate_over = fit_over and gate in finished_live
    in_replica = _fraction(status.get("step"), status.get("total_steps"))
    if in_replica is None:
        in_replica = _fraction(status.get("epoch"), status.get("max_epochs"))
    if fit_over:  # early stopping ends a fit before its last step
        in_replica = 1.0
    i, n = num(status.get("replica_index")), num(status.get("replica_count"))
    replica = None
    if i is not None and n and 1 <= i <= n:
        name = status.get("replica") if isinstance(status.get("replica"), str) else None
        replica = (int(i), int(n), name)
    if gate_over:
        gate_fraction = 1.0
    elif replica is not None:
        gate_fraction = (replica[0] - 1 + (in_replica or 0.0)) / replica[1]
    else:
        gate_fraction = in_replica

    run_id = status.get("run_id") if isinstance(status.get("run_id"), str) else None
    ours = latest_by_gate(records, run_id) if run_id else {}
    profile = next((p for p, _ in map(run_settings, ours.values()) if p), None)
    estimates = gate_durations(records, exclude_run=run_id, profile=profile)
    started = num(status.get("gate_started_unix"))
    elapsed = None if started is None else max(0.0, now - started)
    gate_eta = None
    if gate_over:
        gate_eta = 0.0
    elif replica is not None and elapsed is not None and gate_fraction is not None \
            and gate_fraction >= MIN_FRACTION_FOR_ETA:
        gate_eta = elapsed * (1 - gate_fraction) / gate_fraction
    elif replica is None and num(status.get("eta_s")) is not None:
        gate_eta = max(0.0, num(status.get("eta_s")))
    elif gate in estimates and elapsed is not None:
        gate_eta = max(0.0, estimates[gate][0] - elapsed)

    finished = [g for g in chain if g in finished_live or g in ours]
    to_come = [g for g in chain if g not in finished and g != gate]
    chain_eta, note = None, ""  # nothing to estimate once the last gate is over
    if chain and (to_come or not gate_over):
        unknown = [g for g in to_come if g not in estimates]
        if gate_eta is None and gate is not None and not gate_over:
            note = f"not yet: no estimate for {gate} so far"
        elif unknown:
            note = f"unknown: no earlier run of {unknown[0]} in the log"
        else:
            chain_eta = (gate_eta or 0.0) + sum(estimates[g][0] for g in to_come)
            runs_used = max((estimates[g][1] for g in to_come), default=0)
            note = ("this gate's estimate" if not to_come else
                    f"this gate + {len(to_come)} more at their median in "
                    f"{runs_used} earlier run{'s' if runs_used != 1 else ''}")
    return Progress(gate, position, gate_over, replica, in_replica, gate_fraction, gate_eta,
                    chain, finished, chain_eta, note)


