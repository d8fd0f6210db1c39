"""The decision, declared as the chain's last gate: which model to deploy (moola.decision).

It uses every other gate (judged first, from the cache) but needs none of them to pass: it is
made from whatever was judged. A session stopped early (``-x`` at a failed gate) makes it at
its end from the gates it judged (moola.plugin); ``pytest -k decision`` remakes it alone
from the cache. Its verdict is passed when a model is recommended and failed when nothing may
be deployed; its metrics are the whole decision, which report.json also carries under the
top-level key ``"decision"``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from moola.approval import approval
from moola.gates import artifacts
from moola.gates.builtin import ENSEMBLE_GATE  # the gates it uses are declared before it
from moola.gates.context import GateContext
from moola.gates.registry import REGISTRY, gate
from moola.verdict import Verdict

DECISION = "decision"


def candidates_of(ctx: GateContext, upstream: Mapping[str, Verdict]):
    """(candidates, references, not_candidates) from the judged verdicts: every model a
    judged gate produced (its pooled out-of-fold predictions, its approval), the ensemble
    when gate 7 built one, and the models that anchor a step without being candidates."""
    from moola.decision import Candidate
    from moola.gates.criteria import ensemble_prediction

    cands, refs, absent = [], {}, {}
    for name, spec in REGISTRY.producers().items():
        if spec.producer is None:  # a gate that names its model but gives no way to load it
            absent[name] = f"{spec.name} declares produces={name!r} without a producer"
            continue
        v = upstream.get(spec.name)
        if v is None or v.status == "skipped":
            absent[name] = f"{spec.name} was {'not judged' if v is None else v.reason}"
            continue
        if "traceback" in (v.artifacts or {}):
            absent[name] = f"{spec.name} crashed: {v.reason}"
            continue
        try:
            model = spec.producer(ctx)
        except Exception as exc:  # one unreadable model leaves the others to decide between
            absent[name] = (f"{spec.name}: its model could not be read "
                            f"({type(exc).__name__}: {exc})")
            continue
        ok, why = approval(v)
        cands.append(Candidate(name, spec.name, np.asarray(model.y), np.asarray(model.pred),
                               ok, why, model.model))
        if spec.name == "gate_4_finetune_enhanced":  # its control that isolates pretraining
            try:
                r = artifacts.random_init(ctx)
            except LookupError:  # not built (a gate 4 from before the control existed)
                r = None
            if r is not None and np.array_equal(r.y, model.y):
                refs["random_init"] = Candidate("random_init", spec.name, np.asarray(r.y),
                                                np.asarray(r.pred), model=r.model)
    v7 = upstream.get(ENSEMBLE_GATE)
    members = list(((v7.metrics or {}).get("members_macro_f1") or {}) if v7 else [])
    spec = REGISTRY.ensemble_candidates()
    unknown = [n for n in ((v7.metrics or {}).get("approved") or [] if v7 else [])
               if n not in spec]
    if unknown:  # a user's member whose gate this process never declared (e.g. under -n)
        absent["ensemble"] = (f"{ENSEMBLE_GATE}: its members {', '.join(unknown)} come from "
                              f"gates this process did not collect; rerun -k decision")
    elif v7 is not None and v7.status != "skipped" and members:
        e = artifacts.ensemble(ctx, {n: spec[n] for n in v7.metrics["approved"]})
        avg = ensemble_prediction(e, members)
        ok, why = approval(v7)
        cands.append(Candidate("ensemble", ENSEMBLE_GATE, np.asarray(e.y), avg.argmax(axis=2),
                               ok, why, f"calibrated ensemble of {', '.join(members)}"))
        best = (v7.comparison or {}).get("best_member")
        if best in e.members:
            refs["best member"] = Candidate("best member", ENSEMBLE_GATE, np.asarray(e.y),
                                            e.members[best]["calibrated"].argmax(axis=2),
                                            model=f"{best} (calibrated)")
    elif v7 is not None:
        absent["ensemble"] = f"{ENSEMBLE_GATE}: {v7.reason}"
    return cands, refs, absent


def make_decision(ctx: GateContext, upstream: Mapping[str, Verdict]) -> Verdict:
    """The decision's verdict from the judged gates' verdicts (moola.decision.choose)."""
    from moola.decision import choose

    g = ctx.cfg.gates
    cands, refs, absent = candidates_of(ctx, upstream)
    if not cands:
        d: dict[str, Any] = {"recommended": None, "candidates": {}, "steps": {},
                             "reason": "deploy nothing: no gate that trains a model was judged "
                                       "(" + "; ".join(f"{k}: {v}" for k, v in absent.items())
                                       + ")"}
    else:
        for c in [c for c in cands[1:] if not np.array_equal(c.y, cands[0].y)]:
            cands.remove(c)  # another protocol's windows (a stale user artifact): not comparable
            absent[c.name] = f"{c.gate}: scored other windows than the other candidates"
        d = choose(cands, n_classes=len(ctx.dataset.classes), order=g.parsimony_order,
                   alpha=g.skill_alpha, ci_level=g.ci_level, n_bootstrap=g.n_bootstrap,
                   seed=ctx.cfg.run.seed, block=g.bootstrap_block, references=refs,
                   max_predicted_share=g.max_predicted_share)
    d["not_candidates"] = absent
    d["judged_gates"] = [n for n in REGISTRY.chain() if n in upstream]
    rec = d["recommended"]
    exp = d.get("expected") or {}
    km = {"name": f"{rec} macro_f1", "value": exp.get("macro_f1"), "threshold": None,
          "op": ""} if rec else None
    return Verdict(gate=DECISION, status="passed" if rec else "failed", reason=d["reason"],
                   model=rec, metrics=d, config=ctx.cfg.to_dict(), key_metric=km)


@gate(DECISION, after="gate_0_env", final=True)
def decision(ctx: GateContext, upstream: Mapping[str, Verdict]) -> Verdict:
    """The model to deploy: the simplest of the approved, skilful models that no other beats
    significantly, and what each step bought (moola.decision)."""
    return make_decision(ctx, upstream)
