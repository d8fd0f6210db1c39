"""Which models may be deployed: the one approval rule behind export, the ensemble and the decision.

A gate that trains a model vouches for it through its verdict. The model is **approved** when

1. its gate was judged (not skipped) and did not fail on the model itself (a gate may fail on a
   comparison in which its model is only the reference: gate 2 fails when MiniRocket beats the
   deep baseline, which says nothing against MiniRocket; such a verdict records
   ``metrics["model_failed"] = False``);
2. the model does not predict (almost) one class (``metrics["degenerate"]``);
3. its skill over chance is shown (``metrics["skill_shown"]``, the permutation test at
   ``gates.skill_alpha``; absent = not judged so, e.g. a user's gate);
4. it is not significantly worse than the model it builds on: when the verdict's comparison
   names what the model builds on (``comparison["builds_on"]``: gate 4 on the from-scratch
   baseline, gate 5 on gate 4's model, gate 7 on its best member), the paired CI of (this
   model minus that one) must not lie entirely below 0.

The rule reads only the verdict (status, metrics, comparison), so the plugin, the exporter,
gate 7 and the decision apply it alike, and a user's gate takes part by recording the same
keys. The decision asks one thing more: skill shown at ``skill_alpha`` corrected for the number
of candidates (:mod:`moola.decision`).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple


class Approval(NamedTuple):
    """Whether a verdict's model may be exported, ensembled or recommended, and why (not)."""

    approved: bool
    reason: str


def significantly_worse(comparison: Mapping[str, Any] | None) -> bool:
    """The comparison names what its model builds on and its CI lies entirely below 0."""
    cmp = comparison or {}
    ci = cmp.get("delta_ci")
    return bool(cmp.get("builds_on")) and ci is not None and ci[1] is not None and ci[1] < 0


def worse_text(comparison: Mapping[str, Any], what: str = "it") -> str:
    """'significantly worse than gate_4_finetune_enhanced's model: macro-F1 0.896 vs 0.979,
    delta -0.083 (95% CI -0.175 to -0.010)'."""
    from moola.judging import ci_text

    ref = comparison.get("builds_on")
    mine, theirs = comparison.get("model_macro_f1"), comparison.get("builds_on_macro_f1")
    figures = (f"macro-F1 {mine:.3f} vs {theirs:.3f}, " if mine is not None and theirs is not None
               else "")
    return f"{what} is significantly worse than {ref}'s model: {figures}{ci_text(comparison)}"


def approval(verdict: Any) -> Approval:
    """The approval rule (module docstring) applied to a Verdict (or a results record)."""
    get = (lambda k: verdict.get(k)) if isinstance(verdict, Mapping) else (
        lambda k: getattr(verdict, k, None))
    status, reason = get("status"), get("reason") or ""
    metrics, comparison = get("metrics") or {}, get("comparison") or {}
    if status == "skipped":
        return Approval(False, f"its gate was not judged ({reason})")
    if status == "failed" and metrics.get("model_failed", True):
        return Approval(False, f"its gate failed: {reason}")
    if metrics.get("degenerate"):
        return Approval(False, "it predicts essentially one class")
    if metrics.get("skill_shown") is False:
        return Approval(False, "its skill over chance is not shown (permutation p not below "
                               "gates.skill_alpha)")
    if significantly_worse(comparison):
        return Approval(False, worse_text(comparison))
    return Approval(True, f"approved by its gate ({status})")
