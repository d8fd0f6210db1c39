"""The expensive work behind the gates, each piece a cached artifact.

Every function here returns a plain dict of results loaded from a cache entry; it builds the
entry first when it is missing (or when its gate is selected in this run, see
:meth:`GateContext.fresh`). Cache keys hash the configuration sections the work depends on,
the data fingerprint, the keys of upstream artifacts and the producing code's version.

Compared models share one recipe (``cfg.train``): gate 1 (baseline), 4 (pretrained encoder),
5 (plus pseudo-samples) and 6 (SimpleLSTM) differ only in the factor under test. Each is trained
as replicas (``cfg.protocol``: seeds x walk-forward folds, :mod:`moola.protocol`) and returns
the pooled out-of-fold predictions of the scored windows: ``y`` (n,), ``proba`` (R, n, K),
``pred`` (R, n), ``fold_of`` (n,), ``seeds`` (R,), the held-out ``test_proba`` and the
per-replica summaries. Gate 2's control is the same folds with one replica per fold.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from moola.cache import CacheEntry
from moola.gates.building import build_entry, cache_key, load_json, load_npz, status_for
from moola.gates.context import GateContext
from moola.io_utils import atomic_save_npz, copy_file, save_json

# ---------------------------------------------------------------------------------------------
# supervised training shared by gates 1, 4, 5 and 6 (every replica)
# ---------------------------------------------------------------------------------------------


def build_enhanced(ctx: GateContext, n_classes: int, n_features: int):
    """EnhancedSimpleLSTM from scratch, sized by cfg.model (gate 1)."""
    from moola.models import EncoderConfig, EnhancedSimpleLSTM

    m = ctx.cfg.model
    enc = EncoderConfig(input_features=n_features, hidden=m.hidden, layers=m.layers,
                        bidirectional=True, dropout=m.dropout if m.layers > 1 else 0.0)
    return EnhancedSimpleLSTM(enc, n_classes, attention_heads=m.attention_heads,
                              head_hidden=m.head_hidden, dropout=m.dropout)


def build_simple(ctx: GateContext, n_classes: int, n_features: int):
    """Unidirectional SimpleLSTM from scratch (gate 6)."""
    from moola.models import SimpleLSTM

    return SimpleLSTM(n_features, hidden=ctx.cfg.model.simple_hidden, n_classes=n_classes)


def build_pretrained(ctx: GateContext, encoder_ckpt: Path, n_classes: int):
    """EnhancedSimpleLSTM built from the encoder checkpoint's own config, encoder loaded."""
    from moola.transfer import build_from_encoder

    return build_from_encoder(encoder_ckpt, n_classes, ctx.cfg.model)


def classifier_job(ctx: GateContext, gate: str, model: torch.nn.Module, X_tr, y_tr, X_stop,
                   y_stop, run_dir: Path, *, pretrained: bool = False, seed: int | None = None,
                   budget_epochs: int | None = None, name: str = ""):
    """How `model` trains with the shared recipe, as a :class:`~moola.train.together.ReplicaJob`
    (trained alone by :func:`train_classifier`, or with other replicas by
    :func:`moola.train.together.fit_together`), and the transfer schedule's description.

    (X_stop, y_stop) is the stopping slice: training windows that early stopping and checkpoint
    selection look at, never scored. An empty slice means a fixed budget: `budget_epochs`
    (default train.max_epochs; moola.train.classify.epoch_budget is the one rule for the
    epochs a fit may run), final weights. `seed`: the replica's seed (moola.protocol.replicas.
    replica_seeds), which seeds its training. Pretrained models get freeze + progressive
    unfreeze.
    """
    from moola.train.together import ReplicaJob

    cfg = ctx.cfg if seed is None else ctx.cfg.replace("run", seed=seed)
    fixed = len(y_stop) == 0
    if fixed:  # nothing to select on: a fixed budget whose final weights are the result
        # (moola.train.classify.epoch_budget raises it to train.min_steps)
        cfg = cfg.replace("train", max_epochs=budget_epochs or cfg.train.max_epochs)
        # the loop logs an evaluation of the final epoch: a few of the fit windows themselves
        pick = np.unique(np.linspace(0, len(y_tr) - 1, min(32, len(y_tr))).astype(int))
        X_stop, y_stop = X_tr[pick], y_tr[pick]
    epoch_hook, param_groups, extra = None, None, {}
    if pretrained:
        from moola.transfer import ProgressiveUnfreezer, discriminative_param_groups

        unfreezer = ProgressiveUnfreezer(model, cfg.finetune.freeze_epochs,
                                         cfg.finetune.unfreeze_every)
        param_groups = discriminative_param_groups(model, cfg.train.lr,
                                                   cfg.finetune.encoder_lr_mult)

        def epoch_hook(epoch, optimizer, _model):
            unfreezer.on_epoch_start(epoch, optimizer)

        extra = {"freeze_epochs": cfg.finetune.freeze_epochs,
                 "unfreeze_every": cfg.finetune.unfreeze_every,
                 "encoder_lr_mult": cfg.finetune.encoder_lr_mult}
    job = ReplicaJob(name or gate, model, X_tr, y_tr, X_stop, y_stop, cfg, Path(run_dir),
                     epoch_hook=epoch_hook, param_groups=param_groups,
                     eval_final_epoch_only=fixed)
    return job, extra


