"""The eight gates: what each computes and how it is judged.

Each gate is a plain function ``gate_N(ctx) -> Verdict``; the pytest suite in ``gates_tests/``
only calls them and asserts. Work comes from :mod:`moola.gates.work` (cached); judging is
cheap and always recomputed, so a threshold change in ``--gates-config`` takes effect at once.

Every classifier verdict carries macro-F1 with its bootstrap CI, the majority-class baseline
and the predicted-class distribution, and a model that predicts (almost) one class fails.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from moola.gates import work
from moola.gates.context import GateContext
from moola.gates.verdict import Verdict

CHAIN = (
    "gate_0_env",
    "gate_1_smoke_enhanced",
    "gate_2_control_minirocket",
    "gate_3_pretrain_bilstm",
    "gate_4_finetune_enhanced",
    "gate_5_augment",
    "gate_6_baseline_simplelstm",
    "gate_7_ensemble",
)


# ---------------------------------------------------------------------------------------------
# shared judgement of a classifier
# ---------------------------------------------------------------------------------------------


def score(ctx: GateContext, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Classification metrics with CIs, majority baseline and predicted-class distribution."""
    from moola.metrics import classification_metrics

    g = ctx.cfg.gates
    return classification_metrics(
        y_true, y_pred, len(ctx.dataset.classes), n_bootstrap=g.n_bootstrap,
        ci_level=g.ci_level, seed=ctx.cfg.run.seed, max_predicted_share=g.max_predicted_share,
        class_names=ctx.dataset.classes,
    )


def classifier_problems(name: str, m: dict[str, Any], require_skill: bool = True) -> list[str]:
    """Why a classifier cannot pass: one-class predictions, or no skill over chance."""
    problems = []
    maj = m["majority_baseline"]
    baseline_txt = (f"the majority-class baseline (always '{maj['class']}') scores accuracy "
                    f"{maj['accuracy']:.3f}, macro-F1 {maj['macro_f1']:.3f}")
    dist = ", ".join(f"{k}: {v}" for k, v in m["predicted_distribution"].items())
    if m["degenerate"]:
        problems.append(
            f"{name} predicts essentially one class (predicted {dist}); {baseline_txt}; "
            f"a constant predictor is not a model: check normalisation, class weighting and "
            f"the learning rate")
    if require_skill:
        lo, hi = m["ci"]["balanced_accuracy"]
        chance = m["chance_balanced_accuracy"]
        if not lo > chance:
            problems.append(
                f"{name} shows no significant skill over chance: balanced accuracy "
                f"{m['balanced_accuracy']:.3f}, 95% CI [{lo:.3f}, {hi:.3f}] does not clear chance "
                f"{chance:.3f} (macro-F1 {m['macro_f1']:.3f}; {baseline_txt}); more or cleaner "
                f"labels, or a longer training budget, are needed before any comparison means "
                f"anything")
    return problems


def _key_metric(name: str, value: Any, threshold: Any = None, op: str = "") -> dict[str, Any]:
    return {"name": name, "value": value, "threshold": threshold, "op": op}


def _verdict(ctx: GateContext, gate: str, t0: float, problems: list[str], ok_reason: str,
             warnings: list[str] | None = None, **kw: Any) -> Verdict:
    if problems:
        status, reason = "failed", "; ".join(problems)
    elif warnings:
        status, reason = "warning", "; ".join(warnings)
    else:
        status, reason = "passed", ok_reason
    return Verdict(gate=gate, status=status, reason=reason, config=ctx.cfg.to_dict(),
                   duration_s=round(time.time() - t0, 3), **kw)


# ---------------------------------------------------------------------------------------------
# gates
# ---------------------------------------------------------------------------------------------


def gate_0_env(ctx: GateContext) -> Verdict:
    """Device available, dataset and split valid."""
    from moola.data import validate_dataset
    from moola.train import DeviceError

    t0, gate, problems, metrics = time.time(), "gate_0_env", [], {}
    try:
        metrics["device"] = str(ctx.device)
    except DeviceError as exc:
        problems.append(str(exc))
    report = validate_dataset(ctx.data_dir, fold=ctx.cfg.run.fold)
    metrics["data"] = report.summary
    problems += list(report.problems)
    return _verdict(ctx, gate, t0, problems,
                    f"device {metrics.get('device')} ready; dataset {ctx.data_dir} valid",
                    metrics=metrics, artifacts={"data_dir": str(ctx.data_dir)})


