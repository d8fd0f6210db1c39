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
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from moola.cache import CacheEntry, code_version, make_key
from moola.io_utils import atomic_save_npz, copy_file, save_json
from moola.gates.context import GateContext

# moola modules whose source is part of every trained artifact's key
TRAIN_CODE = ["models", "train", "data", "transfer", "pretrain", "augment", "pseudo", "ensemble",
              "protocol", "gates.work", "gates.ensemble_work"]

# torch's intra-op thread count when the gates' work is first imported (run.torch_threads, if
# set, is applied before). Every build runs with it: numba, inside sktime's MiniRocket (gate 2),
# resets the OpenMP thread count that torch shares, and another count sums floats in another
# order, so gate 4 trained after gate 2 in one process differed from gate 4 trained alone.
_TORCH_THREADS = torch.get_num_threads()
# artifacts trained with the supervised recipe: they run with train.torch_threads
SUPERVISED_KINDS = frozenset({"baseline", "finetuned", "random_init", "augmented", "simple",
                              "ensemble", "refit"})


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------


def _key(ctx: GateContext, kind: str, sections: tuple[str, ...], **extra: Any) -> str:
    cfg = ctx.cfg
    run = cfg.run
    config = {s: dict(cfg.to_dict()[s]) for s in sections}
    if "train" in config:  # how many threads share the replicas changes no weight (tested);
        config["train"].pop("replica_threads", None)
        # the refit's shards change the refit only: moola.gates.refit puts them in its key
        config["train"].pop("refit_shards", None)
    return make_key(
        {
            "kind": kind,
            "config": config,
            # the seed and determinism change results; the rest of `run` does not
            "seed": run.seed,
            "deterministic": run.deterministic,
            "device": ctx.device.type,
            "data": ctx.dataset.fingerprint,
            "code": code_version(TRAIN_CODE),
            **extra,
        }
    )


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    atomic_save_npz(path, **arrays)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays of a cached .npz; one holding pickled objects (moola never writes any) is refused."""
    with np.load(path, allow_pickle=False) as z:  # never unpickle cached data
        try:
            return {k: z[k] for k in z.files}
        except ValueError as exc:
            if "allow_pickle" not in str(exc):
                raise
            raise ValueError(
                f"{path}: refused, it holds pickled Python objects (object arrays), which moola "
                f"never writes and never loads; the cache entry was altered - delete "
                f"{path.parent} or rerun with --rebuild") from None


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _build(ctx: GateContext, gate: str, kind: str, key: str,
           build: Callable[[Path, Path], dict | None]) -> CacheEntry:
    def seeded_build(tmp: Path, workdir: Path):
        # seed before any model is constructed: weights must not depend on what ran earlier
        # in this process (other gates, cache hits or misses, xdist scheduling)
        from moola.train import seed_everything

        seed_everything(ctx.cfg.run.seed, ctx.cfg.run.deterministic)
        threads = ctx.cfg.train.torch_threads if kind in SUPERVISED_KINDS else 0
        torch.set_num_threads(threads or ctx.cfg.run.torch_threads or _TORCH_THREADS)
        return build(tmp, workdir)

    if not ctx.build_allowed:  # read what exists, never train (the session-end decision)
        found = ctx.cache.lookup(kind, key)
        if found is None:
            raise LookupError(f"the {kind} artifact for {gate} is not in the cache (its gate "
                              f"did not finish building it)")
        return found
    entry = ctx.cache.get_or_build(kind, key, seeded_build, fresh_for_run=ctx.fresh(gate))
    if entry.repaired:
        ctx.repairs.append(entry.repaired)  # the runner puts it into the verdict being judged
    _publish_run_files(ctx, gate, entry.path)
    return entry


def _publish_run_files(ctx: GateContext, gate: str, artifact: Path) -> None:
    """Copy the artifact's metrics.csv into reports/runs/<run_id>/<gate>/ for people to read."""
    src = artifact / "metrics.csv"
    if src.exists():
        copy_file(src, ctx.gate_dir(gate) / "metrics.csv")


