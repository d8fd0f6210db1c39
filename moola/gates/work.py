"""The expensive work behind the gates, each piece a cached artifact.

Every function here returns a plain dict of results loaded from a cache entry; it builds the
entry first when it is missing (or when its gate is selected in this run, see
:meth:`GateContext.fresh`). Cache keys hash the configuration sections the work depends on,
the data fingerprint, the keys of upstream artifacts and the producing code's version.

Compared models share one recipe (``cfg.train``): gate 1 (baseline), 4 (pretrained encoder),
5 (plus pseudo-samples) and 6 (SimpleLSTM) differ only in the factor under test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from moola.cache import CacheEntry, code_version, make_key
from moola.gates.context import GateContext

# moola modules whose source is part of every trained artifact's key
TRAIN_CODE = ["models", "train", "data", "transfer", "pretrain", "augment", "pseudo", "ensemble"]

# torch's intra-op thread count when the gates' work is first imported (run.torch_threads, if
# set, is applied before). Every build runs with it: numba, inside sktime's MiniRocket (gate 2),
# resets the OpenMP thread count that torch shares, and another count sums floats in another
# order, so gate 4 trained after gate 2 in one process differed from gate 4 trained alone.
_TORCH_THREADS = torch.get_num_threads()
# artifacts trained with the supervised recipe: they run with train.torch_threads
SUPERVISED_KINDS = frozenset({"baseline", "finetuned", "augmented", "simple", "ensemble"})


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------


def _key(ctx: GateContext, kind: str, sections: tuple[str, ...], **extra: Any) -> str:
    cfg = ctx.cfg
    run = cfg.run
    return make_key(
        {
            "kind": kind,
            "config": {s: cfg.to_dict()[s] for s in sections},
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
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})


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


def _save_json(path: Path, obj: Any) -> None:
    from moola.gates.verdict import jsonable

    path.write_text(json.dumps(jsonable(obj), indent=1, sort_keys=True))


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _split(ctx: GateContext):
    ds = ctx.dataset
    return (ds.X[ds.train_idx], ds.y[ds.train_idx], ds.X[ds.val_idx], ds.y[ds.val_idx])


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

    entry = ctx.cache.get_or_build(kind, key, seeded_build, fresh_for_run=ctx.fresh(gate))
    _publish_run_files(ctx, gate, entry.path)
    return entry


def _publish_run_files(ctx: GateContext, gate: str, artifact: Path) -> None:
    """Copy the artifact's metrics.csv into reports/runs/<run_id>/<gate>/ for people to read."""
    src = artifact / "metrics.csv"
    if src.exists():
        shutil.copyfile(src, ctx.gate_dir(gate) / "metrics.csv")


def _status_for(ctx: GateContext, gate: str):
    st = ctx.status
    st.gate = gate
    return st


# ---------------------------------------------------------------------------------------------
# supervised training shared by gates 1, 4, 5, 6 and the ensemble's out-of-fold fits
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


def train_classifier(ctx: GateContext, gate: str, model: torch.nn.Module, X_tr, y_tr, X_va, y_va,
                     run_dir: Path, *, pretrained: bool = False, max_epochs: int | None = None):
    """Train `model` with the shared recipe; pretrained models get freeze + progressive unfreeze.

    Returns (ClassifierFit, extra) where extra describes the transfer schedule.
    """
    from moola.train import fit_classifier, seed_everything

    cfg = ctx.cfg
    if max_epochs is not None:  # out-of-fold refits: a fixed budget, final weights, no selection
        cfg = cfg.replace("train", max_epochs=max_epochs, min_epochs=max_epochs,
                          early_stop_patience=max_epochs + 1, checkpoint_save_top_k=0)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
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
    fit = fit_classifier(model, X_tr, y_tr, X_va, y_va, cfg, run_dir, ctx.device, gate,
                         status=_status_for(ctx, gate), epoch_hook=epoch_hook,
                         param_groups=param_groups, eval_final_epoch_only=max_epochs is not None,
                         **ctx.training_hooks())
    return fit, extra


def _save_classifier(tmp: Path, workdir: Path, fit, y_val: np.ndarray, meta: dict) -> dict:
    torch.save(fit.model.state_dict(), tmp / "model.pt")
    _save_npz(tmp / "preds.npz", val_proba=fit.val_proba, val_pred=fit.val_pred, y_val=y_val)
    r = fit.fit
    _save_json(tmp / "fit.json", {
        "history": r.history, "best_epoch": r.best_epoch, "epochs_run": r.epochs_run,
        "stopped_reason": r.stopped_reason, "best_score": r.best_score, "steps": r.steps,
        "duration_s": r.duration_s, "timed_out_evals": r.timed_out_evals,
        # first epoch this build ran itself when it resumed a killed build's checkpoint, else None
        "resumed_from_epoch": r.resumed_from_epoch,
        "train_loss_first": fit.train_loss_first, "train_loss_last": fit.train_loss_last,
        **meta,
    })
    if (workdir / "metrics.csv").exists():
        shutil.copyfile(workdir / "metrics.csv", tmp / "metrics.csv")
    return {"best_epoch": r.best_epoch}