def gate_1_smoke_enhanced(ctx: GateContext) -> Verdict:
    """EnhancedSimpleLSTM from scratch: loss finite and falling, not degenerate, skilful."""
    t0, gate = time.time(), "gate_1_smoke_enhanced"
    w = work.baseline(ctx)
    m = score(ctx, w["y_val"], w["val_pred"])
    losses = [h.get("train_loss") for h in w["history"] if h.get("train_loss") is not None]
    first, last = w["train_loss_first"], w["train_loss_last"]
    problems = []
    drop = ctx.cfg.gates.min_loss_drop
    if not losses or not all(np.isfinite(losses)):
        problems.append(f"training loss is not finite ({losses[:5]}...); lower the learning rate "
                        f"and check the data for extreme values")
    elif not last <= first * (1 - drop):
        problems.append(f"training loss did not fall: first epoch {first:.4f}, last {last:.4f} "
                        f"(expected a drop of at least {drop:.0%}); raise max_epochs or the "
                        f"learning rate")
    problems += classifier_problems("the baseline EnhancedSimpleLSTM", m)
    maj = m["majority_baseline"]
    ok = (f"macro-F1 {m['macro_f1']:.3f} (CI {m['ci']['macro_f1'][0]:.3f}-"
          f"{m['ci']['macro_f1'][1]:.3f}) vs majority baseline {maj['macro_f1']:.3f}; balanced "
          f"accuracy CI low {m['ci']['balanced_accuracy'][0]:.3f} > chance "
          f"{m['chance_balanced_accuracy']:.3f}; {w['stopped_reason']}")
    return _verdict(ctx, gate, t0, problems, ok, model=w["model"], metrics={
        **m, "train_loss_first": first, "train_loss_last": last, "epochs_run": w["epochs_run"],
        "best_epoch": w["best_epoch"], "stopped_reason": w["stopped_reason"]},
        artifacts={"baseline": w["artifact"]},
        key_metric=_key_metric("bal_acc_ci_low", m["ci"]["balanced_accuracy"][0],
                               m["chance_balanced_accuracy"], ">"))


def _compare_with(ctx: GateContext, name: str, y: np.ndarray, pred_ref: np.ndarray,
                  pred_new: np.ndarray) -> dict[str, Any]:
    from moola.metrics import paired_delta_ci

    g = ctx.cfg.gates
    d = paired_delta_ci(y, pred_ref, pred_new, metric="macro_f1", n_bootstrap=g.n_bootstrap,
                        ci_level=g.ci_level, seed=ctx.cfg.run.seed)
    return {"reference": name, "delta": d["delta"], "delta_ci": d["ci"],
            "significant": d["significant"]}


def gate_2_control_minirocket(ctx: GateContext) -> Verdict:
    """MiniRocket control: sane itself, and the deep baseline is not beaten by it."""
    t0, gate, g = time.time(), "gate_2_control_minirocket", ctx.cfg.gates
    c = work.control(ctx)
    b = work.baseline(ctx)
    mc = score(ctx, c["y_val"], c["val_pred"])
    mb = score(ctx, b["y_val"], b["val_pred"])
    problems = classifier_problems("the MiniRocket control", mc, require_skill=False)
    if mc["balanced_accuracy"] <= mc["chance_balanced_accuracy"]:
        problems.append(f"the MiniRocket control is no better than chance (balanced accuracy "
                        f"{mc['balanced_accuracy']:.3f}); the data may carry no signal")
    d = _compare_with(ctx, "gate_1_smoke_enhanced", c["y_val"], b["val_pred"], c["val_pred"])
    comparison = {"baseline_macro_f1": mb["macro_f1"], "control_macro_f1": mc["macro_f1"],
                  "delta_control_minus_baseline": d["delta"], "delta_ci": d["delta_ci"],
                  "significant": d["significant"], "margin": g.control_margin,
                  "policy": g.control_policy}
    warnings = []
    beaten = d["delta"] > g.control_margin and d["delta_ci"][0] > 0
    if beaten:
        lo, hi = d["delta_ci"]
        msg = (f"MiniRocket beats the deep baseline: macro-F1 {mc['macro_f1']:.3f} vs "
               f"{mb['macro_f1']:.3f} (delta {d['delta']:+.3f}, 95% CI {lo:+.3f} to {hi:+.3f}, "
               f"margin {g.control_margin}); the deep model is not earning its cost: fix it, "
               f"or use the control (policy '{g.control_policy}')")
        (problems if g.control_policy == "fail" else warnings).append(msg)
    ok = (f"control macro-F1 {mc['macro_f1']:.3f} vs baseline {mb['macro_f1']:.3f} "
          f"(delta {d['delta']:+.3f}, CI {d['delta_ci'][0]:+.3f} to {d['delta_ci'][1]:+.3f}): "
          f"the baseline is not significantly beaten")
    return _verdict(ctx, gate, t0, problems, ok, warnings, model="MiniRocket+RidgeClassifierCV",
                    metrics=mc, comparison=comparison,
                    artifacts={"control": c["artifact"], "baseline": b["artifact"]},
                    key_metric=_key_metric("delta_f1", d["delta"], g.control_margin, "<="))


