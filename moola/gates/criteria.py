"""The criteria every classifier gate applies, built-in or yours: one rule, one place.

Scoring with CIs (:func:`score`, :func:`replicated_metrics`), the one-class and skill rules
(:func:`classifier_problems`, :func:`skill_not_shown`, :func:`skill_inconclusive`), paired
comparisons routed to passed / inconclusive / failed (:func:`compare`, :func:`decide_comparison`),
what a model builds on (:func:`builds_on`) and which models may join the ensemble
(:func:`approved_members`, with :mod:`moola.approval`). Thresholds come from the configuration
(``gates.*``, passed in by the caller), never from defaults written here.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from moola.approval import approval, significantly_worse, worse_text
from moola.gates.artifacts import Ensemble, TrainedModel
from moola.gates.context import GateContext
from moola.gates.registry import REGISTRY
from moola.verdict import Verdict


def score(ctx: GateContext, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Classification metrics with CIs, majority baseline and predicted-class distribution.

    y_pred: (n,) or (R, n) replicas; the CIs resample windows (see moola.metrics).
    """
    from moola.metrics import classification_metrics

    g = ctx.cfg.gates
    return classification_metrics(
        y_true, y_pred, len(ctx.dataset.classes), n_bootstrap=g.n_bootstrap,
        ci_level=g.ci_level, seed=ctx.cfg.run.seed, max_predicted_share=g.max_predicted_share,
        class_names=ctx.dataset.classes, block=g.bootstrap_block,
    )


def classifier_problems(name: str, m: dict[str, Any], require_skill: bool = True,
                        alpha: float | None = None) -> list[str]:
    """Why a classifier cannot pass: one-class predictions, or (`require_skill`) no skill over
    chance (the permutation test of balanced accuracy at level `alpha`, gates.skill_alpha)."""
    if require_skill and alpha is None:
        raise ValueError("classifier_problems: require_skill needs alpha (gates.skill_alpha)")
    problems = []
    if m["degenerate"]:
        dist = ", ".join(f"{k}: {v}" for k, v in m["predicted_distribution"].items())
        problems.append(
            f"{name} predicts essentially one class (predicted {dist}; more than "
            f"gates.max_predicted_share = {m['max_predicted_share']} of them "
            f"one class); {_baseline_text(m)}; a constant predictor is not a model: check "
            f"normalisation, class weighting and the learning rate")
    no_skill = skill_not_shown(name, m, alpha) if require_skill else None
    if no_skill:
        problems.append(f"{no_skill}; more or cleaner labels, or a longer training budget, are "
                        f"needed before any comparison means anything")
    return problems


def skill_not_shown(name: str, m: dict[str, Any], alpha: float) -> str | None:
    """What the permutation test of balanced accuracy against chance found when it is not below
    `alpha` (gates.skill_alpha), or None when the model shows skill."""
    from moola.metrics import skill_over_chance

    skilful, p, chance = skill_over_chance(m, alpha)
    if skilful:
        return None
    lo, hi = m["ci"]["balanced_accuracy"]
    return (f"{name} shows no significant skill over chance: balanced accuracy "
            f"{m['balanced_accuracy']:.3f} ({m['ci_level']:.0%} CI {lo:.3f}-{hi:.3f}) vs chance "
            f"{chance:.3f}, permutation p = {p:.4f}, not below {alpha} "
            f"on {m['n']} scored windows x {m.get('n_replicas', 1)} seeds "
            f"(macro-F1 {m['macro_f1']:.3f}; {_baseline_text(m)})")


def skill_inconclusive(name: str, m: dict[str, Any], alpha: float) -> str | None:
    """Gates after gate 1 (4, 5, 7): a model that is not degenerate but whose skill test falls
    short of `alpha` is inconclusive, not failed. Gate 1 has shown the recipe's skill on these
    windows; falling short of p < alpha on a few dozen windows is not evidence of no skill (on
    GunPoint the finetuned model, balanced accuracy 0.745 on 24 windows, gave p 0.0105 and
    0.0140 at two seeds and stopped the chain there, while other seeds went on). The verdict
    records ``skill_shown: False``: such a model is never exported and joins no ensemble
    (moola.export, gate 7)."""
    if m["degenerate"]:
        return None  # classifier_problems fails it
    text = skill_not_shown(name, m, alpha)
    return None if text is None else (
        f"inconclusive: {text}; gate 1's baseline showed skill on these windows, this model "
        f"has not: it is neither exported nor ensembled; more scored windows can tell")