def _load_classifier(entry: CacheEntry) -> dict[str, Any]:
    out = _load_npz(entry.path / "preds.npz")
    out.update(_load_json(entry.path / "fit.json"))
    out["artifact"] = {"path": str(entry.path), "key": entry.key, "cache_hit": entry.hit,
                       "built_by_run": entry.manifest.get("run_id")}
    out["model_path"] = entry.path / "model.pt"
    return out


# ---------------------------------------------------------------------------------------------
# gate work
# ---------------------------------------------------------------------------------------------

CLASSIFIER_SECTIONS = ("data", "model", "train")


def baseline(ctx: GateContext) -> dict[str, Any]:
    """Gate 1: EnhancedSimpleLSTM from scratch with the shared recipe."""
    ds = ctx.dataset
    key = _key(ctx, "baseline", CLASSIFIER_SECTIONS)

    def build(tmp: Path, workdir: Path):
        X_tr, y_tr, X_va, y_va = _split(ctx)
        model = build_enhanced(ctx, len(ds.classes), ds.X.shape[2])
        fit, _ = train_classifier(ctx, "gate_1_smoke_enhanced", model, X_tr, y_tr, X_va, y_va,
                                  workdir)
        return _save_classifier(tmp, workdir, fit, y_va, {"model": "EnhancedSimpleLSTM"})

    return _load_classifier(_build(ctx, "gate_1_smoke_enhanced", "baseline", key, build))


def control(ctx: GateContext) -> dict[str, Any]:
    """Gate 2: sktime MiniRocket + RidgeClassifierCV on the same split."""
    key = _key(ctx, "control", ("data",))

    def build(tmp: Path, workdir: Path):
        from moola.models import MiniRocketControl

        X_tr, y_tr, X_va, y_va = _split(ctx)
        ctrl = MiniRocketControl(seed=ctx.cfg.run.seed)
        ctrl.fit(X_tr, y_tr)
        pred = np.asarray(ctrl.predict(X_va))
        _save_npz(tmp / "preds.npz", val_pred=pred, y_val=y_va,
                  val_proba=np.asarray(ctrl.predict_proba(X_va)))
        _save_json(tmp / "fit.json", {"model": "MiniRocket+RidgeClassifierCV"})

    entry = _build(ctx, "gate_2_control_minirocket", "control", key, build)
    out = _load_npz(entry.path / "preds.npz")
    out["artifact"] = {"path": str(entry.path), "key": entry.key, "cache_hit": entry.hit}
    return out


def encoder(ctx: GateContext) -> dict[str, Any]:
    """Gate 3: masked-autoencoder pretraining, reconstruction check and linear probe."""
    ds = ctx.dataset
    key = _key(ctx, "encoder", ("data", "model", "pretrain"))
    gate = "gate_3_pretrain_bilstm"

    def build(tmp: Path, workdir: Path):
        from moola.pretrain import (linear_probe, pretrain_encoder, reconstruction_report,
                                    save_encoder)
        from moola.train import seed_everything

        seed_everything(ctx.cfg.run.seed, ctx.cfg.run.deterministic)
        res = pretrain_encoder(ds.X_unlabeled, ctx.cfg, workdir, ctx.device,
                               status=_status_for(ctx, gate), **ctx.training_hooks())
        mae = res.mae
        save_encoder(tmp / "encoder.pt", mae.encoder, res.encoder_cfg,
                     normalization=ctx.cfg.data.normalization,
                     extra={"data": ds.fingerprint, "epochs_run": res.fit.epochs_run})
        X_held = ds.X_unlabeled[res.heldout_idx]
        recon = reconstruction_report(mae, X_held, res.val_masks, ctx.device)
        probe = linear_probe(mae.encoder, ds.X[ds.train_idx], ds.y[ds.train_idx], ctx.device,
                             seed=ctx.cfg.run.seed)
        r = res.fit
        _save_json(tmp / "report.json", {
            "reconstruction": recon, "probe": probe, "history": r.history,
            "epochs_run": r.epochs_run, "stopped_reason": r.stopped_reason,
            "resumed_from_epoch": r.resumed_from_epoch,
            "duration_s": r.duration_s, "n_unlabeled": int(len(ds.X_unlabeled)),
            "n_heldout": int(len(res.heldout_idx)), "encoder_config": res.encoder_cfg.to_dict(),
        })
        if (workdir / "metrics.csv").exists():
            shutil.copyfile(workdir / "metrics.csv", tmp / "metrics.csv")

    entry = _build(ctx, gate, "encoder", key, build)
    out = _load_json(entry.path / "report.json")
    out["encoder_path"] = entry.path / "encoder.pt"
    out["artifact"] = {"path": str(entry.path), "key": entry.key, "cache_hit": entry.hit,
                       "built_by_run": entry.manifest.get("run_id")}
    return out