def shared_recipe(ctx: GateContext, gate: str) -> dict[str, Any]:
    """What moola.protocol.replicas.train_replicas needs to train `gate`'s replicas with the
    shared recipe: the job factory (:func:`classifier_job`) and the run's status writer."""
    return {"make_job": functools.partial(classifier_job, ctx, gate),
            "status": status_for(ctx, gate)}


def train_classifier(ctx: GateContext, gate: str, model: torch.nn.Module, X_tr, y_tr, X_stop,
                     y_stop, run_dir: Path, *, pretrained: bool = False, seed: int | None = None,
                     budget_epochs: int | None = None, shards: int = 1):
    """Train `model` alone with the shared recipe (see :func:`classifier_job`); `shards` > 1
    cuts its batches into shards on the cores (moola.train.shards).
    Returns (ClassifierFit, extra) where extra describes the transfer schedule."""
    from moola.train.together import fit_alone

    job, extra = classifier_job(ctx, gate, model, X_tr, y_tr, X_stop, y_stop, run_dir,
                                pretrained=pretrained, seed=seed, budget_epochs=budget_epochs)
    job.shards = shards
    return fit_alone(job, ctx.device, gate, status=status_for(ctx, gate),
                     **ctx.training_hooks()), extra


def folds(ctx: GateContext):
    """The folds every supervised verdict is judged on (cfg.protocol; see moola.protocol)."""
    from moola.protocol import folds_for_dataset

    p = ctx.cfg.protocol
    return folds_for_dataset(ctx.dataset, p.folds, min_train_fraction=p.min_train_fraction,
                             purge=p.purge, inner_fraction=p.inner_fraction,
                             source=p.fold_source)


def seeds(ctx: GateContext) -> list[int]:
    """Training seeds of the replicas: run.seed, run.seed + 1000, ... (protocol.seeds of them)."""
    from moola.protocol.replicas import replica_seeds

    return replica_seeds(ctx.cfg.run.seed, ctx.cfg.protocol.seeds)


def load_classifier(entry: CacheEntry) -> dict[str, Any]:
    """Pooled predictions of a replicated classifier: proba (R, n, K), pred (R, n), y (n,), ..."""
    out = load_npz(entry.path / "pooled.npz")
    out["pred"] = out["proba"].argmax(axis=2)
    out["replicas"] = load_json(entry.path / "replicas.json")
    out.update(load_json(entry.path / "fit.json"))
    out["artifact"] = entry.record()
    out["model_paths"] = sorted((entry.path / "models").glob("*.pt"))
    return out


@dataclass(frozen=True)
class Recipe:
    """How a replicated model is trained: what :mod:`moola.gates.refit` needs to train the same
    recipe once more on every development row (the exported model).

    `key` is the replicas' cache key (it hashes everything the recipe depends on);
    `make_model(seed)` builds the untrained module; `pretrained`: freeze + progressive
    unfreeze; `extend_training(X, y, fold, seed)`: extra training rows (gate 5's pseudo-samples).
    """

    gate: str
    kind: str
    key: str
    make_model: Callable[[int], torch.nn.Module]
    pretrained: bool = False
    extend_training: Callable | None = None


