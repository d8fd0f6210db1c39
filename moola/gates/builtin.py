"""The eight built-in gates and the built-in artifacts: each one's declaration and judgement.

Declared exactly as a user's gate is (docs/WRITE_YOUR_OWN_GATE.md): ``@gate(name, after=...,
uses=..., produces=..., ensemble=...)`` on a judge whose parameters are artifacts by name
(``baseline_model``, ``encoder``, ...; ``ctx``; ``upstream``), returning a Verdict; the pytest
suite in ``gates_tests/`` only runs them and asserts. The artifacts are typed, read-only views
(:mod:`moola.gates.artifacts`: the same objects the fixtures hand to user gates), built by
:mod:`moola.gates.work` and cached; judging is cheap and always recomputed, so a threshold
change in ``--gates-config`` takes effect at once. The rules every judge applies are in
:mod:`moola.gates.criteria`.

Every classifier verdict carries macro-F1 with its bootstrap CI, the majority-class baseline
and the predicted-class distribution, and a model that predicts (almost) one class fails.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from moola.approval import significantly_worse, worse_text
from moola.gates import artifacts
from moola.gates.artifacts import TrainedModel
from moola.gates.context import GateContext
from moola.gates.criteria import (approved_members, builds_on, check_same_windows,
                                  classifier_problems, compare, decide_comparison,
                                  detectable_note, ensemble_prediction, held_out_note,
                                  join_skill, key_metric, listing, paired_scores,
                                  policy_comparison, protocol_text, replicated_metrics, score,
                                  script_fields, seed_disagreement, skill_inconclusive,
                                  skill_not_shown, skill_shown, verdict_from_problems,
                                  worse_note)
from moola.gates.registry import REGISTRY, artifact, gate
from moola.verdict import Verdict

ENSEMBLE_GATE = "gate_7_ensemble"  # the built-in gate that builds the ensemble

# the artifacts that are no gate's model (a gate's model is declared by its produces=)
artifact("ctx", lambda ctx: ctx, doc="The session's GateContext (config, data, cache, run id).")
artifact("moola_config", lambda ctx: ctx.cfg,
         doc="The run's resolved configuration (moola.config.Config; frozen), as every result "
             "echoes it.")
artifact("dataset", artifacts.dataset, gate="gate_0_env",
         doc="The run's windows, labels, split and folds (moola.gates.artifacts.DatasetView); "
             "gate 0.")
artifact("encoder", artifacts.encoder, gate="gate_3_pretrain_bilstm", kind="encoder",
         doc="Gate 3's pretrained encoder (artifacts.Encoder: load(), config, reconstruction, "
             "probes).")
artifact("random_init_model", artifacts.random_init, gate="gate_4_finetune_enhanced",
         kind="random_init",
         doc="Gate 4's control: the same finetune recipe from a randomly initialised encoder "
             "(artifacts.TrainedModel).")
artifact("ensemble_model", artifacts.approved_ensemble, gate=ENSEMBLE_GATE, kind="ensemble",
         doc="Gate 7's calibrated members (artifacts.Ensemble: raw and calibrated "
             "probabilities of the approved members).")


@gate("gate_0_env", after=(), read_only=True)
def gate_0_env(ctx: GateContext) -> Verdict:
    """Device available, dataset and split valid, and the protocol's folds can be built and
    fit on more than one class (moola.gates.builtin._fold_class_gaps)."""
    from moola.data import validate_dataset
    from moola.data.schema import DataError
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
        except (ValueError, DataError) as exc:  # DataError: data.expected_timesteps, ...
            problems.append(f"{ctx.data_dir}: {exc}")
        else:
            one_class, unseen = _fold_class_gaps(ctx, folds)
            problems += one_class
            warnings += unseen
    return verdict_from_problems(ctx, gate, problems,
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
      producer=artifacts.baseline, ensemble=True)
def gate_1_smoke_enhanced(ctx: GateContext, baseline_model: TrainedModel) -> Verdict:
    """EnhancedSimpleLSTM from scratch: loss finite and falling, not degenerate, skilful."""
    gate, g = "gate_1_smoke_enhanced", ctx.cfg.gates
    w = baseline_model
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
        problems.append(f"training loss is not finite in replicas {listing(bad)}; lower the learning "
                        f"rate and check the data for extreme values")
    elif not median_drop >= drop:
        t = ctx.cfg.train
        problems.append(f"training loss did not fall: median drop from the first to the last "
                        f"epoch {median_drop:.1%} over {len(reps)} replicas (expected at least "
                        f"{drop:.0%}, gates.min_loss_drop = {drop}); raise train.min_steps (now "
                        f"{t.min_steps}) or train.lr (now {t.lr:g})")
    problems += classifier_problems("the baseline EnhancedSimpleLSTM", m, alpha=g.skill_alpha)
    notes = []
    if not m["degenerate"] and not skill_shown(m, g.skill_alpha):
        notes.append(detectable_note(ctx, w, m, g.skill_alpha))
    differs = seed_disagreement(
        ctx, w, lambda ms: skill_shown(ms, g.skill_alpha) and not ms["degenerate"])
    if differs:
        notes.append(differs)
    if m["one_class_replicas"]:
        notes.append(f"replicas that predicted one class on their fold: "
                     f"{', '.join(m['one_class_replicas'])}")
    notes += held_out_note(m)
    sp = m["seed_spread"]
    ok = (f"pooled macro-F1 {m['macro_f1']:.3f} (CI {m['ci']['macro_f1'][0]:.3f}-"
          f"{m['ci']['macro_f1'][1]:.3f}; per seed {sp['min']:.3f}-{sp['max']:.3f}) vs majority "
          f"baseline {m['majority_baseline']['macro_f1']:.3f}; balanced accuracy "
          f"{m['balanced_accuracy']:.3f} beats chance {m['chance_balanced_accuracy']:.3f} "
          f"(permutation p = {m['skill_p_value']:.4f} < {g.skill_alpha}); {protocol_text(m)}")
    return verdict_from_problems(ctx, gate, problems, ok, notes=notes, model=w.model, metrics={
        **m, "train_loss_first": firsts.tolist(), "train_loss_last": lasts.tolist(),
        "median_loss_drop": median_drop,
        "replicas": [{k: r[k] for k in ("replica", "best_epoch", "epochs_run", "stopped_reason",
                                        "n_fit", "n_stop", "n_scored")} for r in reps]},
        artifacts={"baseline": w.artifact},
        key_metric=key_metric("skill_p", m["skill_p_value"], g.skill_alpha, "<"))


@gate("gate_2_control_minirocket", after="gate_0_env", uses="gate_1_smoke_enhanced",
      produces="control", producer=artifacts.control)
def gate_2_control_minirocket(ctx: GateContext, control_model: TrainedModel,
                              upstream: Mapping[str, Verdict]) -> Verdict:
    """MiniRocket control: sane itself, and the deep baseline is not beaten by it."""
    from moola.judging import ci_text

    gate, g = "gate_2_control_minirocket", ctx.cfg.gates
    c = control_model
    v1 = upstream.get("gate_1_smoke_enhanced")
    if v1 is not None and (v1.status == "skipped" or "traceback" in (v1.artifacts or {})):
        return _control_alone(ctx, c, v1)  # no baseline to compare: judge the control itself
    b = artifacts.baseline(ctx)
    check_same_windows(c, b)
    mc = score(ctx, c.y, c.pred)
    mb = score(ctx, b.y, b.pred)
    problems = _control_problems(mc)
    # a failure of the comparison below is about the baseline, not the control (moola.approval)
    model_failed = bool(problems)
    # baseline minus control: passed when the baseline is significantly within the margin
    cmp, differs, warnings, inconclusive = policy_comparison(
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
    if inconclusive and cmp["delta_ci"][1] < 0:
        # behind for certain, by more than the margin or not: say the first plainly
        inconclusive += ("; the deep baseline is significantly behind MiniRocket (the CI lies "
                         "below 0), by how much these windows cannot tell: deploy the control "
                         "or improve the baseline (the decision compares them directly)")
    ok = (f"the baseline is within {g.control_margin} macro-F1 of the control, significantly: "
          f"baseline {mb['macro_f1']:.3f} vs control {mc['macro_f1']:.3f} ({ci_text(cmp)})")
    return verdict_from_problems(ctx, gate, problems, ok, warnings, inconclusive,
                    notes=[n for n in [differs] if n],
                    model="MiniRocket+RidgeClassifierCV",
                    metrics={**mc, **script_fields(mc, c.info["train_acc"]),
                             "skill_shown": skill_shown(mc, g.skill_alpha),
                             "model_failed": model_failed}, comparison=cmp,
                    artifacts={"control": c.artifact, "baseline": b.artifact},
                    key_metric=key_metric("delta_f1", cmp["delta"], -g.control_margin, ">"))


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
    return verdict_from_problems(ctx, "gate_2_control_minirocket", problems, ok,
                    model="MiniRocket+RidgeClassifierCV",
                    metrics={**mc, **script_fields(mc, c.info["train_acc"]),
                             "skill_shown": skill_shown(mc, g.skill_alpha),
                             "model_failed": bool(problems)},
                    artifacts={"control": c.artifact})


@gate("gate_3_pretrain_bilstm", after="gate_1_smoke_enhanced")
def gate_3_pretrain_bilstm(ctx: GateContext, encoder: artifacts.Encoder) -> Verdict:
    """Masked reconstruction beats interpolation; the encoder's probe beats raw windows and a
    random encoder of the same architecture."""
    from moola.judging import ci_text
    from moola.pretrain import ratio_ci

    gate, g = "gate_3_pretrain_bilstm", ctx.cfg.gates
    e = encoder
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
                                      ci_level=g.ci_level, seed=ctx.cfg.run.seed,
                                      block=g.bootstrap_block))
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
    vs_raw = compare(ctx, "raw normalised windows", y, pr["raw"], pr["encoder"])
    vs_random = compare(ctx, "random encoder", y, pr["random_encoder"], pr["encoder"])
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
    return verdict_from_problems(ctx, gate, problems, ok, warnings, inconclusive=inconclusive,
                    model="BiLSTM masked autoencoder",
                    metrics={"reconstruction": r, "probe": {**e.probe, "metrics": m},
                             "probe_macro_f1": f1, "epochs_run": e.epochs_run,
                             "stopped_reason": e.stopped_reason,
                             "n_unlabeled": e.n_unlabeled,
                             "encoder_config": e.config},
                    comparison={"vs_raw": vs_raw, "vs_random_encoder": vs_random},
                    artifacts={"encoder": e.artifact},
                    key_metric=key_metric("probe_macro_f1", m["macro_f1"],
                                           g.probe_min_macro_f1, ">="))


@gate("gate_4_finetune_enhanced", after="gate_3_pretrain_bilstm", produces="finetuned",
      producer=artifacts.finetuned, ensemble=True)
def gate_4_finetune_enhanced(ctx: GateContext, finetuned_model: TrainedModel,
                             baseline_model: TrainedModel,
                             random_init_model: TrainedModel) -> Verdict:
    """Encoder loaded 100%; pretraining helps (significantly), hurts, or cannot be told,
    measured against the same recipe from a randomly initialised encoder (the control that
    isolates pretraining); never significantly worse than the from-scratch baseline."""
    from moola.judging import ci_text, decide, inconclusive_text

    gate, g = "gate_4_finetune_enhanced", ctx.cfg.gates
    f, b, r = finetuned_model, baseline_model, random_init_model
    m, mb = paired_scores(ctx, f, b)
    check_same_windows(f, r)
    mr = score(ctx, r.y, r.pred)
    lr = f.info["load_report"]
    problems = []
    if not lr["ok"]:
        problems.append(f"pretrained encoder did not load completely: {lr['loaded']}/"
                        f"{lr['total']} encoder tensors ({lr['ratio']:.0%}); {lr.get('message', '')}")
    problems += classifier_problems("the finetuned EnhancedSimpleLSTM", m, require_skill=False)
    unproven = skill_inconclusive("the finetuned EnhancedSimpleLSTM", m, g.skill_alpha)
    # what pretraining bought: finetuned minus the same recipe from a random encoder
    pre = compare(ctx, "random_init", f.y, r.pred, f.pred)
    outcome, differs = decide_comparison(ctx, pre, f.y, r.pred, f.pred, f.seeds,
                               pass_above=g.min_delta, fail_below=-g.max_harm)
    pre.update(random_init_macro_f1=mr["macro_f1"], finetuned_macro_f1=m["macro_f1"],
               outcome=outcome, what="finetuned minus the same recipe from a randomly "
                                     "initialised encoder")
    # what it builds on: gate 1's from-scratch baseline (moola.approval)
    cmp = compare(ctx, "gate_1_smoke_enhanced", f.y, b.pred, f.pred)
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
    inconclusive = join_skill(unproven, inconclusive, outcome, pre)
    worse = worse_note(cmp, vs_base, "the finetuned model")
    ok = (f"pretraining helps, significantly: macro-F1 {m['macro_f1']:.3f} vs "
          f"{mr['macro_f1']:.3f} for the same recipe from a randomly initialised encoder "
          f"({ci_text(pre)}, above {g.min_delta:+.3f}); vs gate 1's baseline {mb['macro_f1']:.3f} "
          f"({ci_text(cmp)}); encoder tensors loaded {lr['loaded']}/{lr['total']}; "
          f"{protocol_text(m)}")
    return verdict_from_problems(ctx, gate, problems, ok, inconclusive=inconclusive,
                    notes=[n for n in [worse, differs] if n] + held_out_note(m), model=f.model,
                    metrics={**m, "load_report": lr, "random_init_macro_f1": mr["macro_f1"],
                             "skill_shown": skill_shown(m, g.skill_alpha)},
                    comparison=cmp,
                    artifacts={"finetuned": f.artifact, "random_init": r.artifact},
                    key_metric=key_metric("pretraining delta_f1", pre["delta"], g.min_delta,
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
      producer=artifacts.augmented, ensemble=True)
def gate_5_augment(ctx: GateContext, augmented_model: TrainedModel,
                   finetuned_model: TrainedModel) -> Verdict:
    """Pseudo-samples pass KS / quality / dedup; no significant drop beyond max_drop_pp."""
    from moola.judging import ci_text, inconclusive_text

    gate, g, a = "gate_5_augment", ctx.cfg.gates, ctx.cfg.augment
    w, f = augmented_model, finetuned_model
    m, mf = paired_scores(ctx, w, f)
    ps = _pseudo_summary(w.replicas)
    problems = []
    if ps["n_accepted"] == 0:
        problems.append(
            f"no pseudo-sample survived the filters ({ps['n_generated']} generated; rejected: "
            f"{listing(ps['rejected']) or 'none'}); loosen the filters (augment.quality_min = "
            f"{a.quality_min}, augment.ks_p_min = {a.ks_p_min}, augment.dedup_threshold = "
            f"{a.dedup_threshold}) or leave the step out with gates.skip = [\"gate_5_augment\"]")
    low_p = {k: v for k, v in ps["ks_pvalues"].items() if v is None or v < a.ks_p_min}
    if low_p and ps["n_accepted"]:
        problems.append(f"accepted pseudo-samples differ in distribution from the real training "
                        f"windows: KS p-values {listing(low_p)} < augment.ks_p_min = "
                        f"{a.ks_p_min}")
    qmin = ps.get("quality_min_accepted")
    if qmin is not None and qmin < a.quality_min:
        problems.append(f"an accepted pseudo-sample has quality {qmin:.3f} < "
                        f"augment.quality_min = {a.quality_min}")
    problems += classifier_problems("the augmented model", m, require_skill=False)
    unproven = skill_inconclusive("the augmented model", m, g.skill_alpha)
    cmp = compare(ctx, "gate_4_finetune_enhanced", w.y, f.pred, w.pred)
    allowed = g.max_drop_pp / 100
    outcome, differs = decide_comparison(ctx, cmp, w.y, f.pred, w.pred, w.seeds,
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
    inconclusive = join_skill(unproven, inconclusive, outcome, cmp)
    if ps["n_accepted"] == 0:  # nothing was added: the comparison measured nothing
        inconclusive = None
    ok = (f"{ps['n_accepted']}/{ps['n_generated']} pseudo-samples accepted over "
          f"{ps['n_folds']} replicas; macro-F1 {m['macro_f1']:.3f} vs gate 4 {mf['macro_f1']:.3f} "
          f"({ci_text(cmp)}): significantly no drop beyond {g.max_drop_pp} pp; scored windows "
          f"are 100% real")
    return verdict_from_problems(ctx, gate, problems, ok, inconclusive=inconclusive,
                    notes=[n for n in [differs] if n] + held_out_note(m), model=w.model,
                    metrics={**m, "pseudo": ps,
                             "skill_shown": skill_shown(m, g.skill_alpha)},
                    comparison=cmp, artifacts={"augmented": w.artifact},
                    key_metric=key_metric("drop_pp", drop_pp, g.max_drop_pp, "<="))


@gate("gate_6_baseline_simplelstm", after="gate_4_finetune_enhanced", produces="simple",
      producer=artifacts.simple, ensemble=True)
def gate_6_baseline_simplelstm(ctx: GateContext, simple_model: TrainedModel,
                               finetuned_model: TrainedModel) -> Verdict:
    """SimpleLSTM trains on the selected device; does the pretrained model beat it?"""
    from moola.judging import ci_text

    gate, g = "gate_6_baseline_simplelstm", ctx.cfg.gates
    s, f = simple_model, finetuned_model
    m, mf = paired_scores(ctx, s, f)
    problems = []
    devices = sorted({d for r in s.replicas for d in r["param_devices"]})
    if devices != [s.info["device"]]:
        problems.append(f"SimpleLSTM parameters ended on {devices}, expected all on "
                        f"{s.info['device']}: a layer was created off-device")
    problems += classifier_problems("SimpleLSTM", m, require_skill=False)
    # a failure of the comparison below is about the pretrained model, not SimpleLSTM
    model_failed = bool(problems)
    # finetuned minus simple: passed when the pretrained machinery is significantly better
    cmp, differs, warnings, inconclusive = policy_comparison(
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
    return verdict_from_problems(ctx, gate, problems, ok, warnings, inconclusive,
                    notes=notes, model="SimpleLSTM",
                    metrics={**m, "device": s.info["device"], "param_devices": devices,
                             "skill_shown": skill_shown(m, g.skill_alpha),
                             "model_failed": model_failed},
                    comparison=cmp, artifacts={"simple": s.artifact},
                    key_metric=key_metric("delta_f1", cmp["delta"], 0.0, ">"))


def _ece(y: np.ndarray, proba: np.ndarray, bins: int) -> float:
    """ECE of (R, n, K) replicas' probabilities, pooled over replicas."""
    from moola.metrics import expected_calibration_error

    r = proba.shape[0]
    return expected_calibration_error(np.tile(y, r), proba.reshape(-1, proba.shape[-1]), bins)