def join_skill(unproven: str | None, inconclusive: str | None, outcome: str,
                  cmp: dict[str, Any]) -> str | None:
    """A gate's inconclusive reason when its model's skill is not shown (`unproven`), beside
    what its comparison found: a passed comparison is named, so the gain is not hidden."""
    from moola.judging import ci_text

    if not unproven:
        return inconclusive
    if outcome == "passed":
        return f"{unproven} (the comparison alone passes: {ci_text(cmp)})"
    if inconclusive:
        return f"{unproven}; and {inconclusive.removeprefix('inconclusive: ')}"
    return unproven


def skill_shown(m: dict[str, Any], alpha: float) -> bool:
    """What a verdict records as ``skill_shown``: the permutation p of balanced accuracy is
    below `alpha` (a degenerate model may pass it and still fails its gate)."""
    from moola.metrics import skill_over_chance

    return bool(skill_over_chance(m, alpha)[0])


def _baseline_text(m: dict[str, Any]) -> str:
    maj = m["majority_baseline"]
    return (f"the majority-class baseline (always '{maj['class']}') scores accuracy "
            f"{maj['accuracy']:.3f}, macro-F1 {maj['macro_f1']:.3f}")


def key_metric(name: str, value: Any, threshold: Any = None, op: str = "") -> dict[str, Any]:
    return {"name": name, "value": value, "threshold": threshold, "op": op}


def verdict_from_problems(ctx: GateContext, gate: str, problems: list[str], ok_reason: str,
             warnings: list[str] | None = None, inconclusive: str | None = None,
             notes: list[str] | None = None, **kw: Any) -> Verdict:
    """failed (problems) > inconclusive > warning > passed; notes are appended to any reason."""
    if problems:
        status, reason = "failed", "; ".join(problems)
    elif inconclusive:
        status, reason = "inconclusive", "; ".join([inconclusive] + (warnings or []))
    elif warnings:
        status, reason = "warning", "; ".join(warnings)
    else:
        status, reason = "passed", ok_reason
    if notes:
        reason = "; ".join([reason] + notes)
    return Verdict(gate=gate, status=status, reason=reason, config=ctx.cfg.to_dict(), **kw)


def script_fields(m: dict[str, Any], train_acc: list[float] | None = None) -> dict[str, Any]:
    """The earlier scripts' record fields, so their jq recipes keep working.

    val_f1 is the pooled out-of-fold *macro*-F1 (the scripts' was weighted F1 on one split),
    val_acc the accuracy of the same predictions, train_acc the mean over replicas (or folds)
    of each model's accuracy on its own training rows; a gate without training rows of its
    own (gate 7) has none.
    """
    out = {"val_f1": m["macro_f1"], "val_acc": m["accuracy"]}
    if train_acc:
        out["train_acc"] = float(np.mean(train_acc))
    return out


def replicated_metrics(ctx: GateContext, w: TrainedModel) -> dict[str, Any]:
    """Pooled metrics of a replicated model, its per-seed spread, the held-out test score and
    the scripts' fields (:func:`script_fields`)."""
    from moola.judging import seed_spread

    m = score(ctx, w.y, w.pred)
    m.update(script_fields(m, [r["train_acc"] for r in w.replicas]))
    m["seed_spread"] = seed_spread(m["per_replica_macro_f1"])
    m["seeds"] = [int(s) for s in w.seeds]
    m["n_folds"] = int(len(np.unique(w.fold_of)))
    reps = w.replicas
    m["one_class_replicas"] = [r["replica"] for r in reps if _one_class(w, r)]
    # per replica: its seed (moola.protocol.replicas.replica_seeds) and the epochs it could run
    # (moola.train.classify.epoch_budget) and ran: `--max-epochs` is a floor on small data
    m["replica_epochs"] = {r["replica"]: {"seed": int(r["seed"]),
                                          "max_epochs": r.get("max_epochs"),
                                          "epochs_run": r.get("epochs_run")} for r in reps}
    if len(w.test_idx):
        # held-out confirmation: each seed's last-fold model on test_idx; no gate decision uses it
        t = score(ctx, w.y_test, w.test_proba.mean(axis=0).argmax(axis=1))
        m["test"] = {"macro_f1": t["macro_f1"], "ci": t["ci"]["macro_f1"], "n": t["n"],
                     "balanced_accuracy": t["balanced_accuracy"],
                     "used_by_gate": False}
    return m


def _one_class(w: TrainedModel, rep: Mapping[str, Any]) -> bool:
    seeds = [int(s) for s in w.seeds]
    r = seeds.index(int(rep["seed"]))
    return len(np.unique(w.pred[r][w.fold_of == rep["fold"]])) == 1


