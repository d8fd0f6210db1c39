"""Exporting a run's approved models to ``reports/runs/<run_id>/models/<name>/``.

Called by the pytest plugin right after a gate's verdict, in the process that ran the gate's
test (so under ``-n`` each model is exported once, by one worker). A gate's model is exported
when the gate declares one (``produces=``) and the approval rule (:mod:`moola.approval`, the
same for gate 7's members and the decision) approves its verdict: judged and not failed on the
model itself (gate 2 failing on the baseline still exports the control), not one-class, skill
over chance shown, not significantly worse than the model it builds on. The card carries the
status, so an inconclusive model says so. Gate 7 exports the ensemble of the members it kept;
gate 2 the MiniRocket control (:mod:`moola.export.control`, no pickle); the decision's verdict
marks its model (``recommended.json``), exporting it first when its gate did not.

What is exported is the gate's recipe refitted on every development row
(:mod:`moola.gates.refit`, cached); its card names the estimate that describes it: the
gate's pooled out-of-fold macro-F1 of the recipe, with its CI.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from moola.export.bundle import (CALIBRATION, CARD, FORMAT, MEMBERS, publish,
                                 write_model_files)

NORMALIZATION_TEXT = {
    "window_zscore": "each window minus the mean of all its values (every bar and feature), "
                     "divided by their standard deviation (floored at 1e-6 x max(1, abs(mean))); "
                     "moola.data.normalize.window_zscore, applied by moola predict",
    "none": "raw values, as read",
}
TRAINING_SECTIONS = ("data", "model", "train", "finetune", "augment", "protocol")


def models_dir(ctx) -> Path:
    """reports/runs/<run_id>/models/ (not created here)."""
    return ctx.reports / "runs" / ctx.run_id / "models"


def export_after_gate(ctx, verdict) -> dict[str, Any] | None:
    """Export the model of `verdict`'s gate when it is approved; returns what the gate's
    results record says about it ({"path", ...} or {"path": None, "reason"}), or None when
    the gate has no model or did not approve it."""
    from moola.gates.registry import REGISTRY

    from moola.approval import approval

    if verdict.gate == "decision":
        return export_recommended(ctx, verdict)
    if verdict.gate not in REGISTRY:
        return None
    spec = REGISTRY[verdict.gate]
    if not spec.ensembles and (spec.produces is None or spec.producer is None):
        return None  # the gate trains no model
    if verdict.status == "skipped":
        return None
    ok, why = approval(verdict)  # the one rule (moola.approval), as gate 7 and the decision
    if not ok:
        return None if verdict.status == "failed" else {
            "path": None, "reason": f"not exported: {why}: only an approved model is deployed"}
    if spec.ensembles:
        return export_ensemble(ctx, verdict)
    t0 = time.time()
    model = spec.producer(ctx)
    if model.recipe is None:  # a model that is not a torch module trained by the protocol
        if model.gate == "gate_2_control_minirocket":
            from moola.export.control import export_control

            return export_control(ctx, verdict, model, models_dir(ctx) / spec.produces)
        return {"path": None, "reason": (
            f"not exported: '{model.name}' is not a torch module trained by moola's protocol, "
            f"so there is no recipe to refit and no weights to load with weights_only=True")}
    from moola.gates.artifacts import refitted

    r = refitted(ctx, model)
    card = model_card(ctx, verdict, model, r)
    out = publish(models_dir(ctx) / spec.produces, lambda tmp: write_model_files(
        tmp, r.path, card, card_markdown, Path(r.artifact["path"]) / "refit_metrics.csv"))
    return _record(out, [r], t0)


RECOMMENDED = "recommended.json"


def export_recommended(ctx, verdict) -> dict[str, Any] | None:
    """The decision's model: exported by its gate earlier in the run, or now (a session that
    judged its gate from the cache, e.g. ``-k decision``), and marked as recommended in the
    run's models folder (``recommended.json``: its name, path and the decision's reason)."""
    from moola.gates.runner import judge
    from moola.io_utils import atomic_write_json

    m = verdict.metrics or {}
    name = m.get("recommended")
    if not name:
        return None
    where = models_dir(ctx) / name
    if not (where / CARD).is_file() and not ctx.build_allowed:
        # the session-end decision never trains (no refit): it names what is missing
        return {"path": None, "recommended": name, "reason": (
            f"the recommended model '{name}' was not exported by this session (its gate was "
            f"judged from the cache or not at all); pytest gates_tests -k decision exports it")}
    if not (where / CARD).is_file():
        gate = m["candidates"][name]["gate"]  # the gate that vouched for it (the decision's row)
        entry = export_after_gate(ctx, ctx.verdicts.get(gate) or judge(ctx, gate))
        if not entry or not entry.get("path"):
            why = (entry or {}).get("reason") or (entry or {}).get("error") or "its gate " \
                "exported nothing"
            return {"path": None, "recommended": name,
                    "reason": f"the recommended model '{name}' was not exported: {why}"}
    marker = models_dir(ctx) / RECOMMENDED
    atomic_write_json(marker, {"recommended": name, "path": str(where),
                               "reason": verdict.reason, "expected": m.get("expected"),
                               "indistinguishable": m.get("indistinguishable"),
                               "run_id": ctx.run_id}, indent=1, fsync=False)
    return {"path": str(where), "recommended": name, "marker": str(marker)}


def export_ensemble(ctx, verdict) -> dict[str, Any] | None:
    """Gate 7's ensemble: each kept member's refitted model and its isotonic map, fitted on all
    of the member's pooled out-of-fold predictions."""
    from moola.gates.artifacts import refitted
    from moola.gates.registry import REGISTRY
    from moola.gates.runner import judge

    names = list((verdict.metrics or {}).get("members_macro_f1") or {})
    if not names:
        return None
    t0 = time.time()
    candidates = REGISTRY.ensemble_candidates()
    parts = {}
    for name in names:
        spec = candidates[name]
        model = spec.producer(ctx)
        if model.recipe is None:
            return {"path": None, "reason": f"not exported: member '{name}' ({model.model}) "
                                            f"has no recipe to refit"}
        parts[name] = (judge(ctx, spec.name), model, refitted(ctx, model))
    maps = {name: calibration_map(model) for name, (_, model, _) in parts.items()}

    def fill(tmp: Path) -> None:
        from moola.io_utils import jsonable
        from moola.io_utils import atomic_write_json, atomic_write_text

        for name, (v, model, r) in parts.items():
            write_model_files(tmp / MEMBERS / name, r.path, model_card(ctx, v, model, r),
                              card_markdown, Path(r.artifact["path"]) / "refit_metrics.csv")
        atomic_write_json(tmp / CALIBRATION, maps, indent=1, fsync=False)
        card = jsonable(ensemble_card(ctx, verdict, {n: (v, m) for n, (v, m, _) in parts.items()}))
        atomic_write_json(tmp / CARD, card, indent=1, fsync=False)
        atomic_write_text(tmp / "card.md", card_markdown(card), fsync=False)

    out = publish(models_dir(ctx) / "ensemble", fill)
    return _record(out, [r for _, _, r in parts.values()], t0)