def finetuned(ctx: GateContext) -> dict[str, Any]:
    """Gate 4: the gate-1 recipe, starting from the pretrained encoder."""
    ds = ctx.dataset
    enc = encoder(ctx)
    key = _key(ctx, "finetuned", CLASSIFIER_SECTIONS + ("finetune",),
               encoder=enc["artifact"]["key"])
    gate = "gate_4_finetune_enhanced"

    def build(tmp: Path, workdir: Path):
        X_tr, y_tr, X_va, y_va = _split(ctx)
        model, report = build_pretrained(ctx, enc["encoder_path"], len(ds.classes))
        fit, extra = train_classifier(ctx, gate, model, X_tr, y_tr, X_va, y_va, workdir,
                                      pretrained=True)
        return _save_classifier(tmp, workdir, fit, y_va, {
            "model": "EnhancedSimpleLSTM (pretrained encoder)", "load_report": report.to_dict(),
            "transfer": extra})

    return _load_classifier(_build(ctx, gate, "finetuned", key, build))


def augmented(ctx: GateContext) -> dict[str, Any]:
    """Gate 5: the gate-4 recipe trained on real + accepted pseudo-samples (train split only)."""
    ds = ctx.dataset
    enc = encoder(ctx)
    key = _key(ctx, "augmented", CLASSIFIER_SECTIONS + ("finetune", "augment"),
               encoder=enc["artifact"]["key"])
    gate = "gate_5_augment"

    def build(tmp: Path, workdir: Path):
        from moola.pseudo import assert_no_leakage, generate_pseudo_samples

        X_tr, y_tr, X_va, y_va = _split(ctx)
        rng = np.random.default_rng(ctx.cfg.run.seed)
        pseudo = generate_pseudo_samples(X_tr, y_tr, ctx.cfg.augment, rng,
                                         ohlc=_is_ohlc(ds))
        held_out = [X_va] + ([ds.X[ds.test_idx]] if len(ds.test_idx) else [])
        assert_no_leakage(pseudo.X, np.concatenate(held_out))
        X_aug = np.concatenate([X_tr, pseudo.X]).astype(np.float32)
        y_aug = np.concatenate([y_tr, pseudo.y]).astype(np.int64)
        model, report = build_pretrained(ctx, enc["encoder_path"], len(ds.classes))
        fit, extra = train_classifier(ctx, gate, model, X_aug, y_aug, X_va, y_va, workdir,
                                      pretrained=True)
        _save_npz(tmp / "pseudo.npz", X=pseudo.X, y=pseudo.y, quality=pseudo.quality)
        return _save_classifier(tmp, workdir, fit, y_va, {
            "model": "EnhancedSimpleLSTM (pretrained encoder + pseudo-samples)",
            "pseudo": {"n_generated": pseudo.n_generated, "n_accepted": pseudo.n_accepted,
                       "rejected": pseudo.rejected, "ks_pvalues": pseudo.ks_pvalues,
                       "quality_min_accepted": float(np.min(pseudo.quality))
                       if len(pseudo.quality) else None,
                       "n_train_real": int(len(X_tr)), "n_val_real": int(len(X_va))},
            "load_report": report.to_dict(), "transfer": extra})

    return _load_classifier(_build(ctx, gate, "augmented", key, build))


def simple(ctx: GateContext) -> dict[str, Any]:
    """Gate 6: unidirectional SimpleLSTM from scratch, same recipe, on the selected device."""
    ds = ctx.dataset
    key = _key(ctx, "simple", CLASSIFIER_SECTIONS)
    gate = "gate_6_baseline_simplelstm"

    def build(tmp: Path, workdir: Path):
        X_tr, y_tr, X_va, y_va = _split(ctx)
        model = build_simple(ctx, len(ds.classes), ds.X.shape[2]).to(ctx.device)
        fit, _ = train_classifier(ctx, gate, model, X_tr, y_tr, X_va, y_va, workdir)
        devices = sorted({p.device.type for p in fit.model.parameters()})
        return _save_classifier(tmp, workdir, fit, y_va, {
            "model": "SimpleLSTM", "param_devices": devices, "device": ctx.device.type})

    return _load_classifier(_build(ctx, gate, "simple", key, build))


def _is_ohlc(ds) -> bool:
    names = [n.lower() for n in getattr(ds, "feature_names", [])]
    return names == ["open", "high", "low", "close"]
