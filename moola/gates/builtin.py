"""The eight built-in gates: each one's declaration and judgement, in chain order.

Each gate is a plain function ``gate_N(ctx) -> Verdict`` declared with
:func:`moola.gates.registry.gate` (what runs before it, what it produces, whether its model may
join the ensemble); the pytest suite in ``gates_tests/`` only runs them and asserts. What a gate
judges comes from :mod:`moola.gates.artifacts` (typed, read-only; the same objects the
fixtures hand to user gates), built by :mod:`moola.gates.work` and cached; judging is cheap and
always recomputed, so a threshold change in ``--gates-config`` takes effect at once.

Every classifier verdict carries macro-F1 with its bootstrap CI, the majority-class baseline
and the predicted-class distribution, and a model that predicts (almost) one class fails.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from moola.approval import approval, significantly_worse, worse_text
from moola.gates import artifacts
from moola.gates.artifacts import TrainedModel
from moola.gates.context import GateContext
from moola.gates.registry import ENSEMBLE_GATE, REGISTRY, gate
from moola.gates.verdict import Verdict


# ---------------------------------------------------------------------------------------------
# shared judgement of a classifier
# ---------------------------------------------------------------------------------------------


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
                        alpha: float = 0.01) -> list[str]:
    """Why a classifier cannot pass: one-class predictions, or no skill over chance (the
    permutation test of balanced accuracy at level `alpha`, gates.skill_alpha)."""
    problems = []
    if m["degenerate"]:
        dist = ", ".join(f"{k}: {v}" for k, v in m["predicted_distribution"].items())
        problems.append(
            f"{name} predicts essentially one class (predicted {dist}; more than "
            f"gates.max_predicted_share = {m.get('max_predicted_share', 0.95)} of them "
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


def _skill_joined(unproven: str | None, inconclusive: str | None, outcome: str,
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


def _skill_shown(m: dict[str, Any], alpha: float) -> bool:
    """What a verdict records as ``skill_shown``: the permutation p of balanced accuracy is
    below `alpha` (a degenerate model may pass it and still fails its gate)."""
    from moola.metrics import skill_over_chance

    return bool(skill_over_chance(m, alpha)[0])


def _baseline_text(m: dict[str, Any]) -> str:
    maj = m["majority_baseline"]
    return (f"the majority-class baseline (always '{maj['class']}') scores accuracy "
            f"{maj['accuracy']:.3f}, macro-F1 {maj['macro_f1']:.3f}")


def _key_metric(name: str, value: Any, threshold: Any = None, op: str = "") -> dict[str, Any]:
    return {"name": name, "value": value, "threshold": threshold, "op": op}


def _verdict(ctx: GateContext, gate: str, problems: list[str], ok_reason: str,
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


def _seed_disagreement(ctx: GateContext, w: TrainedModel, passes) -> str | None:
    """'the outcome differs across seeds: ...' when `passes(metrics_of_one_seed)` disagrees."""
    outcomes = {int(s): bool(passes(score(ctx, w.y, w.pred[i])))
                for i, s in enumerate(w.seeds)}
    if len(set(outcomes.values())) < 2:
        return None
    good = [s for s, ok in outcomes.items() if ok]
    bad = [s for s, ok in outcomes.items() if not ok]
    return (f"the outcome differs across seeds: a single seed would pass at seeds "
            f"{_listing(good)} and fail at seeds {_listing(bad)}; the pooled verdict over all "
            f"seeds is the one to act on")


def _listing(items: Any) -> str:
    """A list or dict for a reason a person reads: 'a, b' / 'k v, k v' (numbers rounded)."""
    from moola.report.fmt import value

    if isinstance(items, Mapping):
        return ", ".join(f"{k} {value(v)}" for k, v in items.items())
    return ", ".join(value(v) for v in items)


def _test_note(m: dict[str, Any]) -> list[str]:
    t = m.get("test")
    if not t:
        return []
    return [f"held-out test windows (never used by a gate): macro-F1 {t['macro_f1']:.3f} "
            f"(CI {t['ci'][0]:.3f}-{t['ci'][1]:.3f}, n={t['n']})"]


def _same_windows(*works: TrainedModel) -> None:
    """Paired comparisons need both models' predictions of the same scored windows."""
    first = works[0]
    for w in works[1:]:
        if not np.array_equal(w.score_idx, first.score_idx):
            raise ValueError(
                f"paired comparison of artifacts {first['artifact'].get('key')} and "
                f"{w['artifact'].get('key')}: they scored different windows (built under other "
                f"folds); rerun with --rebuild")


def _paired(ctx: GateContext, new: TrainedModel, ref: TrainedModel) -> tuple[dict, dict]:
    """Metrics of the replicated model `new` and of `ref`, which scored the same windows."""
    _same_windows(ref, new)
    return replicated_metrics(ctx, new), score(ctx, ref.y, ref.pred)


def _compare(ctx: GateContext, reference: str, y: np.ndarray, pred_ref: np.ndarray,
             pred_new: np.ndarray) -> dict[str, Any]:
    from moola.judging import paired_comparison

    g = ctx.cfg.gates
    return paired_comparison(y, pred_ref, pred_new, reference=reference,
                             n_classes=len(ctx.dataset.classes), n_bootstrap=g.n_bootstrap,
                             ci_level=g.ci_level, seed=ctx.cfg.run.seed,
                             block=g.bootstrap_block)