def gate_3_pretrain_bilstm(ctx: GateContext) -> Verdict:
    """Masked reconstruction beats interpolation; linear probe clears threshold and majority."""
    t0, gate, g = time.time(), "gate_3_pretrain_bilstm", ctx.cfg.gates
    e = work.encoder(ctx)
    r, p = e["reconstruction"], e["probe"]
    problems = []
    limit = (1 - g.recon_margin) * r["interp_mse"]
    if not r["mae_mse"] < limit:
        problems.append(
            f"masked reconstruction MSE {r['mae_mse']:.4f} does not beat linear interpolation "
            f"{r['interp_mse']:.4f} by the required {g.recon_margin:.0%} (limit {limit:.4f}); "
            f"the encoder learned nothing interpolation cannot do: pretrain longer, check "
            f"normalisation, or raise the mask ratio")
    if not p["macro_f1_cv"] >= g.probe_min_macro_f1:
        problems.append(f"linear probe macro-F1 {p['macro_f1_cv']:.3f} (5-fold CV on the train "
                        f"split) is below the threshold {g.probe_min_macro_f1}")
    if not p["macro_f1_cv"] > p["majority_macro_f1"]:
        problems.append(f"linear probe macro-F1 {p['macro_f1_cv']:.3f} does not beat the "
                        f"majority baseline {p['majority_macro_f1']:.3f}")
    ok = (f"reconstruction MSE {r['mae_mse']:.4f} vs interpolation {r['interp_mse']:.4f}; probe "
          f"macro-F1 {p['macro_f1_cv']:.3f} >= {g.probe_min_macro_f1} and > majority "
          f"{p['majority_macro_f1']:.3f}")
    return _verdict(ctx, gate, t0, problems, ok, model="BiLSTM masked autoencoder",
                    metrics={"reconstruction": r, "probe": p, "epochs_run": e["epochs_run"],
                             "stopped_reason": e["stopped_reason"],
                             "n_unlabeled": e["n_unlabeled"],
                             "encoder_config": e["encoder_config"]},
                    artifacts={"encoder": e["artifact"]},
                    key_metric=_key_metric("probe_macro_f1", p["macro_f1_cv"],
                                           g.probe_min_macro_f1, ">="))


def gate_4_finetune_enhanced(ctx: GateContext) -> Verdict:
    """Encoder loaded 100%; finetuned model improves on gate 1 under the same recipe."""
    t0, gate, g = time.time(), "gate_4_finetune_enhanced", ctx.cfg.gates
    f = work.finetuned(ctx)
    b = work.baseline(ctx)
    m = score(ctx, f["y_val"], f["val_pred"])
    mb = score(ctx, b["y_val"], b["val_pred"])
    lr = f["load_report"]
    problems = []
    if not lr["ok"]:
        problems.append(f"pretrained encoder did not load completely: {lr['loaded']}/"
                        f"{lr['total']} encoder tensors ({lr['ratio']:.0%}); {lr.get('message', '')}")
    problems += classifier_problems("the finetuned EnhancedSimpleLSTM", m)
    cmp = _compare_with(ctx, "gate_1_smoke_enhanced", f["y_val"], b["val_pred"], f["val_pred"])
    cmp.update(baseline_macro_f1=mb["macro_f1"], finetuned_macro_f1=m["macro_f1"],
               min_delta=g.min_delta, same_recipe=True)
    sig = "significant" if cmp["significant"] else "not significant"
    if not cmp["delta"] > g.min_delta:
        problems.append(
            f"pretraining did not help: macro-F1 {m['macro_f1']:.3f} vs baseline "
            f"{mb['macro_f1']:.3f} (delta {cmp['delta']:+.3f}, 95% CI {cmp['delta_ci'][0]:+.3f} "
            f"to {cmp['delta_ci'][1]:+.3f}, {sig}; required > {g.min_delta:+.3f}); same recipe "
            f"and budget as gate 1, so the encoder is the cause: improve gate 3 or use the "
            f"baseline")
    ok = (f"macro-F1 {m['macro_f1']:.3f} vs baseline {mb['macro_f1']:.3f}: delta "
          f"{cmp['delta']:+.3f} (95% CI {cmp['delta_ci'][0]:+.3f} to {cmp['delta_ci'][1]:+.3f}, "
          f"{sig}); encoder tensors loaded {lr['loaded']}/{lr['total']}")
    return _verdict(ctx, gate, t0, problems, ok, model=f["model"],
                    metrics={**m, "load_report": lr, "transfer": f.get("transfer"),
                             "epochs_run": f["epochs_run"], "stopped_reason": f["stopped_reason"]},
                    comparison=cmp, artifacts={"finetuned": f["artifact"]},
                    key_metric=_key_metric("delta_f1", cmp["delta"], g.min_delta, ">"))


