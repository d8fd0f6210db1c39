"""The exported model: an approved recipe trained once more on every development row.

A gate judges its recipe by replicas (seeds x walk-forward folds), each trained on the rows
before its scored block; none of them saw the latest rows. The model a run exports is the same
recipe refitted on every labeled training window (train + val rows of the split, never its test
rows), at the run's seed. Nothing is left to stop on, so the refit trains a fixed budget:
the median over the replicas of the epochs that gave each replica its kept weights (best epoch
+ 1; all its epochs under a fixed-budget protocol), raised to ``train.min_steps`` as any fixed
budget is. Epochs, not optimizer steps: the recipe's schedule (``train.min_epochs``,
``finetune.freeze_epochs``, ``finetune.unfreeze_every``) is counted in epochs, and an epoch
is one pass over the rows whatever their number.

The refit is one model trained by itself, so on a CPU it cuts each batch into
``train.refit_shards`` shards computed on a thread per core (:mod:`moola.train.shards`); each
shard draws its dropout masks from its own generator, so the weights depend on the number of
shards, never on the cores.

The refit is a cache entry like any other (kind ``refit``), keyed by the replicas' key (which
hashes the configuration, the data, the seed and moola's training code), the budget, the shards
and this module's code: a rerun that reuses the replicas reuses the refit too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from moola.cache import code_version, make_key
from moola.io_utils import save_json
from moola.gates import building, work
from moola.gates.context import GateContext

REFIT_CODE = ["gates.refit", "models.architecture"]


def budget_epochs(replicas: Sequence[Mapping[str, Any]]) -> tuple[int, list[int]]:
    """(the refit's epochs, each replica's): the median of best_epoch + 1 over the replicas
    (epochs_run where a replica kept its final weights), rounded up."""
    per = [int(r["best_epoch"]) + 1 if r.get("best_epoch") is not None else int(r["epochs_run"])
           for r in replicas]
    if not per:
        raise ValueError("refit: the recipe has no replicas to take a training budget from")
    return int(np.ceil(np.median(per))), per


def development_rows(ctx: GateContext) -> np.ndarray:
    """Every labeled training window of the split (train + val rows), in time order."""
    ds = ctx.dataset
    return np.union1d(ds.train_idx, ds.val_idx).astype(np.int64)


def refit(ctx: GateContext, recipe: work.Recipe,
          replicas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Train `recipe` on every development row for the replicas' median budget (cached).

    Returns {"model_path", "architecture", "info", "artifact"}: the state dict's path, how to
    rebuild the module (None for a class moola.models.architecture does not know) and what
    was trained (rows, seed, epochs, how they were chosen, final loss, accuracy on the rows).
    """
    from moola.models.architecture import describe

    ds = ctx.dataset
    epochs, per_replica = budget_epochs(replicas)
    seed = work.seeds(ctx)[0]
    rows = development_rows(ctx)
    # its batches in shards on the cores (CPU): shard s draws its own dropout masks, so the
    # number of shards changes the weights (the cores do not)
    shards = ctx.cfg.train.refit_shards if ctx.device.type == "cpu" else 1
    key = make_key({"kind": "refit", "of": recipe.kind, "replicas": recipe.key, "epochs": epochs,
                    "shards": shards, "code": code_version(REFIT_CODE)})

    def build(tmp: Path, workdir: Path):
        from moola.io_utils import atomic_torch_save, copy_file
        from moola.protocol.folds import Fold
        from moola.train import predict_proba, seed_everything

        X, y = ds.X[rows], ds.y[rows]
        extra: dict[str, Any] = {}
        if recipe.extend_training is not None:
            # a "fold" after the walk-forward ones: it fits every row and scores none
            empty = np.zeros(0, np.int64)
            fold = Fold(len(work.folds(ctx)), rows, empty, empty, source="refit")
            X, y, extra = recipe.extend_training(X, y, fold, seed)
        # status.json: the gate trains once more, on all rows (not one of its replicas)
        ctx.status.update(gate=recipe.gate, replica="refit", replica_index=None,
                          replica_count=None, replicas_together=None)
        seed_everything(seed, ctx.cfg.run.deterministic)
        model = recipe.make_model(seed)
        fit, transfer = work.train_classifier(
            ctx, recipe.gate, model, X, y, X[:0], y[:0], workdir, pretrained=recipe.pretrained,
            seed=seed, budget_epochs=epochs, shards=shards)
        module = fit.model.cpu().eval()
        atomic_torch_save({k: v.detach().clone() for k, v in module.state_dict().items()},
                          tmp / "model.pt")
        pred = predict_proba(module, ds.X[rows], "cpu").argmax(axis=1)
        if (workdir / "metrics.csv").is_file():  # not metrics.csv: that name is the gate's curve
            copy_file(workdir / "metrics.csv", tmp / "refit_metrics.csv")
        save_json(tmp / "refit.json", {
            "architecture": describe(module),
            "info": {
                "rows": f"train + val rows of splits/fold_{ds.fold}.json, never its test rows",
                "n_rows": int(len(rows)), "n_train_windows": int(len(y)),
                "class_counts": {c: int((ds.y[rows] == i).sum())
                                 for i, c in enumerate(ds.classes)},
                "seed": int(seed), "epochs": int(fit.fit.epochs_run),
                "shards": int(fit.shards),  # 1 where the architecture takes one pass
                "budget_epochs": epochs, "replica_epochs": per_replica,
                "budget_rule": "median over the replicas of best_epoch + 1 (the epochs that gave "
                               "each replica its kept weights), raised to train.min_steps",
                "train_loss_first": fit.train_loss_first,
                "train_loss_last": fit.train_loss_last,
                "train_acc": float(np.mean(pred == ds.y[rows])),
                "duration_s": round(float(fit.fit.duration_s), 3),
                "transfer": transfer, **extra,
            }})
        return {"of": recipe.kind, "replicas": recipe.key}

    entry = building.build_entry(ctx, recipe.gate, "refit", key, build)
    out = building.load_json(entry.path / "refit.json")
    out["model_path"] = entry.path / "model.pt"
    out["artifact"] = entry.record(replicas_key=recipe.key)
    return out