def calibration_map(model) -> dict[str, Any]:
    """The member's isotonic map (one curve per class) fitted on all its pooled out-of-fold
    predictions: every seed's probabilities of every scored window."""
    from moola.ensemble import IsotonicCalibrator

    r, n, k = model.proba.shape
    return IsotonicCalibrator().fit(model.proba.reshape(r * n, k), np.tile(model.y, r)).state_dict()


def _record(out: Path, refits: list[Any], t0: float) -> dict[str, Any]:
    return {"path": str(out), "refits": {r.name: r.artifact["key"] for r in refits},
            "refit_cache_hit": all(bool(r.artifact["cache_hit"]) for r in refits),
            "duration_s": round(time.time() - t0, 3)}


# ---------------------------------------------------------------------------------------------
# cards
# ---------------------------------------------------------------------------------------------


def _common(ctx) -> dict[str, Any]:
    """What every card says about the data a model expects."""
    import moola

    ds = ctx.dataset
    return {
        "format": FORMAT, "run_id": ctx.run_id,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "moola_version": moola.__version__,
        "classes": list(ds.classes), "feature_names": list(ds.feature_names),
        "window_length": int(ds.X.shape[1]),
        "normalization": {"method": ds.normalization,
                          "what": NORMALIZATION_TEXT.get(ds.normalization, ds.normalization)},
        "data": {"path": str(ds.path), "fingerprint": ds.fingerprint,
                 "split": f"splits/fold_{ds.fold}.json", "n_labeled": int(len(ds.y)),
                 "n_unlabeled": int(len(ds.X_unlabeled))},
    }