def seed_disagreement(ctx: GateContext, w: TrainedModel, passes) -> str | None:
    """'the outcome differs across seeds: ...' when `passes(metrics_of_one_seed)` disagrees."""
    outcomes = {int(s): bool(passes(score(ctx, w.y, w.pred[i])))
                for i, s in enumerate(w.seeds)}
    if len(set(outcomes.values())) < 2:
        return None
    good = [s for s, ok in outcomes.items() if ok]
    bad = [s for s, ok in outcomes.items() if not ok]
    return (f"the outcome differs across seeds: a single seed would pass at seeds "
            f"{listing(good)} and fail at seeds {listing(bad)}; the pooled verdict over all "
            f"seeds is the one to act on")


def listing(items: Any) -> str:
    """A list or dict for a reason a person reads: 'a, b' / 'k v, k v' (numbers rounded)."""
    from moola.report.fmt import value

    if isinstance(items, Mapping):
        return ", ".join(f"{k} {value(v)}" for k, v in items.items())
    return ", ".join(value(v) for v in items)


def held_out_note(m: dict[str, Any]) -> list[str]:
    t = m.get("test")
    if not t:
        return []
    return [f"held-out test windows (never used by a gate): macro-F1 {t['macro_f1']:.3f} "
            f"(CI {t['ci'][0]:.3f}-{t['ci'][1]:.3f}, n={t['n']})"]


def check_same_windows(*works: TrainedModel) -> None:
    """Paired comparisons need both models' predictions of the same scored windows."""
    first = works[0]
    for w in works[1:]:
        if not np.array_equal(w.score_idx, first.score_idx):
            raise ValueError(
                f"paired comparison of artifacts {first.artifact.get('key')} and "
                f"{w.artifact.get('key')}: they scored different windows (built under other "
                f"folds); rerun with --rebuild")


def paired_scores(ctx: GateContext, new: TrainedModel, ref: TrainedModel) -> tuple[dict, dict]:
    """Metrics of the replicated model `new` and of `ref`, which scored the same windows."""
    check_same_windows(ref, new)
    return replicated_metrics(ctx, new), score(ctx, ref.y, ref.pred)


def compare(ctx: GateContext, reference: str, y: np.ndarray, pred_ref: np.ndarray,
             pred_new: np.ndarray) -> dict[str, Any]:
    from moola.judging import paired_comparison

    g = ctx.cfg.gates
    return paired_comparison(y, pred_ref, pred_new, reference=reference,
                             n_classes=len(ctx.dataset.classes), n_bootstrap=g.n_bootstrap,
                             ci_level=g.ci_level, seed=ctx.cfg.run.seed,
                             block=g.bootstrap_block)


def decide_comparison(ctx: GateContext, cmp: dict[str, Any], y: np.ndarray, pred_ref: np.ndarray,
            pred_new: np.ndarray, seeds: Any, *, pass_above: float,
            fail_below: float) -> tuple[str, str | None]:
    """The pooled outcome, and a note when a single seed's comparison would decide otherwise.

    Per-seed outcomes pair seed i of both sides (a one-replica reference, the control, is
    paired with every seed). They are reported, never acted on.
    """
    from moola.judging import decide

    outcome = decide(cmp, pass_above=pass_above, fail_below=fail_below)
    cmp["outcome"] = outcome
    ref, new = np.atleast_2d(pred_ref), np.atleast_2d(pred_new)
    if new.shape[0] < 2 or ref.shape[0] not in (1, new.shape[0]):
        return outcome, None
    per_seed = {}
    for i, s in enumerate(seeds):
        c = compare(ctx, cmp["reference"], y, ref[min(i, ref.shape[0] - 1)], new[i])
        per_seed[int(s)] = decide(c, pass_above=pass_above, fail_below=fail_below)
    cmp["per_seed_outcome"] = per_seed
    if len(set(per_seed.values())) < 2:
        return outcome, None
    each = ", ".join(f"seed {s}: {o}" for s, o in per_seed.items())
    return outcome, (f"the outcome differs across seeds ({each}); the pooled outcome over all "
                     f"seeds is the one to act on")


def route(outcome: str, cmp: dict[str, Any], *, policy: str, failed: str, what: str,
           problems: list[str]) -> tuple[list[str], str | None]:
    """Where a policy-governed comparison's outcome goes: failed -> `problems` (policy "fail")
    or the warnings (policy "warn"); inconclusive -> the reason (see moola.judging)."""
    from moola.judging import inconclusive_text

    warnings: list[str] = []
    if outcome == "failed":
        (problems if policy == "fail" else warnings).append(f"{failed} (policy '{policy}')")
        return warnings, None
    return warnings, inconclusive_text(cmp, what) if outcome == "inconclusive" else None