def _decide(ctx: GateContext, cmp: dict[str, Any], y: np.ndarray, pred_ref: np.ndarray,
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
        c = _compare(ctx, cmp["reference"], y, ref[min(i, ref.shape[0] - 1)], new[i])
        per_seed[int(s)] = decide(c, pass_above=pass_above, fail_below=fail_below)
    cmp["per_seed_outcome"] = per_seed
    if len(set(per_seed.values())) < 2:
        return outcome, None
    each = ", ".join(f"seed {s}: {o}" for s, o in per_seed.items())
    return outcome, (f"the outcome differs across seeds ({each}); the pooled outcome over all "
                     f"seeds is the one to act on")


def _route(outcome: str, cmp: dict[str, Any], *, policy: str, failed: str, what: str,
           problems: list[str]) -> tuple[list[str], str | None]:
    """Where a policy-governed comparison's outcome goes: failed -> `problems` (policy "fail")
    or the warnings (policy "warn"); inconclusive -> the reason (see moola.judging)."""
    from moola.judging import inconclusive_text

    warnings: list[str] = []
    if outcome == "failed":
        (problems if policy == "fail" else warnings).append(f"{failed} (policy '{policy}')")
        return warnings, None
    return warnings, inconclusive_text(cmp, what) if outcome == "inconclusive" else None


def _policy_comparison(ctx: GateContext, reference: str, ref: TrainedModel, pred_new: np.ndarray,
                       seeds: Any, threshold: float, *, policy: str, problems: list[str],
                       failed, what: str) -> tuple[dict, str | None, list[str], str | None]:
    """A policy-governed comparison (gates 2 and 6): `pred_new` minus `ref` passes above
    `threshold` and fails below it, significantly; a failure goes where the policy says, in
    the words of `failed(comparison)`. Returns (comparison, per-seed note, warnings,
    inconclusive reason)."""
    cmp = _compare(ctx, reference, ref.y, ref.pred, pred_new)
    outcome, differs = _decide(ctx, cmp, ref.y, ref.pred, pred_new, seeds,
                               pass_above=threshold, fail_below=threshold)
    cmp.update(policy=policy, outcome=outcome)
    warnings, inconclusive = _route(outcome, cmp, policy=policy, problems=problems,
                                    failed=failed(cmp), what=what)
    return cmp, differs, warnings, inconclusive


def builds_on(gate: str, m: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """What a comparison records when its model builds on `gate`'s model (moola.approval:
    a model significantly worse than the one it builds on is never approved)."""
    return {"builds_on": gate, "model_macro_f1": m["macro_f1"],
            "builds_on_macro_f1": ref["macro_f1"]}


def _worse_note(cmp: dict[str, Any], outcome: str, what: str) -> str | None:
    """The note of a model significantly worse than what it builds on, when its gate did not
    fail for it (a relaxed bound, e.g. smoke's gates.max_harm): it is still never deployed."""
    if outcome == "failed" or not significantly_worse(cmp):
        return None
    return (f"{worse_text(cmp, what)}: within the gate's bound, but never exported, ensembled "
            f"or recommended")


def _detectable_note(ctx: GateContext, w: TrainedModel, m: dict[str, Any], alpha: float) -> str:
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


def _protocol_text(m: dict[str, Any]) -> str:
    return (f"{m['n']} scored windows x {m.get('n_replicas', 1)} seeds over "
            f"{m.get('n_folds', '?')} walk-forward folds")


# ---------------------------------------------------------------------------------------------
# gates
# ---------------------------------------------------------------------------------------------


@gate("gate_0_env", after=(), read_only=True, _builtin=True)
def gate_0_env(ctx: GateContext) -> Verdict:
    """Device available, dataset and split valid, and the protocol's folds can be built and
    fit on more than one class (moola.gates.builtin._fold_class_gaps)."""
    from moola.data import validate_dataset
    from moola.gates import work
    from moola.train import DeviceError

    gate, problems, metrics = "gate_0_env", [], {}
    try:
        metrics["device"] = str(ctx.device)
    except DeviceError as exc:
        problems.append(str(exc))
    report = validate_dataset(ctx.data_dir, fold=ctx.cfg.run.fold)
    metrics["data"] = report.summary
    problems += list(report.problems)
    warnings: list[str] = []
    if not problems:
        try:
            folds = work.folds(ctx)
            metrics["folds"] = [f.describe() for f in folds]
        except ValueError as exc:
            problems.append(f"{ctx.data_dir}: {exc}")
        else:
            one_class, unseen = _fold_class_gaps(ctx, folds)
            problems += one_class
            warnings += unseen
    return _verdict(ctx, gate, problems,
                    f"device {metrics.get('device')} ready; dataset {ctx.data_dir} valid; "
                    f"{len(metrics.get('folds', []))} folds", warnings,
                    metrics=metrics, artifacts={"data_dir": str(ctx.data_dir)})


def _fold_fix(folds) -> str:
    """What to do about folds that train on too few classes, by where the folds come from."""
    if any(f.source != "walk-forward" for f in folds):
        return ("the folds come from your splits/fold_<k>.json files: give each fold's train "
                "rows every class")
    return ("moola reads the labeled rows in time order (each fold fits on earlier rows and "
            "scores later ones): if your windows have no time order (independent samples), save "
            "them in a shuffled order; if they are in time order, raise "
            "protocol.min_train_fraction or lower protocol.folds")


def _fold_class_gaps(ctx: GateContext, folds) -> tuple[list[str], list[str]]:
    """(problems, warnings) about the classes each fold fits on. Every fold fitting on one
    class is what rows sorted by label give: failed (nothing can be learned). Some folds
    fitting on one class, or scoring a class their fitting rows never hold, is a warning (a
    rare class first seen late; gates 2 and 3 predict the one class such a fold holds, and gate
    1's pooled skill test judges the result). A UCR train file sorted by class (BasicMotions')
    scored balanced accuracy 0.000 at every seed before `moola data ucr` shuffled it."""
    y, names = ctx.dataset.y, ctx.dataset.classes
    one_class, unseen = [], []
    scored = [f for f in folds if len(f.score_idx)]
    for f in scored:
        fit = [int(c) for c in np.unique(y[f.fit_idx])]
        missing = sorted({int(c) for c in np.unique(y[f.score_idx])} - set(fit))
        if len(fit) < 2:
            only = repr(names[fit[0]]) if fit else "none"
            one_class.append(f"fold {f.index}: all {len(f.fit_idx)} fitting rows are {only}")
        elif missing:
            unseen.append(f"fold {f.index} scores {', '.join(repr(names[c]) for c in missing)}, "
                          f"which its {len(f.fit_idx)} fitting rows never hold")
    if scored and len(one_class) == len(scored):
        return [f"{ctx.data_dir}: every fold fits on one class ({'; '.join(one_class)}), so no "
                f"model can learn to tell classes apart; {_fold_fix(folds)}"], []
    if one_class or unseen:
        return [], [f"{ctx.data_dir}: {'; '.join(one_class + unseen)}: those folds cannot score "
                    f"those windows fairly (a class first seen late is unpredictable before it "
                    f"appears); if that is not your data, {_fold_fix(folds)}"]
    return [], []


@gate("gate_1_smoke_enhanced", after="gate_0_env", produces="baseline",
      producer=artifacts.baseline, ensemble=True, _builtin=True)
def gate_1_smoke_enhanced(ctx: GateContext) -> Verdict:
    """EnhancedSimpleLSTM from scratch: loss finite and falling, not degenerate, skilful."""
    from moola.metrics import skill_over_chance

    gate, g = "gate_1_smoke_enhanced", ctx.cfg.gates
    w = artifacts.baseline(ctx)
    m = replicated_metrics(ctx, w)
    reps = w.replicas
    firsts = np.array([r["train_loss_first"] for r in reps], dtype=float)
    lasts = np.array([r["train_loss_last"] for r in reps], dtype=float)
    problems = []
    drop = ctx.cfg.gates.min_loss_drop
    median_drop = float(np.median(1 - lasts / firsts)) if np.all(np.isfinite(firsts)) else 0.0
    if not (np.all(np.isfinite(firsts)) and np.all(np.isfinite(lasts))):
        bad = [r["replica"] for r in reps
               if not (np.isfinite(r["train_loss_first"]) and np.isfinite(r["train_loss_last"]))]
        problems.append(f"training loss is not finite in replicas {_listing(bad)}; lower the learning "
                        f"rate and check the data for extreme values")
    elif not median_drop >= drop:
        t = ctx.cfg.train
        problems.append(f"training loss did not fall: median drop from the first to the last "
                        f"epoch {median_drop:.1%} over {len(reps)} replicas (expected at least "
                        f"{drop:.0%}, gates.min_loss_drop = {drop}); raise train.min_steps (now "
                        f"{t.min_steps}) or train.lr (now {t.lr:g})")
    problems += classifier_problems("the baseline EnhancedSimpleLSTM", m, alpha=g.skill_alpha)
    notes = []
    if not m["degenerate"] and not skill_over_chance(m, g.skill_alpha)[0]:
        notes.append(_detectable_note(ctx, w, m, g.skill_alpha))
    differs = _seed_disagreement(
        ctx, w, lambda ms: skill_over_chance(ms, g.skill_alpha)[0] and not ms["degenerate"])
    if differs:
        notes.append(differs)
    if m["one_class_replicas"]:
        notes.append(f"replicas that predicted one class on their fold: "
                     f"{', '.join(m['one_class_replicas'])}")
    notes += _test_note(m)
    sp = m["seed_spread"]
    ok = (f"pooled macro-F1 {m['macro_f1']:.3f} (CI {m['ci']['macro_f1'][0]:.3f}-"
          f"{m['ci']['macro_f1'][1]:.3f}; per seed {sp['min']:.3f}-{sp['max']:.3f}) vs majority "
          f"baseline {m['majority_baseline']['macro_f1']:.3f}; balanced accuracy "
          f"{m['balanced_accuracy']:.3f} beats chance {m['chance_balanced_accuracy']:.3f} "
          f"(permutation p = {m['skill_p_value']:.4f} < {g.skill_alpha}); {_protocol_text(m)}")
    return _verdict(ctx, gate, problems, ok, notes=notes, model=w.model, metrics={
        **m, "train_loss_first": firsts.tolist(), "train_loss_last": lasts.tolist(),
        "median_loss_drop": median_drop,
        "replicas": [{k: r[k] for k in ("replica", "best_epoch", "epochs_run", "stopped_reason",
                                        "n_fit", "n_stop", "n_scored")} for r in reps]},
        artifacts={"baseline": w.artifact},
        key_metric=_key_metric("skill_p", m["skill_p_value"], g.skill_alpha, "<"))


@gate("gate_2_control_minirocket", after="gate_0_env", uses="gate_1_smoke_enhanced",
      produces="control", producer=artifacts.control, _builtin=True)
def gate_2_control_minirocket(ctx: GateContext,
                              upstream: dict[str, Verdict] | None = None) -> Verdict:
    """MiniRocket control: sane itself, and the deep baseline is not beaten by it."""
    from moola.judging import ci_text

    gate, g = "gate_2_control_minirocket", ctx.cfg.gates
    c = artifacts.control(ctx)
    v1 = (upstream or {}).get("gate_1_smoke_enhanced")
    if v1 is not None and (v1.status == "skipped" or "traceback" in (v1.artifacts or {})):
        return _control_alone(ctx, c, v1)  # no baseline to compare: judge the control itself
    b = artifacts.baseline(ctx)
    _same_windows(c, b)
    mc = score(ctx, c.y, c.pred)
    mb = score(ctx, b.y, b.pred)
    problems = _control_problems(mc)
    # a failure of the comparison below is about the baseline, not the control (moola.approval)
    model_failed = bool(problems)
    # baseline minus control: passed when the baseline is significantly within the margin
    cmp, differs, warnings, inconclusive = _policy_comparison(
        ctx, "gate_2_control_minirocket", c, b.pred, b.seeds, -g.control_margin,
        policy=g.control_policy, problems=problems,
        failed=lambda cmp: (
            f"MiniRocket beats the deep baseline by more than the margin {g.control_margin} "
            f"(gates.control_margin): macro-F1 {mc['macro_f1']:.3f} vs {mb['macro_f1']:.3f} "
            f"(baseline minus control {ci_text(cmp)}); the deep model is not earning its cost: "
            f"fix it, or deploy the control (the decision compares them; gates.control_policy "
            f"= \"warn\" keeps the chain going)"),
        what=(f"whether the deep baseline is within {g.control_margin} macro-F1 of MiniRocket "
              f"({mb['macro_f1']:.3f} vs {mc['macro_f1']:.3f})"))
    cmp.update(baseline_macro_f1=mb["macro_f1"], control_macro_f1=mc["macro_f1"],
               margin=g.control_margin)
    ok = (f"the baseline is within {g.control_margin} macro-F1 of the control, significantly: "
          f"baseline {mb['macro_f1']:.3f} vs control {mc['macro_f1']:.3f} ({ci_text(cmp)})")
    return _verdict(ctx, gate, problems, ok, warnings, inconclusive,
                    notes=[n for n in [differs] if n],
                    model="MiniRocket+RidgeClassifierCV",
                    metrics={**mc, **script_fields(mc, c.info["train_acc"]),
                             "skill_shown": _skill_shown(mc, g.skill_alpha),
                             "model_failed": model_failed}, comparison=cmp,
                    artifacts={"control": c.artifact, "baseline": b.artifact},
                    key_metric=_key_metric("delta_f1", cmp["delta"], -g.control_margin, ">"))


def _control_problems(mc: dict[str, Any]) -> list[str]:
    """Why the MiniRocket control itself cannot serve: one-class, or no better than chance."""
    problems = classifier_problems("the MiniRocket control", mc, require_skill=False)
    if mc["balanced_accuracy"] <= mc["chance_balanced_accuracy"]:
        problems.append(f"the MiniRocket control is no better than chance (balanced accuracy "
                        f"{mc['balanced_accuracy']:.3f}); the data may carry no signal")
    return problems


def _control_alone(ctx: GateContext, c: TrainedModel, v1: Verdict) -> Verdict:
    """Gate 2 when gate 1 was left out or crashed: the control judged on its own (sane, not
    one-class, better than chance), so that it can still be the answer."""
    g = ctx.cfg.gates
    mc = score(ctx, c.y, c.pred)
    problems = _control_problems(mc)
    ok = (f"MiniRocket control: macro-F1 {mc['macro_f1']:.3f} (CI {mc['ci']['macro_f1'][0]:.3f}-"
          f"{mc['ci']['macro_f1'][1]:.3f}); no comparison with the deep baseline: gate 1 "
          f"{'was left out' if v1.status == 'skipped' else 'crashed'}")
    return _verdict(ctx, "gate_2_control_minirocket", problems, ok,
                    model="MiniRocket+RidgeClassifierCV",
                    metrics={**mc, **script_fields(mc, c.info["train_acc"]),
                             "skill_shown": _skill_shown(mc, g.skill_alpha),
                             "model_failed": bool(problems)},
                    artifacts={"control": c.artifact})


@gate("gate_3_pretrain_bilstm", after="gate_1_smoke_enhanced", _builtin=True)
def gate_3_pretrain_bilstm(ctx: GateContext) -> Verdict:
    """Masked reconstruction beats interpolation; the encoder's probe beats raw windows and a
    random encoder of the same architecture."""
    from moola.judging import ci_text
    from moola.pretrain import ratio_ci

    gate, g = "gate_3_pretrain_bilstm", ctx.cfg.gates
    e = artifacts.encoder(ctx)
    r, pr = dict(e.reconstruction), e.probe_predictions
    problems: list[str] = []
    warnings: list[str] = []
    inconclusive_parts: list[str] = []
    # the ratio masked MSE / interpolation's, with a window-bootstrap CI, read against the
    # threshold 1 - recon_margin as every comparison is: above it significantly = failed
    per = r.pop("per_window", None)
    threshold = 1 - g.recon_margin
    if per is not None:
        r["ratio_ci"] = list(ratio_ci(per["mae_sq"], per["interp_sq"], n_bootstrap=g.n_bootstrap,
                                      ci_level=g.ci_level, seed=ctx.cfg.run.seed))
    lo, hi = r.get("ratio_ci") or (r["ratio"], r["ratio"])
    recon_text = (f"masked reconstruction MSE {r['mae_mse']:.4f} vs linear interpolation "
                  f"{r['interp_mse']:.4f} (ratio {r['ratio']:.3f}, {g.ci_level:.0%} CI "
                  f"{lo:.3f} to {hi:.3f}) on {r['n_windows']} held-out windows that chose no "
                  f"epoch")
    if lo >= threshold:
        (problems if g.recon_policy == "fail" else warnings).append(
            f"{recon_text}: does not beat interpolation by the required {g.recon_margin:.0%} "
            f"(ratio below {threshold:g}, gates.recon_margin = {g.recon_margin}); the encoder "
            f"learned nothing interpolation cannot do: pretrain longer (pretrain.max_epochs = "
            f"{ctx.cfg.pretrain.max_epochs}), check normalisation, or raise the mask ratio "
            f"(pretrain.mask_ratio = {ctx.cfg.pretrain.mask_ratio}) (policy "
            f"'{g.recon_policy}', gates.recon_policy)")
    elif hi >= threshold:
        inconclusive_parts.append(
            f"inconclusive: whether the reconstruction beats interpolation by "
            f"{g.recon_margin:.0%}: {recon_text}; more unlabeled windows (or a larger "
            f"pretrain.val_fraction) narrow the CI")
    y = pr["y"]
    m = score(ctx, y, pr["encoder"])
    f1 = {name: score(ctx, y, pr[name])["macro_f1"] for name in ("encoder", "raw",
                                                                 "random_encoder")}
    vs_raw = _compare(ctx, "raw normalised windows", y, pr["raw"], pr["encoder"])
    vs_random = _compare(ctx, "random encoder", y, pr["random_encoder"], pr["encoder"])
    maj = m["majority_baseline"]["macro_f1"]
    if not m["macro_f1"] >= g.probe_min_macro_f1:
        problems.append(f"the encoder's linear probe scores macro-F1 {m['macro_f1']:.3f} on "
                        f"{m['n']} walk-forward windows, below the threshold "
                        f"{g.probe_min_macro_f1} (gates.probe_min_macro_f1)")
    if not m["macro_f1"] > maj:
        problems.append(f"the encoder's linear probe (macro-F1 {m['macro_f1']:.3f}) does not "
                        f"beat the majority baseline {maj:.3f}")
    if vs_raw["delta_ci"][1] < 0:
        problems.append(f"the encoder's features are significantly worse for a linear probe than "
                        f"the raw normalised windows (macro-F1 {f1['encoder']:.3f} vs "
                        f"{f1['raw']:.3f}, {ci_text(vs_raw)}): pretraining destroyed information "
                        f"a linear model reads directly; change the pretraining task or skip it")
    adds = (f"what the encoder adds: probe macro-F1 {f1['encoder']:.3f} vs raw windows "
            f"{f1['raw']:.3f} ({ci_text(vs_raw)}) and vs a random encoder "
            f"{f1['random_encoder']:.3f} ({ci_text(vs_random)})")
    inconclusive = None
    if vs_random["delta_ci"][0] <= 0 and vs_random["se"] == 0.0:
        inconclusive = (f"inconclusive: the probes on the pretrained and on a randomly "
                        f"initialised encoder predict all {vs_random['n_windows']} scored windows "
                        f"identically, so these windows cannot tell what pretraining adds; "
                        f"{adds}")
    elif vs_random["delta_ci"][0] <= 0:
        inconclusive = (f"inconclusive: the pretrained encoder's probe is not significantly "
                        f"better than a randomly initialised encoder of the same architecture "
                        f"on {vs_random['n_windows']} windows (they could only detect about "
                        f"{vs_random['detectable']:.2f} macro-F1); {adds}")
    if inconclusive_parts:
        inconclusive = "; ".join(inconclusive_parts + ([inconclusive] if inconclusive else
                                                       [adds]))
    ok = (f"reconstruction MSE {r['mae_mse']:.4f} vs interpolation {r['interp_mse']:.4f} "
          f"(ratio {r['ratio']:.3f}, {g.ci_level:.0%} CI {lo:.3f} to {hi:.3f}); {adds}")
    return _verdict(ctx, gate, problems, ok, warnings, inconclusive=inconclusive,
                    model="BiLSTM masked autoencoder",
                    metrics={"reconstruction": r, "probe": {**e.probe, "metrics": m},
                             "probe_macro_f1": f1, "epochs_run": e.epochs_run,
                             "stopped_reason": e.stopped_reason,
                             "n_unlabeled": e.n_unlabeled,
                             "encoder_config": e.config},
                    comparison={"vs_raw": vs_raw, "vs_random_encoder": vs_random},
                    artifacts={"encoder": e.artifact},
                    key_metric=_key_metric("probe_macro_f1", m["macro_f1"],
                                           g.probe_min_macro_f1, ">="))


@gate("gate_4_finetune_enhanced", after="gate_3_pretrain_bilstm", produces="finetuned",
      producer=artifacts.finetuned, ensemble=True, _builtin=True)
def gate_4_finetune_enhanced(ctx: GateContext) -> Verdict:
    """Encoder loaded 100%; pretraining helps (significantly), hurts, or cannot be told,
    measured against the same recipe from a randomly initialised encoder (the control that
    isolates pretraining); never significantly worse than the from-scratch baseline."""
    from moola.judging import ci_text, decide, inconclusive_text

    gate, g = "gate_4_finetune_enhanced", ctx.cfg.gates
    f, b, r = artifacts.finetuned(ctx), artifacts.baseline(ctx), artifacts.random_init(ctx)
    m, mb = _paired(ctx, f, b)
    _same_windows(f, r)
    mr = score(ctx, r.y, r.pred)
    lr = f.info["load_report"]
    problems = []
    if not lr["ok"]:
        problems.append(f"pretrained encoder did not load completely: {lr['loaded']}/"
                        f"{lr['total']} encoder tensors ({lr['ratio']:.0%}); {lr.get('message', '')}")
    problems += classifier_problems("the finetuned EnhancedSimpleLSTM", m, require_skill=False)
    unproven = skill_inconclusive("the finetuned EnhancedSimpleLSTM", m, g.skill_alpha)
    # what pretraining bought: finetuned minus the same recipe from a random encoder
    pre = _compare(ctx, "random_init", f.y, r.pred, f.pred)
    outcome, differs = _decide(ctx, pre, f.y, r.pred, f.pred, f.seeds,
                               pass_above=g.min_delta, fail_below=-g.max_harm)
    pre.update(random_init_macro_f1=mr["macro_f1"], finetuned_macro_f1=m["macro_f1"],
               outcome=outcome, what="finetuned minus the same recipe from a randomly "
                                     "initialised encoder")
    # what it builds on: gate 1's from-scratch baseline (moola.approval)
    cmp = _compare(ctx, "gate_1_smoke_enhanced", f.y, b.pred, f.pred)
    vs_base = decide(cmp, pass_above=g.min_delta, fail_below=-g.max_harm)
    cmp.update(baseline_macro_f1=mb["macro_f1"], finetuned_macro_f1=m["macro_f1"],
               min_delta=g.min_delta, max_harm=g.max_harm, outcome=vs_base, pretraining=pre,
               **builds_on("gate_1_smoke_enhanced", m, mb))
    inconclusive = None
    if outcome == "failed":
        problems.append(
            f"pretraining hurts: macro-F1 {m['macro_f1']:.3f} vs {mr['macro_f1']:.3f} for the "
            f"same recipe from a randomly initialised encoder ({ci_text(pre)}, below "
            f"-gates.max_harm = -{g.max_harm}); the encoder is the cause: improve gate 3 or "
            f"deploy without pretraining")
    elif vs_base == "failed":
        problems.append(
            f"the finetuned model is significantly worse than gate 1's from-scratch baseline: "
            f"macro-F1 {m['macro_f1']:.3f} vs {mb['macro_f1']:.3f} ({ci_text(cmp)}, below "
            f"-gates.max_harm = -{g.max_harm}); the transfer schedule (finetune.freeze_epochs "
            f"= {ctx.cfg.finetune.freeze_epochs}, encoder_lr_mult = "
            f"{ctx.cfg.finetune.encoder_lr_mult}) costs more than pretraining gives")
    elif outcome == "inconclusive":
        inconclusive = inconclusive_text(
            pre, f"whether pretraining helps (finetuned {m['macro_f1']:.3f} vs "
                 f"{mr['macro_f1']:.3f} from a random encoder, same recipe)")
    inconclusive = _skill_joined(unproven, inconclusive, outcome, pre)
    worse = _worse_note(cmp, vs_base, "the finetuned model")
    ok = (f"pretraining helps, significantly: macro-F1 {m['macro_f1']:.3f} vs "
          f"{mr['macro_f1']:.3f} for the same recipe from a randomly initialised encoder "
          f"({ci_text(pre)}, above {g.min_delta:+.3f}); vs gate 1's baseline {mb['macro_f1']:.3f} "
          f"({ci_text(cmp)}); encoder tensors loaded {lr['loaded']}/{lr['total']}; "
          f"{_protocol_text(m)}")
    return _verdict(ctx, gate, problems, ok, inconclusive=inconclusive,
                    notes=[n for n in [worse, differs] if n] + _test_note(m), model=f.model,
                    metrics={**m, "load_report": lr, "random_init_macro_f1": mr["macro_f1"],
                             "skill_shown": _skill_shown(m, g.skill_alpha)},
                    comparison=cmp,
                    artifacts={"finetuned": f.artifact, "random_init": r.artifact},
                    key_metric=_key_metric("pretraining delta_f1", pre["delta"], g.min_delta,
                                           ">"))


def _pseudo_summary(replicas: list[dict[str, Any]]) -> dict[str, Any]:
    """Pseudo-sample statistics over every replica's fold (worst case where it matters)."""
    ps = [r["pseudo"] for r in replicas if "pseudo" in r]
    rejected: dict[str, int] = {}
    ks: dict[str, float | None] = {}
    for p in ps:
        for k, v in p["rejected"].items():
            rejected[k] = rejected.get(k, 0) + int(v)
        for k, v in p["ks_pvalues"].items():
            ks[k] = None if v is None or ks.get(k, 1.0) is None else min(ks.get(k, 1.0), v)
    qs = [p["quality_min_accepted"] for p in ps if p["quality_min_accepted"] is not None]
    return {"n_generated": sum(p["n_generated"] for p in ps),
            "n_accepted": sum(p["n_accepted"] for p in ps), "rejected": rejected,
            "ks_pvalues": ks, "quality_min_accepted": min(qs) if qs else None,
            "n_folds": len(ps)}


@gate("gate_5_augment", after="gate_4_finetune_enhanced", produces="augmented",
      producer=artifacts.augmented, ensemble=True, _builtin=True)
def gate_5_augment(ctx: GateContext) -> Verdict:
    """Pseudo-samples pass KS / quality / dedup; no significant drop beyond max_drop_pp."""
    from moola.judging import ci_text, inconclusive_text

    gate, g, a = "gate_5_augment", ctx.cfg.gates, ctx.cfg.augment
    w, f = artifacts.augmented(ctx), artifacts.finetuned(ctx)
    m, mf = _paired(ctx, w, f)
    ps = _pseudo_summary(w.replicas)
    problems = []
    if ps["n_accepted"] == 0:
        problems.append(
            f"no pseudo-sample survived the filters ({ps['n_generated']} generated; rejected: "
            f"{_listing(ps['rejected']) or 'none'}); loosen the filters (augment.quality_min = "
            f"{a.quality_min}, augment.ks_p_min = {a.ks_p_min}, augment.dedup_threshold = "
            f"{a.dedup_threshold}) or leave the step out with gates.skip = [\"gate_5_augment\"]")
    low_p = {k: v for k, v in ps["ks_pvalues"].items() if v is None or v < a.ks_p_min}
    if low_p and ps["n_accepted"]:
        problems.append(f"accepted pseudo-samples differ in distribution from the real training "
                        f"windows: KS p-values {_listing(low_p)} < augment.ks_p_min = "
                        f"{a.ks_p_min}")
    qmin = ps.get("quality_min_accepted")
    if qmin is not None and qmin < a.quality_min:
        problems.append(f"an accepted pseudo-sample has quality {qmin:.3f} < "
                        f"augment.quality_min = {a.quality_min}")
    problems += classifier_problems("the augmented model", m, require_skill=False)
    unproven = skill_inconclusive("the augmented model", m, g.skill_alpha)
    cmp = _compare(ctx, "gate_4_finetune_enhanced", w.y, f.pred, w.pred)
    allowed = g.max_drop_pp / 100
    outcome, differs = _decide(ctx, cmp, w.y, f.pred, w.pred, w.seeds,
                               pass_above=-allowed, fail_below=-allowed)
    drop_pp = -cmp["delta"] * 100
    cmp.update(finetuned_macro_f1=mf["macro_f1"], augmented_macro_f1=m["macro_f1"],
               drop_pp=drop_pp, max_drop_pp=g.max_drop_pp,
               **builds_on("gate_4_finetune_enhanced", m, mf))
    inconclusive = None
    fixes = (f"lower augment.ratio (now {a.ratio}) or the augmentation strengths "
             f"(augment.jitter_sigma = {a.jitter_sigma}, scaling_sigma = {a.scaling_sigma}, "
             f"time_warp_sigma = {a.time_warp_sigma}), raise augment.quality_min (now "
             f"{a.quality_min}), or leave the step out with gates.skip = [\"gate_5_augment\"]")
    if outcome == "failed":
        problems.append(f"pseudo-samples hurt: {worse_text(cmp, 'the augmented model')}: "
                        f"macro-F1 on real scored windows fell {drop_pp:.1f} pp, "
                        f"significantly more than the allowed gates.max_drop_pp = "
                        f"{g.max_drop_pp} pp; {fixes}")
    elif significantly_worse(cmp):
        # within the allowed drop, but worse on every resample: never deployed (moola.approval)
        outcome = "failed"
        problems.append(
            f"pseudo-samples hurt: {worse_text(cmp, 'the augmented model')} (a drop of "
            f"{drop_pp:.1f} pp; gates.max_drop_pp = {g.max_drop_pp} bounds what may pass, but "
            f"a model the windows show to be worse is never approved); {fixes}")
    elif outcome == "inconclusive":
        inconclusive = inconclusive_text(
            cmp, f"whether pseudo-samples cost more than {g.max_drop_pp} pp of macro-F1 "
                 f"({mf['macro_f1']:.3f} -> {m['macro_f1']:.3f})")
    cmp["outcome"] = outcome
    inconclusive = _skill_joined(unproven, inconclusive, outcome, cmp)
    if ps["n_accepted"] == 0:  # nothing was added: the comparison measured nothing
        inconclusive = None
    ok = (f"{ps['n_accepted']}/{ps['n_generated']} pseudo-samples accepted over "
          f"{ps['n_folds']} replicas; macro-F1 {m['macro_f1']:.3f} vs gate 4 {mf['macro_f1']:.3f} "
          f"({ci_text(cmp)}): significantly no drop beyond {g.max_drop_pp} pp; scored windows "
          f"are 100% real")
    return _verdict(ctx, gate, problems, ok, inconclusive=inconclusive,
                    notes=[n for n in [differs] if n] + _test_note(m), model=w.model,
                    metrics={**m, "pseudo": ps,
                             "skill_shown": _skill_shown(m, g.skill_alpha)},
                    comparison=cmp, artifacts={"augmented": w.artifact},
                    key_metric=_key_metric("drop_pp", drop_pp, g.max_drop_pp, "<="))


@gate("gate_6_baseline_simplelstm", after="gate_4_finetune_enhanced", produces="simple",
      producer=artifacts.simple, ensemble=True, _builtin=True)
def gate_6_baseline_simplelstm(ctx: GateContext) -> Verdict:
    """SimpleLSTM trains on the selected device; does the pretrained model beat it?"""
    from moola.judging import ci_text

    gate, g = "gate_6_baseline_simplelstm", ctx.cfg.gates
    s, f = artifacts.simple(ctx), artifacts.finetuned(ctx)
    m, mf = _paired(ctx, s, f)
    problems = []
    devices = sorted({d for r in s.replicas for d in r["param_devices"]})
    if devices != [s.info["device"]]:
        problems.append(f"SimpleLSTM parameters ended on {devices}, expected all on "
                        f"{s.info['device']}: a layer was created off-device")
    problems += classifier_problems("SimpleLSTM", m, require_skill=False)
    # a failure of the comparison below is about the pretrained model, not SimpleLSTM
    model_failed = bool(problems)
    # finetuned minus simple: passed when the pretrained machinery is significantly better
    cmp, differs, warnings, inconclusive = _policy_comparison(
        ctx, "gate_6_baseline_simplelstm", s, f.pred, s.seeds, 0.0,
        policy=g.simple_policy, problems=problems,
        failed=lambda cmp: (
            f"the simple unidirectional SimpleLSTM (hidden {ctx.cfg.model.simple_hidden}) is "
            f"significantly better than the pretrained model: macro-F1 {m['macro_f1']:.3f} vs "
            f"{mf['macro_f1']:.3f} (pretrained minus simple {ci_text(cmp)}); the extra "
            f"machinery is not paying for itself: deploy the simpler model (the decision "
            f"compares them; gates.simple_policy = \"warn\" keeps the chain going)"),
        what=(f"whether the pretrained model beats the simple SimpleLSTM "
              f"({mf['macro_f1']:.3f} vs {m['macro_f1']:.3f})"))
    cmp.update(simple_macro_f1=m["macro_f1"], finetuned_macro_f1=mf["macro_f1"])
    # gate 6 judges the machinery, not SimpleLSTM's skill; a SimpleLSTM without shown skill
    # still never becomes a deployable model (export) or an ensemble member
    unshown = None if m["degenerate"] else skill_not_shown("SimpleLSTM", m, g.skill_alpha)
    notes = [n for n in [differs] if n]
    if unshown:
        notes.append(f"{unshown}: SimpleLSTM is neither exported nor ensembled")
    ok = (f"SimpleLSTM trained on {s.info['device']}: macro-F1 {m['macro_f1']:.3f}, "
          f"significantly below the pretrained model's {mf['macro_f1']:.3f} ({ci_text(cmp)})")
    return _verdict(ctx, gate, problems, ok, warnings, inconclusive,
                    notes=notes, model="SimpleLSTM",
                    metrics={**m, "device": s.info["device"], "param_devices": devices,
                             "skill_shown": _skill_shown(m, g.skill_alpha),
                             "model_failed": model_failed},
                    comparison=cmp, artifacts={"simple": s.artifact},
                    key_metric=_key_metric("delta_f1", cmp["delta"], 0.0, ">"))


def _ece(y: np.ndarray, proba: np.ndarray, bins: int) -> float:
    """ECE of (R, n, K) replicas' probabilities, pooled over replicas."""
    from moola.metrics import expected_calibration_error

    r = proba.shape[0]
    return expected_calibration_error(np.tile(y, r), proba.reshape(-1, proba.shape[-1]), bins)


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


def ensemble_prediction(e: artifacts.Ensemble, members: list[str],
                        calibrated: bool = True) -> np.ndarray:
    """(R, n, K) probabilities of the equal-weight average of `members` per seed."""
    from moola.ensemble import average_proba

    which = "calibrated" if calibrated else "raw"
    return np.stack([average_proba([e.members[n][which][r] for n in members])
                     for r in range(len(e.seeds))])


@gate("gate_7_ensemble", after="gate_0_env", _builtin=True)
def gate_7_ensemble(ctx: GateContext, upstream: dict[str, Verdict] | None = None) -> Verdict:
    """Cross-fitted isotonic-calibrated average of the approved, non-degenerate members whose
    skill over chance is shown; does it beat its best member (paired window bootstrap)?"""
    from moola.judging import ci_text, inconclusive_text

    gate, g = ENSEMBLE_GATE, ctx.cfg.gates
    upstream = upstream or {}
    # the approval rule (moola.approval): judged, not failed on the model, not one-class,
    # skill shown, not significantly worse than what it builds on
    approved, excluded = approved_members(upstream)
    candidates = REGISTRY.ensemble_candidates()
    if len(approved) < 2:
        return Verdict(gate=gate, status="skipped", config=ctx.cfg.to_dict(),
                       model="calibrated ensemble",
                       reason=(f"skipped: fewer than two approved models to ensemble "
                               f"(approved: {_listing(approved) or 'none'}; left out: "
                               f"{'; '.join(f'{k}: {v}' for k, v in excluded.items()) or 'none'})"),
                       metrics={"approved": approved, "excluded": excluded})
    e = artifacts.ensemble(ctx, {n: candidates[n] for n in approved})
    y = e.y
    members, ece, notes = {}, {}, []
    for name, mm in e.members.items():
        cal = mm["calibrated"]
        mc = score(ctx, y, cal.argmax(axis=2))
        ece[name] = {"before": _ece(y, mm["raw"], g.ece_bins),
                     "after": _ece(y, cal, g.ece_bins)}
        if ece[name]["after"] > ece[name]["before"]:
            notes.append(f"calibration raised member '{name}'s ECE from "
                         f"{ece[name]['before']:.3f} to {ece[name]['after']:.3f} (isotonic maps "
                         f"fitted on a few dozen windows overfit); kept, as calibrated")
        if mc["degenerate"]:
            dist = ", ".join(f"{k}: {v}" for k, v in mc["predicted_distribution"].items())
            excluded[name] = (f"its calibrated predictions are one class ({dist}); a constant "
                              f"predictor cannot join the ensemble")
            continue
        members[name] = mc["macro_f1"]
    problems: list[str] = []
    metrics: dict[str, Any] = {"members_macro_f1": members, "ece": ece, "excluded": excluded,
                               "approved": approved}
    if excluded:
        notes.insert(0, "left out of the ensemble: " + "; ".join(
            f"'{k}': {v}" for k, v in excluded.items()))
    if not members:
        problems.append(f"no member remains for the ensemble (approved: "
                        f"{_listing(approved) or 'none'}; excluded: "
                        f"{'; '.join(f'{k}: {v}' for k, v in excluded.items()) or 'none'}); "
                        f"fix the members' gates first")
        return _verdict(ctx, gate, problems, "", notes=notes, model="calibrated ensemble",
                        metrics=metrics, artifacts={"ensemble": e.artifact})
    avg = ensemble_prediction(e, list(members))  # (R, n, K): per seed
    m = score(ctx, y, avg.argmax(axis=2))
    ece["ensemble"] = {"before": _ece(y, ensemble_prediction(e, list(members), False),
                                      g.ece_bins), "after": _ece(y, avg, g.ece_bins)}
    best = max(members, key=members.get)
    best_pred = e.members[best]["calibrated"].argmax(axis=2)
    cmp = _compare(ctx, best, y, best_pred, avg.argmax(axis=2))
    allowed = g.max_ensemble_drop_pp / 100
    # passed: the ensemble is significantly better than its best member (worth deploying);
    # failed: significantly worse by more than the allowed drop; otherwise use either
    outcome, differs = _decide(ctx, cmp, y, best_pred, avg.argmax(axis=2), e.seeds,
                               pass_above=0.0, fail_below=-allowed)
    if differs:
        notes.append(differs)
    drop_pp = -cmp["delta"] * 100
    cmp.update(best_member=best, best_member_macro_f1=members[best], drop_pp=drop_pp,
               max_drop_pp=g.max_ensemble_drop_pp, outcome=outcome,
               **builds_on(candidates[best].name, m, {"macro_f1": members[best]}))
    problems += classifier_problems("the ensemble", m, require_skill=False)
    unproven = skill_inconclusive("the ensemble", m, g.skill_alpha)
    worse = _worse_note(cmp, outcome, "the ensemble")
    if worse:
        notes.insert(0, worse)
    inconclusive = None
    if outcome == "failed":
        problems.append(f"the ensemble (macro-F1 {m['macro_f1']:.3f}) is significantly worse "
                        f"than its best member '{best}' (calibrated, {members[best]:.3f}; "
                        f"{ci_text(cmp)}) by more than gates.max_ensemble_drop_pp = "
                        f"{g.max_ensemble_drop_pp} pp; use the best member alone")
    elif outcome == "inconclusive":
        inconclusive = inconclusive_text(
            cmp, f"whether the ensemble ({m['macro_f1']:.3f}) beats its best member '{best}' "
                 f"(calibrated, {members[best]:.3f}) (it is not significantly worse by more than "
                 f"{g.max_ensemble_drop_pp} pp either: the best member alone serves as well)")
    inconclusive = _skill_joined(unproven, inconclusive, outcome, cmp)
    ok = (f"ensemble of {', '.join(members)}: macro-F1 {m['macro_f1']:.3f}, significantly better "
          f"than its best member '{best}' (calibrated, {members[best]:.3f}; {ci_text(cmp)}); ECE "
          f"{ece['ensemble']['before']:.3f} -> "
          f"{ece['ensemble']['after']:.3f} after cross-fitted isotonic calibration")
    return _verdict(ctx, gate, problems, ok, inconclusive=inconclusive, notes=notes,
                    model="calibrated ensemble",
                    metrics={**m, **script_fields(m), **metrics,
                             "skill_shown": _skill_shown(m, g.skill_alpha)},
                    comparison=cmp,
                    artifacts={"ensemble": e.artifact},
                    key_metric=_key_metric("delta_f1", cmp["delta"], 0.0, ">"))


# the decision is declared after every built-in gate (it uses them all)
from moola.gates import decision_gate  # noqa: E402,F401