def gate_5_augment(ctx: GateContext) -> Verdict:
    """Pseudo-samples pass KS / quality / dedup; no drop beyond max_drop_pp vs gate 4."""
    t0, gate, g, a = time.time(), "gate_5_augment", ctx.cfg.gates, ctx.cfg.augment
    w = work.augmented(ctx)
    f = work.finetuned(ctx)
    m = score(ctx, w["y_val"], w["val_pred"])
    mf = score(ctx, f["y_val"], f["val_pred"])
    ps = w["pseudo"]
    problems = []
    if ps["n_accepted"] == 0:
        problems.append(f"no pseudo-sample survived the filters ({ps['n_generated']} generated; "
                        f"rejected: {ps['rejected']}); loosen augment settings or skip gate 5")
    low_p = {k: v for k, v in ps["ks_pvalues"].items() if v is None or v < a.ks_p_min}
    if low_p:
        problems.append(f"accepted pseudo-samples differ in distribution from the real training "
                        f"windows: KS p-values {low_p} < {a.ks_p_min}")
    qmin = ps.get("quality_min_accepted")
    if qmin is not None and qmin < a.quality_min:
        problems.append(f"an accepted pseudo-sample has quality {qmin:.3f} < {a.quality_min}")
    problems += classifier_problems("the augmented model", m)
    cmp = _compare_with(ctx, "gate_4_finetune_enhanced", w["y_val"], f["val_pred"], w["val_pred"])
    drop_pp = -cmp["delta"] * 100
    cmp.update(finetuned_macro_f1=mf["macro_f1"], augmented_macro_f1=m["macro_f1"],
               drop_pp=drop_pp, max_drop_pp=g.max_drop_pp)
    warnings = []
    if drop_pp > g.max_drop_pp:
        # with a few dozen validation windows one flipped window moves macro-F1 by several
        # points: a drop fails the gate only when the paired bootstrap CI says it is real
        msg = (f"macro-F1 on real validation windows fell {drop_pp:.1f} pp ({mf['macro_f1']:.3f} "
               f"-> {m['macro_f1']:.3f}; delta 95% CI {cmp['delta_ci'][0]:+.3f} to "
               f"{cmp['delta_ci'][1]:+.3f}), more than the allowed {g.max_drop_pp} pp")
        if cmp["significant"]:
            problems.append(f"pseudo-samples hurt: {msg}, and the drop is significant; tighten "
                            f"augment.quality_min or lower augment.ratio")
        else:
            warnings.append(f"{msg}, but the drop is within noise (not significant); watch it")
    ok = (f"{ps['n_accepted']}/{ps['n_generated']} pseudo-samples accepted (rejected "
          f"{ps['rejected']}); macro-F1 {m['macro_f1']:.3f} vs gate 4 {mf['macro_f1']:.3f} "
          f"(change {-drop_pp:+.1f} pp, allowed drop {g.max_drop_pp} pp); validation is 100% real")
    return _verdict(ctx, gate, t0, problems, ok, warnings, model=w["model"],
                    metrics={**m, "pseudo": ps, "epochs_run": w["epochs_run"]},
                    comparison=cmp, artifacts={"augmented": w["artifact"]},
                    key_metric=_key_metric("drop_pp", drop_pp, g.max_drop_pp, "<="))