@gate(ENSEMBLE_GATE, after="gate_0_env", ensembles=True)
def gate_7_ensemble(ctx: GateContext, upstream: Mapping[str, Verdict]) -> Verdict:
    """Cross-fitted isotonic-calibrated average of the approved, non-degenerate members whose
    skill over chance is shown; does it beat its best member (paired window bootstrap)?"""
    from moola.judging import ci_text, inconclusive_text

    gate, g = ENSEMBLE_GATE, ctx.cfg.gates
    # the approval rule (moola.approval): judged, not failed on the model, not one-class,
    # skill shown, not significantly worse than what it builds on
    approved, excluded = approved_members(upstream)
    candidates = REGISTRY.ensemble_candidates()
    if len(approved) < 2:
        return Verdict(gate=gate, status="skipped", config=ctx.cfg.to_dict(),
                       model="calibrated ensemble",
                       reason=(f"skipped: fewer than two approved models to ensemble "
                               f"(approved: {listing(approved) or 'none'}; left out: "
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
                        f"{listing(approved) or 'none'}; excluded: "
                        f"{'; '.join(f'{k}: {v}' for k, v in excluded.items()) or 'none'}); "
                        f"fix the members' gates first")
        return verdict_from_problems(ctx, gate, problems, "", notes=notes, model="calibrated ensemble",
                        metrics=metrics, artifacts={"ensemble": e.artifact})
    avg = ensemble_prediction(e, list(members))  # (R, n, K): per seed
    m = score(ctx, y, avg.argmax(axis=2))
    ece["ensemble"] = {"before": _ece(y, ensemble_prediction(e, list(members), False),
                                      g.ece_bins), "after": _ece(y, avg, g.ece_bins)}
    best = max(members, key=members.get)
    best_pred = e.members[best]["calibrated"].argmax(axis=2)
    cmp = compare(ctx, best, y, best_pred, avg.argmax(axis=2))
    allowed = g.max_ensemble_drop_pp / 100
    # passed: the ensemble is significantly better than its best member (worth deploying);
    # failed: significantly worse by more than the allowed drop; otherwise use either
    outcome, differs = decide_comparison(ctx, cmp, y, best_pred, avg.argmax(axis=2), e.seeds,
                               pass_above=0.0, fail_below=-allowed)
    if differs:
        notes.append(differs)
    drop_pp = -cmp["delta"] * 100
    cmp.update(best_member=best, best_member_macro_f1=members[best], drop_pp=drop_pp,
               max_drop_pp=g.max_ensemble_drop_pp, outcome=outcome,
               **builds_on(candidates[best].name, m, {"macro_f1": members[best]}))
    problems += classifier_problems("the ensemble", m, require_skill=False)
    unproven = skill_inconclusive("the ensemble", m, g.skill_alpha)
    worse = worse_note(cmp, outcome, "the ensemble")
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
    inconclusive = join_skill(unproven, inconclusive, outcome, cmp)
    ok = (f"ensemble of {', '.join(members)}: macro-F1 {m['macro_f1']:.3f}, significantly better "
          f"than its best member '{best}' (calibrated, {members[best]:.3f}; {ci_text(cmp)}); ECE "
          f"{ece['ensemble']['before']:.3f} -> "
          f"{ece['ensemble']['after']:.3f} after cross-fitted isotonic calibration")
    return verdict_from_problems(ctx, gate, problems, ok, inconclusive=inconclusive, notes=notes,
                    model="calibrated ensemble",
                    metrics={**m, **script_fields(m), **metrics,
                             "skill_shown": skill_shown(m, g.skill_alpha)},
                    comparison=cmp,
                    artifacts={"ensemble": e.artifact},
                    key_metric=key_metric("delta_f1", cmp["delta"], 0.0, ">"))

