"""The decision: which model to deploy, and what each step bought.

Every candidate model of a run (the deep baseline, the MiniRocket control, the finetuned,
augmented and SimpleLSTM models, the ensemble, users' models declared with ``produces=``) has
pooled out-of-fold predictions of the same scored windows. The decision compares them there:

1. **Eligible** candidates: approved by their gate (:mod:`moola.approval`: judged, not failed
   on the model, not one-class, not significantly worse than what they build on) and showing
   skill over chance at ``gates.skill_alpha / m`` (Bonferroni over the m candidates compared:
   the more models are tried, the more one of them looks skilful by luck). No eligible model:
   nothing is recommended ("deploy nothing").
2. **Indistinguishable from the best**: the Model Confidence Set (Hansen, Lunde & Nason 2011;
   ``arch.bootstrap.MCS``, range statistic, stationary bootstrap with mean block
   ``gates.bootstrap_block``) at size ``1 - gates.ci_level`` over the per-window loss below,
   minus any candidate another eligible one beats significantly (moola's paired window
   bootstrap of balanced accuracy, the CI read as every gate reads it). The second rule makes
   the guarantee plain: the recommendation is never a model another eligible candidate beats
   significantly (an ineligible one, e.g. without shown skill, is not compared).
3. **Parsimony**: among those, the first in ``gates.parsimony_order`` (MiniRocket's linear
   model on fixed random features first, then SimpleLSTM, the baseline, the finetuned and the
   augmented models, the ensemble; models not named take the ensemble's place, just before it,
   in chain order: after every named one when the ensemble is last, as by default. An
   ensemble may contain them and is never simpler than a member).

The per-window loss is the **class-balanced 0-1 loss** averaged over the candidate's seeds:
window i of class c costs ``mean_r [pred_ri != y_i] * n / (K * n_c)``, so the mean loss over
the windows is exactly 1 - balanced accuracy (the statistic of every skill test). Macro-F1 has
no per-window decomposition, so it is reported (the expected score, what each step bought)
but not selected on.

What each step bought is a paired macro-F1 difference with its CI on the same windows
(:func:`moola.judging.paired_comparison`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

# (label, new, reference, what it isolates): the steps whose worth the decision reports
STEPS = (
    ("pretraining", "finetuned", "random_init",
     "gate 4's recipe from the pretrained encoder over the same recipe from a randomly "
     "initialised encoder (isolates pretraining)"),
    ("pretrained over scratch", "finetuned", "baseline",
     "the finetuned model over the from-scratch baseline (pretraining plus the transfer "
     "schedule)"),
    ("augmentation", "augmented", "finetuned",
     "pseudo-samples over the finetuned model they extend"),
    ("ensemble", "ensemble", "best member", "the calibrated ensemble over its best member"),
    ("MiniRocket", "control", "baseline", "the MiniRocket control over the deep baseline"),
    ("SimpleLSTM", "simple", "finetuned", "the simple SimpleLSTM over the pretrained model"),
)


@dataclass
class Candidate:
    """One model's pooled out-of-fold predictions and its gate's approval.

    y: (n,) labels of the scored windows; pred: (R, n) each seed's predicted class."""

    name: str
    gate: str
    y: np.ndarray
    pred: np.ndarray
    approved: bool = True
    why: str = ""
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def balanced_loss(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n,) class-balanced 0-1 loss per window, averaged over the (R, n) seeds' predictions;
    its mean is 1 - pooled balanced accuracy."""
    y = np.asarray(y, dtype=np.int64)
    p = np.atleast_2d(np.asarray(pred, dtype=np.int64))
    counts = np.bincount(y, minlength=n_classes).astype(float)
    present = int((counts > 0).sum())
    weight = len(y) / (present * counts[y])
    return (p != y[None, :]).mean(axis=0) * weight


def order_key(order: Sequence[str], chain: Sequence[str], ensemble: str = "ensemble"):
    """Sort key of the parsimony order: listed names in that order; the rest, in chain order,
    just before `ensemble` (last when it is not listed): an ensemble runs its members, a
    user's models among them, so it is never the simpler of the two."""
    rank = {n: i for i, n in enumerate(order)}
    later = {n: i for i, n in enumerate(chain)}
    unnamed = rank.get(ensemble, len(order)) - 0.5
    return lambda name: (rank[name], 0) if name in rank else (unnamed,
                                                              later.get(name, len(later)))