def replicated(ctx: GateContext, gate: str, kind: str, key: str, make_model,
                meta: dict | Callable[[], dict], *, pretrained: bool = False,
                extend_training=None) -> dict[str, Any]:
    """Build (or load) the cached replicas of one recipe and return the pooled predictions
    (and, under "recipe", the :class:`Recipe` that trained them).

    `meta` (or a callable returning it, evaluated only when the artifact is built) goes into
    the artifact's fit.json."""
    def build(tmp: Path, workdir: Path):
        from moola.protocol.replicas import train_replicas

        train_replicas(ctx, gate, folds(ctx), seeds(ctx), make_model, workdir, tmp,
                       **shared_recipe(ctx, gate), pretrained=pretrained,
                       extend_training=extend_training)
        save_json(tmp / "fit.json", meta() if callable(meta) else meta)
        return {"replicas": len(seeds(ctx)) * len(folds(ctx))}

    out = load_classifier(build_entry(ctx, gate, kind, key, build))
    out["recipe"] = Recipe(gate, kind, key, make_model, pretrained, extend_training)
    return out


# ---------------------------------------------------------------------------------------------
# gate work
# ---------------------------------------------------------------------------------------------

CLASSIFIER_SECTIONS = ("data", "model", "train", "protocol")


def baseline(ctx: GateContext) -> dict[str, Any]:
    """Gate 1: EnhancedSimpleLSTM from scratch with the shared recipe, every replica."""
    ds = ctx.dataset
    key = cache_key(ctx, "baseline", CLASSIFIER_SECTIONS)
    return replicated(ctx, "gate_1_smoke_enhanced", "baseline", key,
                       lambda seed: build_enhanced(ctx, len(ds.classes), ds.X.shape[2]),
                       {"model": "EnhancedSimpleLSTM"})


def control(ctx: GateContext) -> dict[str, Any]:
    """Gate 2: sktime MiniRocket + RidgeClassifierCV on the same folds (one replica per fold)."""
    ds = ctx.dataset
    key = cache_key(ctx, "control", ("data", "protocol"))

    def build(tmp: Path, workdir: Path):
        from moola.models import MiniRocketControl

        fs = folds(ctx)
        k = len(ds.classes)
        probas, tprobas, train_acc = [], None, []
        for f in fs:
            tr = np.concatenate([f.fit_idx, f.stop_idx])  # nothing to stop: all training rows
            present = np.unique(ds.y[tr])
            # scored rows, training rows (for train_acc), then the held-out rows of the last fold
            rows = [f.score_idx, tr] + ([ds.test_idx] if len(ds.test_idx) and f is fs[-1]
                                        else [])
            if len(present) == 1:  # a one-class training block can only predict that class
                out = [np.eye(k)[np.full(len(r), present[0])] for r in rows]
            else:
                ctrl = MiniRocketControl(seed=ctx.cfg.run.seed)
                ctrl.fit(ds.X[tr], ds.y[tr])
                out = []
                for r in rows:  # scatter the fold's classes into all K columns
                    p = np.zeros((len(r), k))
                    p[:, np.asarray(ctrl.classes_, dtype=np.int64)] = ctrl.predict_proba(ds.X[r])
                    out.append(p)
            probas.append(out[0])
            train_acc.append(float(np.mean(out[1].argmax(axis=1) == ds.y[tr])))
            if len(out) > 2:
                tprobas = out[2]
        from moola.protocol.folds import pooled_index

        score_idx, fold_of = pooled_index(fs)
        atomic_save_npz(tmp / "pooled.npz", score_idx=score_idx, y=ds.y[score_idx], fold_of=fold_of,
                  proba=np.concatenate(probas)[None], test_idx=ds.test_idx,
                  y_test=ds.y[ds.test_idx],
                  test_proba=(tprobas if tprobas is not None else np.zeros((0, k)))[None],
                  seeds=np.asarray([ctx.cfg.run.seed]))
        save_json(tmp / "fit.json", {"model": "MiniRocket+RidgeClassifierCV",
                                      "train_acc": train_acc})  # per fold

    entry = build_entry(ctx, "gate_2_control_minirocket", "control", key, build)
    out = load_npz(entry.path / "pooled.npz")
    fit = load_json(entry.path / "fit.json")
    out["train_acc"], out["model"] = fit["train_acc"], fit["model"]
    out["pred"] = out["proba"].argmax(axis=2)
    out["artifact"] = entry.record()
    return out