def policy_comparison(ctx: GateContext, reference: str, ref: TrainedModel, pred_new: np.ndarray,
                       seeds: Any, threshold: float, *, policy: str, problems: list[str],
                       failed, what: str) -> tuple[dict, str | None, list[str], str | None]:
    """A policy-governed comparison (gates 2 and 6): `pred_new` minus `ref` passes above
    `threshold` and fails below it, significantly; a failure goes where the policy says, in
    the words of `failed(comparison)`. Returns (comparison, per-seed note, warnings,
    inconclusive reason)."""
    cmp = compare(ctx, reference, ref.y, ref.pred, pred_new)
    outcome, differs = decide_comparison(ctx, cmp, ref.y, ref.pred, pred_new, seeds,
                               pass_above=threshold, fail_below=threshold)
    cmp.update(policy=policy, outcome=outcome)
    warnings, inconclusive = route(outcome, cmp, policy=policy, problems=problems,
                                    failed=failed(cmp), what=what)
    return cmp, differs, warnings, inconclusive


def builds_on(gate: str, m: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """What a comparison records when its model builds on `gate`'s model (moola.approval:
    a model significantly worse than the one it builds on is never approved)."""
    return {"builds_on": gate, "model_macro_f1": m["macro_f1"],
            "builds_on_macro_f1": ref["macro_f1"]}


def worse_note(cmp: dict[str, Any], outcome: str, what: str) -> str | None:
    """The note of a model significantly worse than what it builds on, when its gate did not
    fail for it (a relaxed bound, e.g. smoke's gates.max_harm): it is still never deployed."""
    if outcome == "failed" or not significantly_worse(cmp):
        return None
    return (f"{worse_text(cmp, what)}: within the gate's bound, but never exported, ensembled "
            f"or recommended")


def detectable_note(ctx: GateContext, w: TrainedModel, m: dict[str, Any], alpha: float) -> str:
    """What a failed skill test could have seen: the pooled balanced accuracy these windows
    needed (the permutation null's 1 - alpha quantile), so that "no skill shown on 16 windows"
    does not read as "your data has no signal"."""
    from moola.metrics import skill_detectable

    need = skill_detectable(w.y, w.pred, len(ctx.dataset.classes), alpha, seed=ctx.cfg.run.seed)
    text = (f"on these {m['n']} scored windows a pooled balanced accuracy above about "
            f"{need:.3f} (chance {m['chance_balanced_accuracy']:.3f}) was needed to show skill at "
            f"gates.skill_alpha = {alpha}: a model this short of it may still have skill these "
            f"windows cannot show; more labeled windows, or protocol.seeds, tell")
    t = m.get("test")
    if t:
        text += (f" (the held-out test windows, which no gate uses, score balanced accuracy "
                 f"{t['balanced_accuracy']:.3f} on {t['n']})")
    return text


def protocol_text(m: dict[str, Any]) -> str:
    return (f"{m['n']} scored windows x {m.get('n_replicas', 1)} seeds over "
            f"{m.get('n_folds', '?')} walk-forward folds")


# ---------------------------------------------------------------------------------------------
# gates
# ---------------------------------------------------------------------------------------------


def approved_members(upstream: Mapping[str, Verdict]) -> tuple[list[str], dict[str, str]]:
    """Gate 7's members before calibration: every ensemble candidate (a gate declared with
    ensemble=True, built-in or a user's) whose verdict the approval rule approves
    (moola.approval), in declaration order, and {name: why} for those it does not. The runner
    judges every candidate's gate first; a candidate absent from `upstream` (a direct call
    that passes only some verdicts) is taken as approved by the caller."""
    approved, excluded = [], {}
    for name, spec in REGISTRY.ensemble_candidates().items():
        v = upstream.get(spec.name)
        if v is None:
            approved.append(name)
            continue
        ok, why = approval(v)
        if ok:
            approved.append(name)
        else:
            excluded[name] = f"{why} ({spec.name})"
    return approved, excluded


def ensemble_prediction(e: Ensemble, members: list[str],
                        calibrated: bool = True) -> np.ndarray:
    """(R, n, K) probabilities of the equal-weight average of `members` per seed."""
    from moola.ensemble import average_proba

    which = "calibrated" if calibrated else "raw"
    return np.stack([average_proba([e.members[n][which][r] for n in members])
                     for r in range(len(e.seeds))])
