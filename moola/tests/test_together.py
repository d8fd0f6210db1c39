"""Replicas trained together (moola.train.together) take the steps they take alone.

* the first optimizer steps of each replica, trained with others of other sizes (padding), equal
  those of the same replica trained alone by ``fit_classifier`` (float tolerance), for both
  architectures, dropout on, and for a pretrained model's freeze + discriminative learning rates;
* the number of threads (how replicas are grouped) does not change a single weight;
* a replica that has stopped takes no more steps (its trunk is not run again), and each
  replica's metrics.csv, last.pt and history stay its own;
* a run stopped after some epochs resumes every replica from its last.pt and ends where an
  uninterrupted run ends;
* models without a batched split are refused (the gates then train them one at a time).
The same verdict either way is shown on real sessions in test_determinism.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from moola.config import Config
from moola.models import EncoderConfig, EnhancedSimpleLSTM, SimpleLSTM
from moola.models.batched import split_for
from moola.train import fit_classifier, seed_everything
from moola.train.together import ReplicaJob, can_train_together, fit_together, replica_threads
from moola.transfer import ProgressiveUnfreezer, discriminative_param_groups

CPU = torch.device("cpu")
SEEDS = (3, 1003, 2003)
SIZES = (23, 30, 19)  # fit rows per replica: with batch 16, short last batches of 7, 14, 3


def _cfg(**train):
    base = {"max_epochs": 1, "min_epochs": 1, "min_steps": 0, "batch_size": 16}
    return Config().replace("train", **{**base, **train})


def _data(n: int, seed: int, T: int = 12):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n + 6, T, 4)).astype(np.float32)
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    y[:2] = [0, 1]
    return X[:n], y[:n], X[n:], y[n:]


def _model(kind: str, seed: int) -> nn.Module:
    seed_everything(seed)
    if kind == "simple":
        return SimpleLSTM(4, hidden=8, n_classes=2, dropout=0.3)
    if kind == "two-layer":  # nn.LSTM draws dropout masks between its layers, inside the kernel
        return EnhancedSimpleLSTM(EncoderConfig(4, 8, 2, dropout=0.3), 2, attention_heads=2,
                                  head_hidden=6, dropout=0.3)
    return EnhancedSimpleLSTM(EncoderConfig(4, 8, 1), 2, attention_heads=2, head_hidden=6,
                              dropout=0.3)


def _pretrained_schedule(model: nn.Module):
    """Gate 4's transfer: encoder frozen for the first epoch, lower encoder learning rate."""
    unfreezer = ProgressiveUnfreezer(model, freeze_epochs=1, unfreeze_every=0)
    groups = discriminative_param_groups(model, 1e-3, 0.5)
    return (lambda epoch, opt, _m: unfreezer.on_epoch_start(epoch, opt)), groups


def _alone(kind, seeds, sizes, cfg, tmp, pretrained=False):
    fits = []
    for i, (seed, n) in enumerate(zip(seeds, sizes)):
        model = _model(kind, seed)
        hook, groups = _pretrained_schedule(model) if pretrained else (None, None)
        fits.append(fit_classifier(model, *_data(n, i), cfg.replace("run", seed=seed),
                                   tmp / f"alone{i}", CPU, "g", epoch_hook=hook,
                                   param_groups=groups))
    return fits


def _jobs(kind, seeds, sizes, cfg, tmp, pretrained=False, tag="together"):
    jobs = []
    for i, (seed, n) in enumerate(zip(seeds, sizes)):
        model = _model(kind, seed)
        hook, groups = _pretrained_schedule(model) if pretrained else (None, None)
        jobs.append(ReplicaJob(f"r{i}", model, *_data(n, i), cfg.replace("run", seed=seed),
                               tmp / f"{tag}{i}", epoch_hook=hook, param_groups=groups))
    return jobs


