"""Train one recipe as replicas (seed x fold) and pool their predictions of the scored windows.

Every replica trains on its fold's fit rows, stops early and picks its best checkpoint on the
fold's stopping slice (training rows, never scored), then predicts the fold's scored rows and,
when the split has them, the held-out test rows. The replicas train together, one step of all
at a time (:mod:`moola.train.together`), or one after another. A replica that finished is
written to the build's work directory at once, so a build killed half-way resumes with the
replicas it has (and the unfinished ones resume from their last checkpoints).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from moola.io_utils import atomic_save_npz, atomic_torch_save, copy_file, save_json
from moola.protocol.folds import Fold, pooled_index

# make_model(seed) -> a fresh nn.Module (the caller's recipe); called right after seeding
ModelFactory = Callable[[int], torch.nn.Module]
# make_job(model, X_fit, y_fit, X_stop, y_stop, run_dir, pretrained=, seed=, name=) ->
# (moola.train.together.ReplicaJob, transfer info): the caller's training recipe
JobFactory = Callable[..., tuple[Any, dict]]
# extend_training(X_fit, y_fit, fold, seed) -> (X, y, info): e.g. gate 5's pseudo-samples
TrainingExtension = Callable[[np.ndarray, np.ndarray, Fold, int], tuple[np.ndarray, np.ndarray, dict]]


@dataclass(frozen=True)
class Replica:
    """Which replica: the training seed and the fold."""

    seed: int
    fold: Fold

    @property
    def name(self) -> str:
        return f"seed{self.seed}_fold{self.fold.index}"


def replica_seeds(base_seed: int, n_seeds: int) -> list[int]:
    """The training seeds of a run: base, base + 1000, base + 2000, ...

    Spaced so that runs at ``--seed`` 1, 2, 3, ... share no replica (base + 1 would make the
    second seed of run 1 the first of run 2, and a seed sweep would count one model twice).
    """
    return [base_seed + 1000 * i for i in range(n_seeds)]


def train_replicas(ctx, gate: str, folds: list[Fold], seeds: list[int], make_model: ModelFactory,
                   workdir: Path, out_dir: Path, *, make_job: JobFactory, status: Any,
                   pretrained: bool = False,
                   extend_training: TrainingExtension | None = None) -> dict[str, Any]:
    """Train every (seed, fold) replica; write the pooled predictions into `out_dir`.

    `make_job` turns a replica's model and rows into a training job (the gates' shared recipe,
    moola.gates.work.classifier_job); `status` is the run's status writer. The replicas not
    yet done train together (:mod:`moola.train.together`, when
    ``train.replicas_together`` and the architecture allows) or one after another.
    Writes ``pooled.npz`` (score_idx, fold_of, y, proba (R, n, K), test_idx, y_test,
    test_proba (R, n_test, K) from each seed's last-fold model), ``replicas.json`` (per replica:
    seed, fold, sizes, accuracy on the fold's real fit rows, best/epochs run, stop reason,
    first/last training loss, parameter devices, extra info) and ``models/<replica>.pt`` (state
    dicts). Returns the replica list.
    """
    ds = ctx.dataset
    test_idx = np.asarray(ds.test_idx, dtype=np.int64)
    (out_dir / "models").mkdir(exist_ok=True)
    replicas = [Replica(seed, fold) for seed in seeds for fold in folds]
    pending = [rep for rep in replicas if not (workdir / rep.name / "done.json").is_file()]
    if pending:
        _train(ctx, gate, pending, folds, make_model, make_job, status, workdir, len(replicas),
               pretrained=pretrained, extend_training=extend_training)
    summaries, probas, test_probas = [], {}, {}
    for rep in replicas:
        rdir = workdir / rep.name
        summaries.append(json.loads((rdir / "done.json").read_text()))
        with np.load(rdir / "preds.npz") as z:
            probas[(rep.seed, rep.fold.index)] = z["proba"]
            test_probas[(rep.seed, rep.fold.index)] = z["test_proba"]
        copy_file(rdir / "model.pt", out_dir / "models" / f"{rep.name}.pt")
        if (rdir / "metrics.csv").is_file():
            (out_dir / "replicas").mkdir(exist_ok=True)
            copy_file(rdir / "metrics.csv", out_dir / "replicas" / f"{rep.name}.csv")
    score_idx, fold_of = pooled_index(folds)
    proba = np.stack([np.concatenate([probas[(s, f.index)] for f in folds]) for s in seeds])
    last = folds[-1].index
    test_proba = np.stack([test_probas[(s, last)] for s in seeds])
    atomic_save_npz(out_dir / "pooled.npz", score_idx=score_idx, fold_of=fold_of, y=ds.y[score_idx],
             proba=proba, test_idx=test_idx, y_test=ds.y[test_idx], test_proba=test_proba,
             seeds=np.asarray(seeds))
    save_json(out_dir / "replicas.json", summaries)
    # the learning curve people see first: the first seed's last fold (trained on the most rows)
    rep_csv = out_dir / "replicas" / f"seed{seeds[0]}_fold{last}.csv"
    if rep_csv.is_file():
        copy_file(rep_csv, out_dir / "metrics.csv")
    return {"replicas": summaries}


def _train(ctx, gate: str, pending: list[Replica], folds: list[Fold], make_model: ModelFactory,
           make_job: JobFactory, status: Any, workdir: Path, n_replicas: int, *, pretrained: bool,
           extend_training: TrainingExtension | None) -> None:
    """Train the replicas in `pending` and write each one's model.pt, preds.npz and done.json
    (last: its presence means the replica is complete)."""
    from moola.train import seed_everything
    from moola.train.together import (can_train_together, fit_alone, fit_together,
                                      replica_threads)

    jobs, infos = [], []
    for rep in pending:
        fold = rep.fold
        rdir = workdir / rep.name
        rdir.mkdir(parents=True, exist_ok=True)
        X_fit, y_fit = ctx.dataset.X[fold.fit_idx], ctx.dataset.y[fold.fit_idx]
        info: dict[str, Any] = {}
        if extend_training is not None:
            X_fit, y_fit, info = extend_training(X_fit, y_fit, fold, rep.seed)
        seed_everything(rep.seed, ctx.cfg.run.deterministic)  # the model's initial weights
        model = make_model(rep.seed)
        job, extra = make_job(model, X_fit, y_fit, ctx.dataset.X[fold.stop_idx],
                              ctx.dataset.y[fold.stop_idx], rdir, pretrained=pretrained,
                              seed=rep.seed, name=rep.name)
        jobs.append(job)
        infos.append({"transfer": extra, **info})
    together = (ctx.cfg.train.replicas_together and len(jobs) > 1
                and can_train_together([j.model for j in jobs]))
    if together:
        threads = replica_threads(ctx.cfg.train.replica_threads, ctx.device)
        fit_together(jobs, ctx.device, gate, threads=threads, status=status,
                     on_done=lambda i, fit: _save_replica(ctx, pending[i], jobs[i], fit,
                                                          infos[i], folds),
                     **ctx.training_hooks())
        return
    for i, (rep, job, info) in enumerate(zip(pending, jobs, infos)):
        # moola status shows the gate's progress as replica i of R, not one fit's epochs
        status.update(gate=gate, replica=rep.name, replicas_together=None,
                      replica_index=n_replicas - len(pending) + i + 1, replica_count=n_replicas)
        fit = fit_alone(job, ctx.device, gate, status=status, **ctx.training_hooks())
        _save_replica(ctx, rep, job, fit, info, folds)


def _save_replica(ctx, rep: Replica, job, fit, info: dict, folds: list[Fold]) -> None:
    """A trained replica's predictions (its fold's scored rows; the held-out rows for the last
    fold), weights and summary, written into its directory."""
    from moola.train import predict_proba

    ds, fold, rdir = ctx.dataset, rep.fold, job.run_dir
    test_idx = np.asarray(ds.test_idx, dtype=np.int64)
    proba = predict_proba(fit.model, ds.X[fold.score_idx], ctx.device)
    # accuracy of the kept weights on the fold's real fit rows (pseudo-samples left out): the
    # records' train_acc, the earlier scripts' training-fit figure
    fit_pred = predict_proba(fit.model, ds.X[fold.fit_idx], ctx.device).argmax(1)
    train_acc = float(np.mean(fit_pred == ds.y[fold.fit_idx]))
    # the held-out rows: only each seed's last-fold model is reported on them
    tproba = (predict_proba(fit.model, ds.X[test_idx], ctx.device)
              if len(test_idx) and fold is folds[-1] else np.zeros((0, proba.shape[1])))
    atomic_torch_save(fit.model.state_dict(), rdir / "model.pt")
    atomic_save_npz(rdir / "preds.npz", proba=proba, test_proba=tproba)
    r = fit.fit
    summary = {
        "replica": rep.name, "seed": rep.seed, "fold": fold.index, "fold_source": fold.source,
        "n_fit": int(len(job.y_fit)), "n_fit_real": int(len(fold.fit_idx)),
        "n_stop": int(len(fold.stop_idx)), "n_scored": int(len(fold.score_idx)),
        "train_acc": train_acc, "best_epoch": r.best_epoch, "epochs_run": r.epochs_run,
        "max_epochs": r.max_epochs,  # the epochs it could run (train.classify.epoch_budget)
        "stopped_reason": r.stopped_reason, "resumed_from_epoch": r.resumed_from_epoch,
        "train_loss_first": fit.train_loss_first, "train_loss_last": fit.train_loss_last,
        "history": r.history,
        "param_devices": sorted({p.device.type for p in fit.model.parameters()}), **info}
    save_json(rdir / "done.json", summary)  # last: its presence means the replica is complete