def choose(candidates: Sequence[Candidate], *, n_classes: int, order: Sequence[str],
           alpha: float, ci_level: float, n_bootstrap: int, seed: int, block: int = 1,
           references: dict[str, Candidate] | None = None,
           max_predicted_share: float = 0.95) -> dict[str, Any]:
    """The decision over `candidates` (module docstring). `references`: models that are not
    candidates but anchor a step (the randomly initialised encoder's recipe; gate 7's best
    member under the name "best member"). `max_predicted_share`: gates.max_predicted_share,
    as the gates judge degeneracy. Every candidate must have scored the same windows (the
    same `y`). Returns a JSON-ready dict; ``recommended`` is a candidate's name or None."""
    from moola.judging import decide, paired_comparison
    from moola.metrics import (classification_metrics, paired_delta_ci, skill_detectable,
                               skill_permutation_p)

    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique, got {names}")
    by_name = {c.name: c for c in candidates}
    for c in candidates[1:]:
        if not np.array_equal(c.y, candidates[0].y):
            raise ValueError(f"candidate {c.name!r} ({c.gate}) scored other windows than "
                             f"{candidates[0].name!r}: candidates are compared on the same "
                             f"pooled out-of-fold windows; rebuild it under the run's protocol")
    m = max(1, len(candidates))
    alpha_c = alpha / m
    n_perm = max(2000, math.ceil(20 / alpha_c))  # p can reach well below the corrected level
    rows: dict[str, dict[str, Any]] = {}
    eligible: list[str] = []
    for c in candidates:
        met = classification_metrics(c.y, c.pred, n_classes, n_bootstrap=n_bootstrap,
                                     ci_level=ci_level, seed=seed, block=block,
                                     max_predicted_share=max_predicted_share)
        p = skill_permutation_p(c.y, c.pred, n_classes, n_permutations=n_perm, seed=seed)
        skill = p < alpha_c and met["balanced_accuracy"] > met["chance_balanced_accuracy"]
        why = c.why
        if c.approved and met["degenerate"]:
            why = "it predicts essentially one class"
        elif c.approved and not skill:
            why = (f"its skill over chance is not shown at the corrected level: permutation p "
                   f"{p:.4f}, not below {alpha_c:.4g} (gates.skill_alpha {alpha} / {m} "
                   f"candidates)")
        ok = c.approved and skill and not met["degenerate"]
        rows[c.name] = {"gate": c.gate, "model": c.model, "eligible": ok,
                        "why": "eligible" if ok else why,
                        "macro_f1": met["macro_f1"], "macro_f1_ci": met["ci"]["macro_f1"],
                        "balanced_accuracy": met["balanced_accuracy"],
                        "balanced_accuracy_ci": met["ci"]["balanced_accuracy"],
                        "skill_p_value": p, "n_windows": met["n"], "n_seeds": met["n_replicas"],
                        "majority_macro_f1": met["majority_baseline"]["macro_f1"],
                        "predicted_distribution": met["predicted_distribution"]}
        if ok:
            eligible.append(c.name)

    out: dict[str, Any] = {
        "recommended": None, "candidates": rows, "eligible": eligible,
        "alpha": alpha, "alpha_corrected": alpha_c, "n_candidates": len(candidates),
        "order": list(order), "ci_level": ci_level,
        "loss": "class-balanced 0-1 loss per window, averaged over seeds (mean = 1 - balanced "
                "accuracy)",
        "method": "Model Confidence Set (arch.bootstrap.MCS, range statistic) at size "
                  f"{1 - ci_level:.2g} on the loss, minus any candidate another eligible one "
                  "beats significantly (paired window bootstrap of balanced accuracy); then "
                  "the first by gates.parsimony_order",
    }
    out["steps"] = _steps(by_name, references or {}, n_classes=n_classes, ci_level=ci_level,
                          n_bootstrap=n_bootstrap, seed=seed, block=block,
                          compare=paired_comparison, decide=decide)
    if not eligible:
        # what the windows could show, read on the best model that predicts several classes
        # (a constant predictor's permutation null has no spread)
        varied = [c for c in candidates if len(np.unique(c.pred)) > 1]
        first = max(varied, key=lambda c: rows[c.name]["balanced_accuracy"], default=None)
        could = None
        if first is not None:
            could = skill_detectable(first.y, first.pred, n_classes, alpha_c,
                                     n_permutations=n_perm, seed=seed)
        out["detectable_balanced_accuracy"] = could
        detail = ""
        if could is not None:
            r = rows[first.name]
            detail = (f"; on these {r['n_windows']} scored windows {first.name} needed a "
                      f"pooled balanced accuracy above about {could:.3f} (it has "
                      f"{r['balanced_accuracy']:.3f}; chance {1 / n_classes:.3f}) to show "
                      f"skill at the corrected level")
        out["reason"] = ("deploy nothing: no candidate shows skill over chance and is approved "
                         "(" + "; ".join(f"{k}: {v['why']}" for k, v in rows.items()) + ")"
                         + detail if rows else "deploy nothing: no model was judged")
        out["indistinguishable"] = []
        return out

    # the Model Confidence Set over the eligible candidates' per-window losses
    losses = np.stack([balanced_loss(by_name[n].y, by_name[n].pred, n_classes)
                       for n in eligible], axis=1)
    in_mcs = set(eligible)
    if len(eligible) > 1 and np.ptp(losses - losses[:, :1], axis=0).any():
        in_mcs = _confidence_set(losses, eligible, rows, ci_level=ci_level,
                                 n_bootstrap=n_bootstrap, seed=seed, block=block)
    # ... minus any candidate another eligible candidate beats significantly
    beaten: dict[str, list[str]] = {n: [] for n in eligible}
    for a in eligible:
        for b in eligible:
            if a == b:
                continue
            d = paired_delta_ci(by_name[a].y, by_name[a].pred, by_name[b].pred,
                                metric="balanced_accuracy", n_classes=n_classes,
                                n_bootstrap=n_bootstrap, ci_level=ci_level, seed=seed,
                                block=block)
            if d["ci"][0] > 0:  # b beats a significantly
                beaten[a].append(b)
    for n in eligible:
        rows[n]["in_mcs"] = n in in_mcs
        rows[n]["beaten_by"] = beaten[n]
    kept = [n for n in eligible if n in in_mcs and not beaten[n]]
    if not kept:  # the MCS and the pairwise rule disagree entirely: the pairwise rule decides
        kept = [n for n in eligible if not beaten[n]] or eligible
    for n in eligible:  # why an eligible model is not among the indistinguishable ones
        if n not in kept:
            p = rows[n].get("mcs_p_value")
            rows[n]["why"] = (f"beaten significantly by {', '.join(beaten[n])}" if beaten[n]
                              else "outside the Model Confidence Set" + (
                                  f" (MCS p-value {p:.3f})" if p is not None else ""))
    chain = [c.name for c in candidates]
    kept.sort(key=order_key(order, chain))
    best = min(eligible, key=lambda n: float(losses[:, eligible.index(n)].mean()))
    rec = kept[0]
    r = rows[rec]
    out.update(recommended=rec, indistinguishable=kept, best=best, expected={
        "macro_f1": r["macro_f1"], "macro_f1_ci": r["macro_f1_ci"],
        "balanced_accuracy": r["balanced_accuracy"],
        "balanced_accuracy_ci": r["balanced_accuracy_ci"], "n_windows": r["n_windows"],
        "n_seeds": r["n_seeds"], "ci_level": ci_level})
    others = [n for n in kept if n != rec]
    lo, hi = r["macro_f1_ci"]
    out["reason"] = (
        f"deploy {rec} ({by_name[rec].model or rec}): expected macro-F1 {r['macro_f1']:.3f} "
        f"({ci_level:.0%} CI {lo:.3f}-{hi:.3f}) on {r['n_windows']} scored windows x "
        f"{r['n_seeds']} seeds; "
        + (f"indistinguishable from it: {', '.join(others)}; the simplest of these by "
           f"gates.parsimony_order" if others else "no other candidate is indistinguishable "
                                                   "from it")
        + (f"; the best point estimate is {best}'s" if best != rec else ""))
    return out