def encoder(ctx: GateContext) -> dict[str, Any]:
    """Gate 3: masked-autoencoder pretraining, reconstruction check and linear probes."""
    ds = ctx.dataset
    key = cache_key(ctx, "encoder", ("data", "model", "pretrain"))
    gate = "gate_3_pretrain_bilstm"

    def build(tmp: Path, workdir: Path):
        from moola.pretrain import pretrain_encoder, reconstruction_report, save_encoder
        from moola.train import seed_everything

        seed_everything(ctx.cfg.run.seed, ctx.cfg.run.deterministic)
        res = pretrain_encoder(ds.X_unlabeled, ctx.cfg, workdir, ctx.device,
                               status=status_for(ctx, gate), **ctx.training_hooks())
        mae = res.mae
        save_encoder(tmp / "encoder.pt", mae.encoder, res.encoder_cfg,
                     normalization=ctx.cfg.data.normalization,
                     extra={"data": ds.fingerprint, "epochs_run": res.fit.epochs_run})
        # scored on the held-out windows that chose nothing (not the epoch, not the weights)
        X_scored = ds.X_unlabeled[res.score_idx]
        recon = reconstruction_report(mae, X_scored, res.score_masks, ctx.device,
                                      per_window=True)
        r = res.fit
        save_json(tmp / "report.json", {
            "reconstruction": recon, "history": r.history,
            "epochs_run": r.epochs_run, "stopped_reason": r.stopped_reason,
            "resumed_from_epoch": r.resumed_from_epoch,
            "duration_s": r.duration_s, "n_unlabeled": int(len(ds.X_unlabeled)),
            "n_heldout": int(len(res.heldout_idx)), "n_stop": int(len(res.stop_idx)),
            "n_scored": int(len(res.score_idx)), "encoder_config": res.encoder_cfg.to_dict(),
        })
        if (workdir / "metrics.csv").exists():
            copy_file(workdir / "metrics.csv", tmp / "metrics.csv")

    entry = build_entry(ctx, gate, "encoder", key, build)
    out = load_json(entry.path / "report.json")
    out["encoder_path"] = entry.path / "encoder.pt"
    out["artifact"] = entry.record()
    out.update(probes(ctx, out))
    return out


def probes(ctx: GateContext, enc: dict[str, Any]) -> dict[str, Any]:
    """Gate 3's linear probes on the protocol's folds: pretrained encoder, raw windows, random
    encoder (their own artifact: a protocol change re-probes without re-pretraining)."""
    ds = ctx.dataset
    key = cache_key(ctx, "probes", ("data", "protocol"), encoder=enc["artifact"]["key"])

    def build(tmp: Path, workdir: Path):
        from moola.models import BiLSTMEncoder
        from moola.pretrain import load_encoder_checkpoint, probe_baselines

        enc_cfg, state, _ = load_encoder_checkpoint(enc["encoder_path"])
        encoder = BiLSTMEncoder(enc_cfg)
        encoder.load_state_dict(state)
        out = probe_baselines(encoder.to(ctx.device), enc_cfg, ds.X, ds.y, folds(ctx),
                              ctx.device, seed=ctx.cfg.run.seed)
        atomic_save_npz(tmp / "probes.npz", **out.pop("arrays"))
        save_json(tmp / "probe.json", out)

    entry = build_entry(ctx, "gate_3_pretrain_bilstm", "probes", key, build)
    return {"probe": load_json(entry.path / "probe.json"),
            "probe_predictions": load_npz(entry.path / "probes.npz")}