def verdict_summary(v) -> dict[str, Any]:
    return {"gate": v.gate, "status": v.status, "reason": v.reason, "key_metric": v.key_metric}


def estimate(m: Mapping[str, Any], n_rows: int, n_folds: int,
             ensemble: bool = False) -> dict[str, Any]:
    """The fold estimate that describes an exported model, from its gate's metrics."""
    ci = m.get("ci") or {}
    n_folds = m.get("n_folds", n_folds)
    protocol = (f"{m['n']} scored windows x {m.get('n_replicas', 1)} seeds over {n_folds} "
                f"walk-forward folds")
    if ensemble:
        describes = (
            f"the gate's pooled out-of-fold estimate of the calibrated ensemble: {protocol}, "
            f"each window predicted by members trained only on earlier rows and calibrated by "
            f"maps fitted on the other folds' windows. The exported ensemble is each member's "
            f"recipe refitted on all {n_rows} development rows, with maps fitted on all the "
            f"out-of-fold predictions, so no window is left to score it on: this is the "
            f"estimate to quote for it")
    else:
        describes = (
            f"the gate's pooled out-of-fold estimate of this recipe: {protocol}, each window "
            f"predicted by a replica trained only on earlier rows. The exported model is the "
            f"same recipe refitted on all {n_rows} development rows, so no window is left to "
            f"score it on: this is the estimate to quote for it (trained on more rows, it "
            f"usually does no worse)")
    out = {
        "describes": describes,
        "macro_f1": m["macro_f1"], "macro_f1_ci": ci.get("macro_f1"),
        "balanced_accuracy": m.get("balanced_accuracy"),
        "balanced_accuracy_ci": ci.get("balanced_accuracy"),
        "accuracy": m.get("accuracy"), "accuracy_ci": ci.get("accuracy"),
        "ci_level": m.get("ci_level"),
        "majority_baseline_macro_f1": (m.get("majority_baseline") or {}).get("macro_f1"),
        "skill_p_value": m.get("skill_p_value"), "seed_spread": m.get("seed_spread"),
        "per_class": m.get("per_class"), "n_scored_windows": m["n"],
        "n_seeds": m.get("n_replicas", 1), "n_folds": n_folds,
    }
    if m.get("test"):
        out["held_out_test"] = {**m["test"], "what": (
            "the split's test rows, predicted by each seed's last-fold replica (not by the "
            "exported model); no gate decision used them")}
    return out


def model_card(ctx, verdict, model, refit) -> dict[str, Any]:
    """card.json of one exported model."""
    from moola.gates.refit import development_rows

    cfg = ctx.cfg.to_dict()
    n_rows = int(len(development_rows(ctx)))
    metrics = verdict.metrics or {}
    if "macro_f1" not in metrics or "n" not in metrics:
        # a user gate judged its model on something else: score its pooled predictions here
        from moola.gates.criteria import replicated_metrics

        metrics = replicated_metrics(ctx, model)
    return {
        **_common(ctx), "kind": "model", "name": model.name, "model": model.model,
        "gate": model.gate, "architecture": dict(refit.architecture or {}),
        "verdict": verdict_summary(verdict),
        "estimate": estimate(metrics, n_rows, int(len(np.unique(model.fold_of)))),
        "training": {**refit.info, "config": {s: cfg[s] for s in TRAINING_SECTIONS}},
        "artifacts": {"replicas": model.artifact.get("key"), "refit": refit.artifact["key"]},
        "config": cfg,
    }