def _confidence_set(losses: np.ndarray, names: list[str], rows: dict[str, dict[str, Any]], *,
                    ci_level: float, n_bootstrap: int, seed: int, block: int) -> set[str]:
    """The names in arch's Model Confidence Set of the (n, m) losses; each row gets its MCS
    p-value. Models whose loss differences have no spread (identical errors on every window)
    cannot be told apart: arch's statistic is undefined there, so they stay in the set."""
    import warnings

    from arch.bootstrap import MCS

    # identical loss columns (the same errors on every window) are one model to the MCS
    uniq, inverse = np.unique(losses, axis=1, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    pvalue = np.ones(uniq.shape[1])
    included = set(range(uniq.shape[1]))
    if uniq.shape[1] > 1:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mcs = MCS(uniq, size=1 - ci_level, reps=n_bootstrap, block_size=max(1, block),
                          method="R", bootstrap="stationary", seed=np.random.default_rng(seed))
                mcs.compute()
            p = mcs.pvalues.iloc[:, 0]
            pvalue = np.array([float(p.loc[j]) if j in p.index else np.nan
                               for j in range(uniq.shape[1])])
            included = set(int(j) for j in mcs.included)
        except (IndexError, ValueError, ZeroDivisionError):  # arch's statistic is undefined
            pass  # (e.g. differences without spread): the pairwise rule alone decides
    out = set()
    for i, name in enumerate(names):
        j = int(inverse[i])
        rows[name]["mcs_p_value"] = None if np.isnan(pvalue[j]) else float(pvalue[j])
        if j in included or np.isnan(pvalue[j]):
            out.add(name)
    return out


def _steps(by_name: dict[str, Candidate], refs: dict[str, Candidate], *, n_classes: int,
           ci_level: float, n_bootstrap: int, seed: int, block: int, compare,
           decide) -> dict[str, Any]:
    """What each step bought: {label: paired macro-F1 comparison (new minus reference) with
    its outcome (helped / hurt / inconclusive) and what it isolates}, for the steps whose two
    models this run has."""
    from moola.judging import ci_text

    models = {**by_name, **refs}
    out: dict[str, Any] = {}
    for label, new, ref, what in STEPS:
        if new not in models or ref not in models:
            continue
        a, b = models[ref], models[new]
        if not np.array_equal(a.y, b.y):
            continue
        cmp = compare(a.y, a.pred, b.pred, reference=ref, n_classes=n_classes,
                      n_bootstrap=n_bootstrap, ci_level=ci_level, seed=seed, block=block)
        outcome = decide(cmp, pass_above=0.0, fail_below=0.0)
        cmp.update(new=new, what=what, outcome={"passed": "helped", "failed": "hurt"}.get(
            outcome, "inconclusive"), text=ci_text(cmp))
        out[label] = cmp
    return out
