"""Gate 7's work: out-of-fold predictions for each approved member, isotonic calibration.

Calibration is fitted on out-of-fold probabilities over the *training* split only: each member's
recipe is refitted on K-1 folds and predicts the held-out fold. Validation windows are used
only to score the calibrated members and their average.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moola.gates import work
from moola.gates.context import GateContext

# member name -> (gate, work function, how to build a fresh model for a fold refit)
MEMBERS = {
    "baseline": ("gate_1_smoke_enhanced", work.baseline, "scratch"),
    "finetuned": ("gate_4_finetune_enhanced", work.finetuned, "pretrained"),
    "augmented": ("gate_5_augment", work.augmented, "pretrained+pseudo"),
    "simple": ("gate_6_baseline_simplelstm", work.simple, "simple"),
}


def ensemble(ctx: GateContext, approved: list[str]) -> dict[str, Any]:
    """Calibrated members and their average on the validation split (cached)."""
    ds = ctx.dataset
    members = {name: MEMBERS[name][1](ctx) for name in approved}
    upstream = {n: m["artifact"]["key"] for n, m in members.items()}
    key = work._key(ctx, "ensemble", work.CLASSIFIER_SECTIONS + ("finetune", "augment",
                                                                  "ensemble"), members=upstream)
    gate = "gate_7_ensemble"

    def build(tmp: Path, workdir: Path):
        from moola.ensemble import IsotonicCalibrator, out_of_fold_proba

        X_tr, y_tr = ds.X[ds.train_idx], ds.y[ds.train_idx]
        arrays = {}
        for name, m in members.items():
            budget = max(1, int(m["best_epoch"]) + 1)
            fit_predict = _fold_refit(ctx, name, budget, workdir / name)
            oof = out_of_fold_proba(fit_predict, X_tr, y_tr, n_splits=ctx.cfg.ensemble.oof_folds,
                                    seed=ctx.cfg.run.seed)
            cal = IsotonicCalibrator().fit(oof, y_tr)  # training-split OOF only
            arrays[f"{name}__oof"] = oof
            arrays[f"{name}__raw"] = m["val_proba"]
            arrays[f"{name}__cal"] = cal.transform(m["val_proba"])
        np.savez(tmp / "ensemble.npz", y_val=ds.y[ds.val_idx], **arrays)
        return {"members": list(members)}

    entry = work._build(ctx, gate, "ensemble", key, build)
    z = work._load_npz(entry.path / "ensemble.npz")
    out = {"y_val": z["y_val"], "members": {}}
    for name in members:
        out["members"][name] = {"raw": z[f"{name}__raw"], "calibrated": z[f"{name}__cal"],
                                "oof": z[f"{name}__oof"]}
    out["artifact"] = {"path": str(entry.path), "key": entry.key, "cache_hit": entry.hit,
                       "members": upstream}
    return out


def _fold_refit(ctx: GateContext, name: str, budget: int, run_root: Path):
    """A fit_predict(X_tr, y_tr, X_te) callable that refits member `name` with a fixed budget.

    The budget is the member's own selected epoch count; the refit's final weights predict the
    held-out fold (nothing is selected, so only the last epoch is evaluated). That evaluation,
    which the loop needs for its log, uses at most 32 of the fold's own real training windows,
    evenly spaced, so nothing about the held-out fold (whose labels calibrate the member)
    steers training.
    """
    from moola.train import predict_proba

    ds = ctx.dataset
    n_classes, n_features = len(ds.classes), ds.X.shape[2]
    recipe = MEMBERS[name][2]
    counter = iter(range(1000))

    def fit_predict(X_tr, y_tr, X_te):
        from moola.train import seed_everything

        fold = next(counter)
        run_dir = run_root / f"fold_{fold}"
        seed_everything(ctx.cfg.run.seed + fold, ctx.cfg.run.deterministic)
        pretrained = recipe.startswith("pretrained")
        pick = np.unique(np.linspace(0, len(X_tr) - 1, min(32, len(X_tr))).astype(int))
        X_check, y_check = X_tr[pick], y_tr[pick]
        if recipe == "scratch":
            model = work.build_enhanced(ctx, n_classes, n_features)
        elif recipe == "simple":
            model = work.build_simple(ctx, n_classes, n_features)
        else:
            model, _ = work.build_pretrained(ctx, work.encoder(ctx)["encoder_path"], n_classes)
        if recipe == "pretrained+pseudo":
            from moola.pseudo import generate_pseudo_samples

            rng = np.random.default_rng(ctx.cfg.run.seed)
            ps = generate_pseudo_samples(X_tr, y_tr, ctx.cfg.augment, rng,
                                         ohlc=work._is_ohlc(ds))
            X_tr = np.concatenate([X_tr, ps.X]).astype(np.float32)
            y_tr = np.concatenate([y_tr, ps.y]).astype(np.int64)
        # status.json shows gate 7 at work (refitting member `name`), not the member's gate
        fit, _ = work.train_classifier(ctx, "gate_7_ensemble", model, X_tr, y_tr, X_check,
                                       y_check, run_dir, pretrained=pretrained,
                                       max_epochs=budget)
        return predict_proba(fit.model, X_te, ctx.device)

    return fit_predict