def _status_for(ctx: GateContext, gate: str):
    st = ctx.status
    st.gate = gate
    return st


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
            "status": _status_for(ctx, gate)}


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
    return fit_alone(job, ctx.device, gate, status=_status_for(ctx, gate),
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


def _load_classifier(entry: CacheEntry) -> dict[str, Any]:
    """Pooled predictions of a replicated classifier: proba (R, n, K), pred (R, n), y (n,), ..."""
    out = _load_npz(entry.path / "pooled.npz")
    out["pred"] = out["proba"].argmax(axis=2)
    out["replicas"] = _load_json(entry.path / "replicas.json")
    out.update(_load_json(entry.path / "fit.json"))
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


def _replicated(ctx: GateContext, gate: str, kind: str, key: str, make_model,
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

    out = _load_classifier(_build(ctx, gate, kind, key, build))
    out["recipe"] = Recipe(gate, kind, key, make_model, pretrained, extend_training)
    return out


# ---------------------------------------------------------------------------------------------
# gate work
# ---------------------------------------------------------------------------------------------

CLASSIFIER_SECTIONS = ("data", "model", "train", "protocol")


def baseline(ctx: GateContext) -> dict[str, Any]:
    """Gate 1: EnhancedSimpleLSTM from scratch with the shared recipe, every replica."""
    ds = ctx.dataset
    key = _key(ctx, "baseline", CLASSIFIER_SECTIONS)
    return _replicated(ctx, "gate_1_smoke_enhanced", "baseline", key,
                       lambda seed: build_enhanced(ctx, len(ds.classes), ds.X.shape[2]),
                       {"model": "EnhancedSimpleLSTM"})


def control(ctx: GateContext) -> dict[str, Any]:
    """Gate 2: sktime MiniRocket + RidgeClassifierCV on the same folds (one replica per fold)."""
    ds = ctx.dataset
    key = _key(ctx, "control", ("data", "protocol"))

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
        _save_npz(tmp / "pooled.npz", score_idx=score_idx, y=ds.y[score_idx], fold_of=fold_of,
                  proba=np.concatenate(probas)[None], test_idx=ds.test_idx,
                  y_test=ds.y[ds.test_idx],
                  test_proba=(tprobas if tprobas is not None else np.zeros((0, k)))[None],
                  seeds=np.asarray([ctx.cfg.run.seed]))
        save_json(tmp / "fit.json", {"model": "MiniRocket+RidgeClassifierCV",
                                      "train_acc": train_acc})  # per fold

    entry = _build(ctx, "gate_2_control_minirocket", "control", key, build)
    out = _load_npz(entry.path / "pooled.npz")
    fit = _load_json(entry.path / "fit.json")
    out["train_acc"], out["model"] = fit["train_acc"], fit["model"]
    out["pred"] = out["proba"].argmax(axis=2)
    out["artifact"] = entry.record()
    return out


def encoder(ctx: GateContext) -> dict[str, Any]:
    """Gate 3: masked-autoencoder pretraining, reconstruction check and linear probes."""
    ds = ctx.dataset
    key = _key(ctx, "encoder", ("data", "model", "pretrain"))
    gate = "gate_3_pretrain_bilstm"

    def build(tmp: Path, workdir: Path):
        from moola.pretrain import pretrain_encoder, reconstruction_report, save_encoder
        from moola.train import seed_everything

        seed_everything(ctx.cfg.run.seed, ctx.cfg.run.deterministic)
        res = pretrain_encoder(ds.X_unlabeled, ctx.cfg, workdir, ctx.device,
                               status=_status_for(ctx, gate), **ctx.training_hooks())
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

    entry = _build(ctx, gate, "encoder", key, build)
    out = _load_json(entry.path / "report.json")
    out["encoder_path"] = entry.path / "encoder.pt"
    out["artifact"] = entry.record()
    out.update(probes(ctx, out))
    return out


def probes(ctx: GateContext, enc: dict[str, Any]) -> dict[str, Any]:
    """Gate 3's linear probes on the protocol's folds: pretrained encoder, raw windows, random
    encoder (their own artifact: a protocol change re-probes without re-pretraining)."""
    ds = ctx.dataset
    key = _key(ctx, "probes", ("data", "protocol"), encoder=enc["artifact"]["key"])

    def build(tmp: Path, workdir: Path):
        from moola.models import BiLSTMEncoder
        from moola.pretrain import load_encoder_checkpoint, probe_baselines

        enc_cfg, state, _ = load_encoder_checkpoint(enc["encoder_path"])
        encoder = BiLSTMEncoder(enc_cfg)
        encoder.load_state_dict(state)
        out = probe_baselines(encoder.to(ctx.device), enc_cfg, ds.X, ds.y, folds(ctx),
                              ctx.device, seed=ctx.cfg.run.seed)
        _save_npz(tmp / "probes.npz", **out.pop("arrays"))
        save_json(tmp / "probe.json", out)

    entry = _build(ctx, "gate_3_pretrain_bilstm", "probes", key, build)
    return {"probe": _load_json(entry.path / "probe.json"),
            "probe_predictions": _load_npz(entry.path / "probes.npz")}


def finetuned(ctx: GateContext) -> dict[str, Any]:
    """Gate 4: the gate-1 recipe, starting from the pretrained encoder, every replica."""
    ds = ctx.dataset
    enc = encoder(ctx)
    key = _key(ctx, "finetuned", CLASSIFIER_SECTIONS + ("finetune",),
               encoder=enc["artifact"]["key"])
    def make(seed):
        return build_pretrained(ctx, enc["encoder_path"], len(ds.classes))[0]

    return _replicated(ctx, "gate_4_finetune_enhanced", "finetuned", key, make, lambda: {
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
    key = _key(ctx, "random_init", CLASSIFIER_SECTIONS + ("finetune",),
               encoder_config=enc_cfg.to_dict())
    m = ctx.cfg.model

    def make(seed):  # initial weights from the replica's seed (seeded before the call)
        return EnhancedSimpleLSTM(enc_cfg, len(ds.classes), attention_heads=m.attention_heads,
                                  head_hidden=m.head_hidden, dropout=m.dropout)

    return _replicated(ctx, "gate_4_finetune_enhanced", "random_init", key, make,
                       {"model": "EnhancedSimpleLSTM (random encoder, gate 4's recipe)"},
                       pretrained=True)


def augmented(ctx: GateContext) -> dict[str, Any]:
    """Gate 5: the gate-4 recipe on real + accepted pseudo-samples (each fold's fit rows only)."""
    ds = ctx.dataset
    enc = encoder(ctx)
    key = _key(ctx, "augmented", CLASSIFIER_SECTIONS + ("finetune", "augment"),
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

    return _replicated(ctx, "gate_5_augment", "augmented", key, make, {
        "model": "EnhancedSimpleLSTM (pretrained encoder + pseudo-samples)"}, pretrained=True,
        extend_training=extend)


def simple(ctx: GateContext) -> dict[str, Any]:
    """Gate 6: unidirectional SimpleLSTM from scratch, same recipe, on the selected device."""
    ds = ctx.dataset
    key = _key(ctx, "simple", CLASSIFIER_SECTIONS)
    return _replicated(ctx, "gate_6_baseline_simplelstm", "simple", key,
                       lambda seed: build_simple(ctx, len(ds.classes),
                                                 ds.X.shape[2]).to(ctx.device),
                       {"model": "SimpleLSTM", "device": ctx.device.type})


def _is_ohlc(ds) -> bool:
    names = [n.lower() for n in getattr(ds, "feature_names", [])]
    return names == ["open", "high", "low", "close"]