def gate_6_baseline_simplelstm(ctx: GateContext) -> Verdict:
    """SimpleLSTM trains on the selected device; warns if it matches the pretrained model."""
    t0, gate = time.time(), "gate_6_baseline_simplelstm"
    s = work.simple(ctx)
    f = work.finetuned(ctx)
    m = score(ctx, s["y_val"], s["val_pred"])
    mf = score(ctx, f["y_val"], f["val_pred"])
    problems = []
    if s["param_devices"] != [s["device"]]:
        problems.append(f"SimpleLSTM parameters ended on {s['param_devices']}, expected all on "
                        f"{s['device']}: a layer was created off-device")
    problems += classifier_problems("SimpleLSTM", m, require_skill=False)
    cmp = _compare_with(ctx, "gate_4_finetune_enhanced", s["y_val"], f["val_pred"], s["val_pred"])
    cmp.update(simple_macro_f1=m["macro_f1"], finetuned_macro_f1=mf["macro_f1"])
    warnings = []
    if m["macro_f1"] >= mf["macro_f1"]:
        warnings.append(f"the simple unidirectional SimpleLSTM (hidden {ctx.cfg.model.simple_hidden}"
                        f") matches or beats the pretrained model: macro-F1 {m['macro_f1']:.3f} vs "
                        f"{mf['macro_f1']:.3f}; the extra machinery is not paying for itself")
    ok = (f"SimpleLSTM trained on {s['device']}: macro-F1 {m['macro_f1']:.3f} below the "
          f"pretrained model's {mf['macro_f1']:.3f}")
    return _verdict(ctx, gate, t0, problems, ok, warnings, model="SimpleLSTM",
                    metrics={**m, "device": s["device"], "param_devices": s["param_devices"]},
                    comparison=cmp, artifacts={"simple": s["artifact"]},
                    key_metric=_key_metric("macro_f1", m["macro_f1"], mf["macro_f1"], "<"))


APPROVABLE = {
    "baseline": "gate_1_smoke_enhanced",
    "finetuned": "gate_4_finetune_enhanced",
    "augmented": "gate_5_augment",
    "simple": "gate_6_baseline_simplelstm",
}


def gate_7_ensemble(ctx: GateContext, upstream: dict[str, Verdict] | None = None) -> Verdict:
    """Isotonic-calibrated average of the approved models; warn if worse than the best member."""
    from moola.ensemble import average_proba
    from moola.gates.ensemble_work import ensemble
    from moola.metrics import expected_calibration_error

    t0, gate, g = time.time(), "gate_7_ensemble", ctx.cfg.gates
    upstream = upstream or {}
    approved = [n for n, gt in APPROVABLE.items()
                if gt not in upstream or upstream[gt].passed]
    e = ensemble(ctx, approved)
    y = e["y_val"]
    members, ece = {}, {}
    for name, mm in e["members"].items():
        members[name] = score(ctx, y, mm["calibrated"].argmax(1))["macro_f1"]
        ece[name] = {"before": expected_calibration_error(y, mm["raw"], g.ece_bins),
                     "after": expected_calibration_error(y, mm["calibrated"], g.ece_bins)}
    avg = average_proba([mm["calibrated"] for mm in e["members"].values()])
    m = score(ctx, y, avg.argmax(1))
    raw_avg = average_proba([mm["raw"] for mm in e["members"].values()])
    ece["ensemble"] = {"before": expected_calibration_error(y, raw_avg, g.ece_bins),
                       "after": expected_calibration_error(y, avg, g.ece_bins)}
    best = max(members, key=members.get)
    drop_pp = (members[best] - m["macro_f1"]) * 100
    problems = classifier_problems("the ensemble", m)
    warnings = []
    if drop_pp > g.max_ensemble_drop_pp:
        warnings.append(f"the ensemble (macro-F1 {m['macro_f1']:.3f}) is {drop_pp:.1f} pp worse "
                        f"than its best member '{best}' ({members[best]:.3f}), more than "
                        f"{g.max_ensemble_drop_pp} pp; prefer the best member alone")
    ok = (f"ensemble of {', '.join(members)}: macro-F1 {m['macro_f1']:.3f} vs best member "
          f"'{best}' {members[best]:.3f}; ECE {ece['ensemble']['before']:.3f} -> "
          f"{ece['ensemble']['after']:.3f} after isotonic calibration (fitted on training OOF)")
    return _verdict(ctx, gate, t0, problems, ok, warnings, model="calibrated ensemble",
                    metrics={**m, "members_macro_f1": members, "ece": ece},
                    comparison={"best_member": best, "best_member_macro_f1": members[best],
                                "drop_pp": drop_pp, "max_drop_pp": g.max_ensemble_drop_pp},
                    artifacts={"ensemble": e["artifact"]},
                    key_metric=_key_metric("drop_pp", drop_pp, g.max_ensemble_drop_pp, "<="))


GATES: dict[str, Callable[..., Verdict]] = {
    "gate_0_env": gate_0_env,
    "gate_1_smoke_enhanced": gate_1_smoke_enhanced,
    "gate_2_control_minirocket": gate_2_control_minirocket,
    "gate_3_pretrain_bilstm": gate_3_pretrain_bilstm,
    "gate_4_finetune_enhanced": gate_4_finetune_enhanced,
    "gate_5_augment": gate_5_augment,
    "gate_6_baseline_simplelstm": gate_6_baseline_simplelstm,
    "gate_7_ensemble": gate_7_ensemble,
}