def _max_diff(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


@pytest.mark.parametrize("kind,pretrained,epochs", [
    ("enhanced", False, 1), ("simple", False, 1), ("enhanced", True, 2), ("two-layer", False, 1),
    ("two-layer", True, 3)])
def test_first_steps_equal_those_taken_alone(tmp_path, kind, pretrained, epochs):
    cfg = _cfg(max_epochs=epochs, min_epochs=epochs)
    alone = _alone(kind, SEEDS, SIZES, cfg, tmp_path, pretrained)
    together = fit_together(_jobs(kind, SEEDS, SIZES, cfg, tmp_path, pretrained), CPU, "g",
                            threads=2)
    for a, t in zip(alone, together):
        # Adam's first steps are about +-lr (1e-3) per weight whatever the gradient's size:
        # another dropout mask or a sign flip shows as ~2e-3, float rounding (scaled up by
        # Adam's normalisation of near-zero gradients) as ~1e-5
        assert _max_diff(a.model, t.model) < 1e-4
        assert t.fit.steps == a.fit.steps == epochs * 2  # 2 batches of 16 per epoch
        assert t.train_loss_first == pytest.approx(a.train_loss_first, abs=1e-5)
        np.testing.assert_allclose(t.val_proba, a.val_proba, atol=1e-5)


def test_threads_do_not_change_a_weight(tmp_path):
    cfg = _cfg(max_epochs=3, min_epochs=3)
    one = fit_together(_jobs("enhanced", SEEDS, SIZES, cfg, tmp_path, tag="one"), CPU, "g",
                       threads=1)
    two = fit_together(_jobs("enhanced", SEEDS, SIZES, cfg, tmp_path, tag="two"), CPU, "g",
                       threads=2)
    for a, b in zip(one, two):
        assert _max_diff(a.model, b.model) == 0.0
        assert [h["val_loss"] for h in a.fit.history] == [h["val_loss"] for h in b.fit.history]


def test_a_stopped_replica_takes_no_more_steps_and_keeps_its_own_files(tmp_path, monkeypatch):
    # patience 1 on a tiny stopping slice: replicas stop at different epochs
    cfg = _cfg(max_epochs=30, min_epochs=2, early_stop_patience=1)
    jobs = _jobs("enhanced", SEEDS, SIZES, cfg, tmp_path)
    split = split_for([j.model for j in jobs])
    calls = {id(j.model): 0 for j in jobs}
    trunk = type(split).trunk

    def counting(self, model, x):
        calls[id(model)] += 1
        return trunk(self, model, x)

    monkeypatch.setattr(type(split), "trunk", counting)
    fits = fit_together(jobs, CPU, "g", threads=2)
    epochs = [f.fit.epochs_run for f in fits]
    assert len(set(epochs)) > 1 and min(epochs) < 30, epochs  # they stopped apart
    for job, fit in zip(jobs, fits):
        steps_per_epoch = -(-len(job.y_fit) // 16)
        assert fit.fit.steps == fit.fit.epochs_run * steps_per_epoch
        assert calls[id(job.model)] == fit.fit.steps  # not one trunk more after it stopped
        csv = pd.read_csv(job.run_dir / "metrics.csv")
        epoch_rows = csv[csv["train_loss_epoch"].notna()]
        assert list(epoch_rows["epoch"]) == list(range(fit.fit.epochs_run))
        np.testing.assert_allclose(epoch_rows["val_loss"],
                                   [h["val_loss"] for h in fit.fit.history], rtol=1e-6)
        last = torch.load(job.run_dir / "checkpoints" / "last.pt", weights_only=True)
        assert last["epoch"] == fit.fit.epochs_run - 1 and last["stopped_reason"]
        # the checkpoint's optimizer is this replica's own AdamW (resumable either way)
        assert len(last["optimizer"]["param_groups"]) == 1
        assert set(last["model"]) == set(job.model.state_dict())


def test_an_interrupted_run_resumes_every_replica_where_it_stopped(tmp_path):
    full = fit_together(_jobs("enhanced", SEEDS, SIZES, _cfg(max_epochs=4), tmp_path,
                              tag="full"), CPU, "g", threads=2)
    # "killed" after 2 epochs: the same directories, then the 4-epoch budget again
    fit_together(_jobs("enhanced", SEEDS, SIZES, _cfg(max_epochs=2), tmp_path, tag="cut"),
                 CPU, "g", threads=2)
    resumed = fit_together(_jobs("enhanced", SEEDS, SIZES, _cfg(max_epochs=4), tmp_path,
                                 tag="cut"), CPU, "g", threads=2)
    for a, b in zip(full, resumed):
        assert b.fit.resumed_from_epoch == 2 and b.fit.epochs_run == 4
        assert _max_diff(a.model, b.model) < 1e-6


def test_models_without_a_batched_split_are_refused(tmp_path):
    class Custom(SimpleLSTM):  # a subclass may change forward: not trained together
        pass

    assert can_train_together([_model("simple", 1), _model("simple", 2)])
    assert not can_train_together([_model("simple", 1), _model("enhanced", 2)])
    seed_everything(1)
    odd = Custom(4, hidden=8, n_classes=2)
    assert not can_train_together([odd, odd])
    job = ReplicaJob("r", odd, *_data(20, 0), _cfg(), tmp_path / "r")
    with pytest.raises(TypeError, match="one at a time"):
        fit_together([job], CPU, "g")


def test_replica_threads_setting():
    assert replica_threads(3, CPU) == 3
    assert replica_threads(0, CPU) >= 1
    assert replica_threads(0, torch.device("cuda")) == 1  # kernels queue on one device


def test_clipping_per_replica_is_clip_grad_norm_of_each_replica():
    from types import SimpleNamespace

    from moola.train.together import _clip_per_replica

    torch.manual_seed(0)
    shapes = [(5, 3), (7,), (2, 2, 2)]
    replicas = [[torch.nn.Parameter(torch.zeros(s)) for s in shapes] for _ in range(3)]
    scales = (0.01, 3.0, 40.0)  # under, around and far over the limit
    for params, scale in zip(replicas, scales):
        for p in params:
            p.grad = torch.randn(p.shape) * scale
    replicas[1][2].grad = None  # a frozen parameter: not in its replica's norm
    expected_grads, expected_norms = [], []
    for params in replicas:
        copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for c, p in zip(copies, params):
            c.grad = None if p.grad is None else p.grad.clone()
        with_grad = [c for c in copies if c.grad is not None]
        expected_norms.append(float(torch.nn.utils.clip_grad_norm_(with_grad, 1.0)))
        expected_grads.append([None if c.grad is None else c.grad for c in copies])
    lanes = [SimpleNamespace(trainer=SimpleNamespace(settings=SimpleNamespace(grad_clip=1.0)),
                             optimizer=SimpleNamespace(params=params)) for params in replicas]
    norms = _clip_per_replica(lanes, CPU)
    assert [float(n) for n in norms] == pytest.approx(expected_norms, rel=1e-6)
    for params, grads in zip(replicas, expected_grads):
        for p, g in zip(params, grads):
            assert (p.grad is None) == (g is None)
            if g is not None:
                torch.testing.assert_close(p.grad, g)
    clipped = [torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ps
                                                     if p.grad is not None]))
               for ps in replicas]
    assert float(clipped[0]) == pytest.approx(expected_norms[0])  # under the limit: untouched
    assert float(clipped[2]) == pytest.approx(1.0, rel=1e-4)


def test_the_thread_count_is_not_part_of_the_cache_key(tmp_path):
    from moola.config import load_config
    from moola.gates import work
    from moola.gates.context import GateContext
    from moola.testing import SMOKE_DATA

    def key(**train):
        cfg = load_config("smoke", overrides={"run.data": str(SMOKE_DATA),
                                              **{f"train.{k}": v for k, v in train.items()}})
        ctx = GateContext(cfg=cfg, run_id="t", root=tmp_path)
        return work.cache_key(ctx, "baseline", work.CLASSIFIER_SECTIONS)

    assert key(replica_threads=1) == key(replica_threads=2) == key()
    # the refit's shards change the refit only (its own key, moola.gates.refit)
    assert key(refit_shards=1) == key(refit_shards=3) == key()
    assert key(replicas_together=False) != key()  # another way to train: its own entry
