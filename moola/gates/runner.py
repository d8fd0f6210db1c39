"""Run gates in chain order with memoised verdicts; no pytest here.

``judge(ctx, gate)`` is what a gate test calls: it first judges the gates this one needs
(their work comes from the cache, built if missing) and returns a ``skipped`` verdict naming
the first of them that did not pass; otherwise it judges the gates it only uses, then runs
it. A gate listed in ``gates.skip`` is left out (skipped, saying so). This is what makes
``pytest -k gate_6`` and ``pytest -n 2`` correct without relying on pytest-dependency, which
keeps its results per process and cannot see a gate that was deselected or ran on another
xdist worker. Every skip reads the same way (:func:`skip_reason`).
"""

from __future__ import annotations

import time
import traceback

from moola.diskspace import as_disk_full, is_disk_full
from moola.gates.registry import REGISTRY, call_judge
from moola.gates.context import GateContext
from moola.verdict import Verdict


def upstream_of(gate: str) -> tuple[str, ...]:
    """The gates judged before `gate` (needed or used), in chain order (moola.gates.registry)."""
    return REGISTRY.upstream(gate)


def needs_of(gate: str) -> tuple[str, ...]:
    """The gates that must pass before `gate` runs, in chain order."""
    return REGISTRY.needs(gate)


def judge(ctx: GateContext, gate: str) -> Verdict:
    """The verdict of `gate`, computed once per process (upstream gates must have passed)."""
    if gate not in ctx.verdicts:
        repairs_before = len(ctx.repairs)
        if gate in ctx.cfg.gates.skip:
            v = _left_out(ctx, gate)
        else:
            blocked = first_upstream_failure(ctx, gate)
            if blocked is None:
                for up in upstream_of(gate):  # the gates it only uses: judged, not needed
                    judge(ctx, up)
            v = _skipped(ctx, gate, blocked) if blocked is not None else _run(ctx, gate)
        # damaged cache entries moved aside and rebuilt while judging this gate or the upstream
        # gates it needed (with `-k gate_6` those are judged here, unrecorded): say so
        repairs = ctx.repairs[repairs_before:]
        if repairs:
            v.reason = f"{v.reason} [{'; '.join(repairs)}]"
            v.artifacts = {**v.artifacts, "cache_repairs": repairs}
        ctx.verdicts[gate] = v
    return ctx.verdicts[gate]


def first_upstream_failure(ctx: GateContext, gate: str) -> Verdict | None:
    """The first verdict of a gate `gate` needs that did not pass (failed or skipped), else
    None."""
    for up in needs_of(gate):
        v = judge(ctx, up)
        if not v.passed:
            return v
    return None


def _run(ctx: GateContext, gate: str) -> Verdict:
    t0 = time.time()
    spec = REGISTRY[gate]
    # a read-only gate (environment and data validation) writes nothing but its results
    # record: status.json (perhaps of a run someone is watching) is left as it was; the next
    # gate that trains lists it among the finished gates
    st = None if spec.read_only else ctx.status
    if st is not None:
        st.gate = gate
        st.update(gate=gate, phase="train", step=None, total_steps=None, epoch=None, loss=None,
                  eta_s=None, last_eval=None, gates=_finished(ctx, st),
                  chain=list(REGISTRY.chain()), gate_started_unix=round(t0, 3), replica=None,
                  replica_index=None, replica_count=None,
                  replicas_together=None)  # moola status: place, progress, ETA
    try:
        v = call_judge(ctx, spec, {g: ctx.verdicts[g] for g in upstream_of(gate)
                                   if g in ctx.verdicts})
    except Exception as exc:  # a crash is a failed verdict with the cause, not a lost run
        if st is not None:
            st.update(phase="failed")
        tb = traceback.format_exc()
        reason = f"crashed: {type(exc).__name__}: {exc}"
        artifacts = {"traceback": tb}
        if is_disk_full(exc):  # which file, which directory, how much space, what to do
            reason = str(as_disk_full(exc, [ctx.cache.root, ctx.reports]))
            artifacts["disk_full"] = True
        v = Verdict(gate=gate, status="failed", config=ctx.cfg.to_dict(), reason=reason,
                    artifacts=artifacts)
    v.duration_s = round(time.time() - t0, 3)
    if st is not None:
        finished = _finished(ctx, st)
        finished[gate] = _summary(v)
        st.update(phase="done", gates=finished)
        st.flush()  # the gate's summary is on disk even if the writer throttled this update
    return v


def _summary(v: Verdict) -> dict:
    return {"status": v.status, "reason": v.reason, "duration_s": v.duration_s}


def _finished(ctx: GateContext, st) -> dict:
    """Gates finished in this run as status.json lists them, plus the read-only ones judged."""
    finished = dict(st.state.get("gates") or {})
    for g, v in ctx.verdicts.items():
        if REGISTRY[g].read_only:
            finished.setdefault(g, _summary(v))
    return finished


LEFT_OUT = "left out on purpose (gates.skip)"


def skip_reason(blocked: Verdict) -> str:
    """The one wording of a skip caused by `blocked`, a needed gate that did not pass:
    'skipped: needs G, which failed: ...', '... which needs H, which failed: ...' (the chain
    of needs down to the root cause) or '... which was left out on purpose (gates.skip)'."""
    if blocked.status != "skipped":
        return f"skipped: needs {blocked.gate}, which {blocked.status}: {blocked.reason}"
    tail = blocked.reason.removeprefix("skipped: ")
    if tail.startswith("needs "):
        return f"skipped: needs {blocked.gate}, which {tail}"
    if tail == LEFT_OUT:
        return f"skipped: needs {blocked.gate}, which was {tail}"
    return f"skipped: needs {blocked.gate}, which was skipped: {tail}"


def _skipped(ctx: GateContext, gate: str, blocked: Verdict) -> Verdict:
    root = (blocked.comparison or {}).get("blocked_by") or blocked.gate
    return Verdict(gate=gate, status="skipped", reason=skip_reason(blocked),
                   config=ctx.cfg.to_dict(), comparison={"blocked_by": root})


def _left_out(ctx: GateContext, gate: str) -> Verdict:
    return Verdict(gate=gate, status="skipped", reason=f"skipped: {LEFT_OUT}",
                   config=ctx.cfg.to_dict(), comparison={"left_out": True})