def finetuned(ctx: GateContext) -> dict[str, Any]:
    """Gate 4: the gate-1 recipe, starting from the pretrained encoder, every replica."""
    ds = ctx.dataset
    enc = encoder(ctx)
    key = cache_key(ctx, "finetuned", CLASSIFIER_SECTIONS + ("finetune",),
               encoder=enc["artifact"]["key"])
    def make(seed):
        return build_pretrained(ctx, enc["encoder_path"], len(ds.classes))[0]

    return replicated(ctx, "gate_4_finetune_enhanced", "finetuned", key, make, lambda: {
        "model": "EnhancedSimpleLSTM (pretrained encoder)",
        "load_report": build_pretrained(ctx, enc["encoder_path"],
                                        len(ds.classes))[1].to_dict()}, pretrained=True)


def random_init(ctx: GateContext) -> dict[str, Any]:
    """Gate 4's control: the gate-4 recipe (the encoder's architecture, freeze + progressive
    unfreeze, the same budget) from a randomly initialised encoder, every replica. Finetuned
    minus this is what pretraining alone bought; finetuned minus gate 1's baseline mixes it
    with the transfer schedule."""
    from moola.models import EncoderConfig, EnhancedSimpleLSTM

    ds = ctx.dataset
    enc = encoder(ctx)
    enc_cfg = EncoderConfig.from_dict(enc["encoder_config"])
    key = cache_key(ctx, "random_init", CLASSIFIER_SECTIONS + ("finetune",),
               encoder_config=enc_cfg.to_dict())
    m = ctx.cfg.model

    def make(seed):  # initial weights from the replica's seed (seeded before the call)
        return EnhancedSimpleLSTM(enc_cfg, len(ds.classes), attention_heads=m.attention_heads,
                                  head_hidden=m.head_hidden, dropout=m.dropout)

    return replicated(ctx, "gate_4_finetune_enhanced", "random_init", key, make,
                       {"model": "EnhancedSimpleLSTM (random encoder, gate 4's recipe)"},
                       pretrained=True)


def augmented(ctx: GateContext) -> dict[str, Any]:
    """Gate 5: the gate-4 recipe on real + accepted pseudo-samples (each fold's fit rows only)."""
    ds = ctx.dataset
    enc = encoder(ctx)
    key = cache_key(ctx, "augmented", CLASSIFIER_SECTIONS + ("finetune", "augment"),
               encoder=enc["artifact"]["key"])

    def extend(X_fit, y_fit, fold, seed):
        from moola.pseudo import assert_no_leakage, generate_pseudo_samples

        rng = np.random.default_rng(seed * 1000 + fold.index)
        pseudo = generate_pseudo_samples(X_fit, y_fit, ctx.cfg.augment, rng, ohlc=_is_ohlc(ds))
        held_out = [ds.X[fold.score_idx], ds.X[fold.stop_idx]] + (
            [ds.X[ds.test_idx]] if len(ds.test_idx) else [])
        assert_no_leakage(pseudo.X, np.concatenate(held_out))
        X = np.concatenate([X_fit, pseudo.X]).astype(np.float32)
        y = np.concatenate([y_fit, pseudo.y]).astype(np.int64)
        return X, y, {"pseudo": {
            "n_generated": pseudo.n_generated, "n_accepted": pseudo.n_accepted,
            "rejected": pseudo.rejected, "ks_pvalues": pseudo.ks_pvalues,
            "quality_min_accepted": float(np.min(pseudo.quality)) if len(pseudo.quality)
            else None, "n_train_real": int(len(X_fit))}}

    def make(seed):
        return build_pretrained(ctx, enc["encoder_path"], len(ds.classes))[0]

    return replicated(ctx, "gate_5_augment", "augmented", key, make, {
        "model": "EnhancedSimpleLSTM (pretrained encoder + pseudo-samples)"}, pretrained=True,
        extend_training=extend)


def simple(ctx: GateContext) -> dict[str, Any]:
    """Gate 6: unidirectional SimpleLSTM from scratch, same recipe, on the selected device."""
    ds = ctx.dataset
    key = cache_key(ctx, "simple", CLASSIFIER_SECTIONS)
    return replicated(ctx, "gate_6_baseline_simplelstm", "simple", key,
                       lambda seed: build_simple(ctx, len(ds.classes),
                                                 ds.X.shape[2]).to(ctx.device),
                       {"model": "SimpleLSTM", "device": ctx.device.type})


def _is_ohlc(ds) -> bool:
    names = [n.lower() for n in getattr(ds, "feature_names", [])]
    return names == ["open", "high", "low", "close"]
