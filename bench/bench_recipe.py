"""Which supervised recipe leaves the loss plateau on small data? Pooled walk-forward macro-F1.

For each dataset, variant and training seed: train on every walk-forward fold (early stopping on
the fold's stopping slice only), predict the fold's scored rows, pool them, and print the pooled
macro-F1 and how many replicas ended predicting one class. This is the measurement behind the
recipe in moola/config.py (docs/JUDGING.md, "The recipe").

    python bench/bench_recipe.py --data data/synthetic data/GunPoint --seeds 1 2 3 \
        --variants current lr1e-3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moola.config import load_config  # noqa: E402
from moola.data import load_dataset  # noqa: E402
from moola.protocol.folds import walk_forward_folds  # noqa: E402

# name -> {section: {key: value}} overrides of the standard profile
VARIANTS = {
    "current": {},
    "lr1e-3": {"train": {"lr": 1e-3}},
    "lr2e-3": {"train": {"lr": 2e-3}},
    "noweights": {"train": {"class_weighting": False}},
    "wd0": {"train": {"weight_decay": 0.0}},
    "lr1e-3-pat15": {"train": {"lr": 1e-3, "early_stop_patience": 15, "max_epochs": 60}},
    "lr5e-4-pat15": {"train": {"lr": 5e-4, "early_stop_patience": 15, "max_epochs": 60}},
    "lr1e-3-b8": {"train": {"lr": 1e-3, "batch_size": 8}},
    "steps0": {"train": {"min_steps": 0}},
    "lr1e-3-steps0": {"train": {"lr": 1e-3, "min_steps": 0}},
    "lr1e-3-steps200": {"train": {"lr": 1e-3, "min_steps": 200}},
    "lr2e-3-steps200": {"train": {"lr": 2e-3, "min_steps": 200}},
    "lr1e-3-fixed300": {"train": {"lr": 1e-3}, "_fixed_steps": 300},
}


def run(data: str, variant: str, seed: int, layers: dict, n_folds: int) -> tuple[float, int, float]:
    from moola.gates.work import build_enhanced
    from moola.train import fit_classifier, predict_proba, seed_everything

    cfg = load_config("standard", overrides={"run.seed": seed, "run.logger": "none",
                                             **{f"{s}.{k}": v for s, kv in layers.items()
                                                if not s.startswith("_") for k, v in kv.items()}})
    ds = load_dataset(data)
    fixed = layers.get("_fixed_steps", 0)
    folds = walk_forward_folds(np.union1d(ds.train_idx, ds.val_idx), n_folds,
                               inner_fraction=0.0 if fixed else 0.2)
    torch.set_num_threads(1)
    y_all, p_all, one_class, epochs = [], [], 0, []
    t0 = time.time()

    class _Ctx:  # the bits of GateContext build_enhanced reads
        pass
    ctx = _Ctx()
    ctx.cfg = cfg
    for f in folds:
        seed_everything(seed + 1000 * f.index)
        model = build_enhanced(ctx, len(ds.classes), ds.X.shape[2])
        stop = f.stop_idx
        fcfg = cfg
        if fixed:  # a fixed step budget, final weights; the "stop" set only feeds the loop's log
            spe = -(-len(f.fit_idx) // cfg.train.batch_size)
            ep = -(-fixed // spe)
            fcfg = cfg.replace("train", max_epochs=ep, min_epochs=ep, early_stop_patience=ep + 1,
                               checkpoint_save_top_k=0)
            stop = f.fit_idx[-4:]
        with tempfile.TemporaryDirectory() as tmp:
            fit = fit_classifier(model, ds.X[f.fit_idx], ds.y[f.fit_idx], ds.X[stop],
                                 ds.y[stop], fcfg, Path(tmp), torch.device("cpu"), "bench",
                                 eval_final_epoch_only=bool(fixed))
        pred = predict_proba(fit.model, ds.X[f.score_idx], "cpu").argmax(1)
        epochs.append(f"{fit.fit.best_epoch}/{fit.fit.epochs_run}")
        one_class += len(np.unique(pred)) == 1
        y_all.append(ds.y[f.score_idx])
        p_all.append(pred)
    y, p = np.concatenate(y_all), np.concatenate(p_all)
    print("  best/run epochs per fold:", " ".join(epochs), flush=True)
    return float(f1_score(y, p, average="macro")), one_class, time.time() - t0


def logreg(data: str, n_folds: int) -> float:
    """Reference: logistic regression on the flattened normalised windows, same folds."""
    from sklearn.linear_model import LogisticRegression

    ds = load_dataset(data)
    ys, ps = [], []
    for f in walk_forward_folds(np.union1d(ds.train_idx, ds.val_idx), n_folds):
        tr = np.concatenate([f.fit_idx, f.stop_idx])
        clf = LogisticRegression(C=0.1, max_iter=2000).fit(ds.X[tr].reshape(len(tr), -1), ds.y[tr])
        ps.append(clf.predict(ds.X[f.score_idx].reshape(len(f.score_idx), -1)))
        ys.append(ds.y[f.score_idx])
    return float(f1_score(np.concatenate(ys), np.concatenate(ps), average="macro"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["data/synthetic"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--folds", type=int, default=4)
    args = ap.parse_args()
    print("dataset\tvariant\tseed\tpooled_macro_f1\tone_class_folds\tseconds", flush=True)
    for d in args.data:
        print(f"{d}\tlogistic-regression reference\t-\t{logreg(d, args.folds):.3f}", flush=True)
        for v in args.variants:
            scores = []
            for s in args.seeds:
                f1, oc, dt = run(d, v, s, VARIANTS[v], args.folds)
                scores.append(f1)
                print(f"{d}\t{v}\t{s}\t{f1:.3f}\t{oc}/{args.folds}\t{dt:.1f}", flush=True)
            print(f"{d}\t{v}\tmedian\t{np.median(scores):.3f}\tmin {min(scores):.3f}", flush=True)


if __name__ == "__main__":
    main()