def ensemble_card(ctx, verdict, members: Mapping[str, tuple[Any, Any]]) -> dict[str, Any]:
    """card.json of the exported ensemble; `members`: {name: (its gate's verdict, model)}."""
    from moola.gates.refit import development_rows

    first = next(iter(members.values()))[1]
    return {
        **_common(ctx), "kind": "ensemble", "name": "ensemble", "model": verdict.model,
        "gate": verdict.gate, "members": list(members),
        "member_gates": {n: verdict_summary(v) for n, (v, _) in members.items()},
        "combination": (
            "each member's probabilities go through its isotonic map (calibration.json: one "
            "monotone curve per class, fitted on all of the member's pooled out-of-fold "
            "predictions, rows renormalised), then the members are averaged with equal "
            "weights; the predicted class is the most probable"),
        "calibration": CALIBRATION, "verdict": verdict_summary(verdict),
        "estimate": estimate(verdict.metrics, int(len(development_rows(ctx))),
                             int(len(np.unique(first.fold_of))), ensemble=True),
        "config": ctx.cfg.to_dict(),
    }


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def _row(name: str, text: Any) -> str:
    """A Markdown table row; a `|` in the text would end the cell."""
    return f"| {name} | {str(text).replace('|', chr(92) + '|')} |"


def card_markdown(card: Mapping[str, Any]) -> str:
    """card.md: the card for people."""
    e, v = card["estimate"], card["verdict"]
    ci = e.get("macro_f1_ci") or [None, None]
    level = f"{e['ci_level']:.0%}" if e.get("ci_level") else ""
    lines = [
        f"# {card['name']}: {card['model']}", "",
        f"Exported by run `{card['run_id']}` from `{card['gate']}`, whose verdict was "
        f"**{v['status']}**: {v['reason'].removeprefix(v['status'] + ': ')}", "",
        f"**Estimate:** macro-F1 {_f(e['macro_f1'])} ({level} CI {_f(ci[0])}-{_f(ci[1])}), "
        f"balanced accuracy {_f(e.get('balanced_accuracy'))}, majority-class baseline macro-F1 "
        f"{_f(e.get('majority_baseline_macro_f1'))}. This is {e['describes']}.", "",
        "```bash",
        "moola predict --model THIS_DIRECTORY --data DATASET_DIR_OR_BARS.csv --out predictions.csv",
        "```", "",
        "| | |", "|---|---|",
        _row("classes", ", ".join(card["classes"])),
        _row("features", ", ".join(card["feature_names"])),
        _row("window", f"{card['window_length']} steps"),
        _row("normalisation", f"{card['normalization']['method']}: "
                              f"{card['normalization']['what']}"),
    ]
    if card["kind"] == "ensemble":
        lines += [_row("members", f"{', '.join(card['members'])} (each in members/<name>/)"),
                  _row("combination", card["combination"])]
    elif card["kind"] == "minirocket":
        t, mr = card["training"], card["minirocket"]
        lines += [
            _row("model", t["what"]),
            _row("trained on", f"{t['n_rows']} windows ({t['rows']}), seed {t['seed']}; "
                               f"ridge alpha {mr['ridge_alpha']:g}"),
            _row("accuracy on its training rows", f"{_f(t.get('train_acc'))} (in-sample, not "
                                                  f"an estimate)"),
            _row("parameters", f"{mr['file']}: {mr['load']}"),
        ]
    else:
        t, a = card["training"], card["architecture"]
        lines += [
            _row("architecture", f"{a.get('class')} {json.dumps(a.get('args'))}"),
            _row("trained on", f"{t['n_rows']} windows ({t['rows']}), seed {t['seed']}, "
                               f"{t['epochs']} epochs: {t['budget_rule']}; replicas "
                               f"{t['replica_epochs']}"),
            _row("final training loss", f"{_f(t.get('train_loss_last'))}; accuracy on its "
                                        f"training rows {_f(t.get('train_acc'))} (in-sample, "
                                        f"not an estimate)"),
            _row("weights", f"{card['weights']['file']}: {card['weights']['load']}"),
        ]
    if e.get("held_out_test"):
        h = e["held_out_test"]
        lines.append(_row("held-out test", f"macro-F1 {_f(h['macro_f1'])} (n={h['n']}): "
                                           f"{h['what']}"))
    return "\n".join(lines) + "\n"
