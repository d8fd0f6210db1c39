"""One classifier's batch in shards on the cores (moola.train.shards; the exported refit).

* without dropout the sharded step's loss and gradient are the one pass's (float tolerance),
  class weights, uneven shards and a short batch included;
* the number of threads changes no gradient (bit for bit), dropout on;
* shard s draws its masks from its own generator: the same seed gives the same step, and a run
  cut after 2 epochs resumes to the weights of an uninterrupted one (the generators' states are
  in the checkpoint);
* architectures where shards do not pay (SimpleLSTM) or would race for torch's generator
  (dropout between stacked LSTM layers) take one pass; the intra-op thread count is restored.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moola.config import Config
from moola.models import EncoderConfig, EnhancedSimpleLSTM, SimpleLSTM
from moola.train import fit_classifier, seed_everything
from moola.train.classify import ClassifierModule
from moola.train.shards import ShardPool, sharded_backward

CPU = torch.device("cpu")


def _enhanced(dropout: float = 0.3, layers: int = 1) -> EnhancedSimpleLSTM:
    seed_everything(5)
    enc = EncoderConfig(4, 8, layers, dropout=dropout if layers > 1 else 0.0)
    return EnhancedSimpleLSTM(enc, 3, attention_heads=2, head_hidden=6, dropout=dropout)


def _batch(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, 4, generator=g)
    y = torch.arange(n) % 3
    return x, y


def _module(model, shards: int, threads: int = 1, seed: int = 11) -> ClassifierModule:
    model.train()
    return ClassifierModule(model, np.zeros((1, 12, 4), np.float32), np.zeros(1, np.int64),
                            lr=1e-3, weight_decay=0.0, shards=shards, threads=threads,
                            class_weights=torch.tensor([0.5, 1.0, 2.0]), seed=seed)


def _grads(module: ClassifierModule, batch) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    module.model.zero_grad(set_to_none=True)
    loss = module.forward_backward(batch, CPU)
    grads = [None if p.grad is None else p.grad.clone() for p in module.model.parameters()]
    module.close()
    return loss, grads


def _same(a: list, b: list, **tol) -> None:
    assert [g is None for g in a] == [g is None for g in b]
    for x, y in zip(a, b):
        if x is not None:
            torch.testing.assert_close(x, y, **tol)


@pytest.mark.parametrize("n,shards", [(16, 2), (16, 4), (7, 3), (1, 2)])
def test_without_dropout_the_sharded_step_is_the_one_pass(n, shards):
    batch = _batch(n)
    one_loss, one = _grads(_module(_enhanced(dropout=0.0), 1), batch)
    mod = _module(_enhanced(dropout=0.0), shards, threads=2)
    assert mod.shards == shards
    loss, sharded = _grads(mod, batch)
    torch.testing.assert_close(loss, one_loss, rtol=1e-5, atol=1e-7)
    assert any(g.abs().max() > 0 for g in one)
    _same(sharded, one, rtol=1e-4, atol=1e-7)


def test_a_frozen_encoder_gets_no_gradient_in_shards_either():
    batch = _batch(16)
    models = [_enhanced(dropout=0.0) for _ in range(2)]
    for m in models:  # gate 4's first epochs: the pretrained encoder frozen
        m.encoder.requires_grad_(False)
    _, one = _grads(_module(models[0], 1), batch)
    _, sharded = _grads(_module(models[1], 2, threads=2), batch)
    assert any(g is None for g in one) and any(g is not None for g in one)
    _same(sharded, one, rtol=1e-4, atol=1e-7)


def test_threads_change_no_gradient_with_dropout_on():
    batch = _batch(16)
    runs = [_grads(_module(_enhanced(), 2, threads=t), batch)[1] for t in (1, 2, 2)]
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other))


def test_each_shard_draws_its_own_dropout_masks():
    batch = _batch(16)
    mod = _module(_enhanced(), 2)
    before = [g.get_state().clone() for g in mod.shard_generators]
    assert not torch.equal(*before), "each shard has a stream of its own"
    _, first = _grads(mod, batch)
    assert all(not torch.equal(b, g.get_state()) for b, g in zip(before, mod.shard_generators))
    _, same_seed = _grads(_module(_enhanced(), 2), batch)
    _, other_seed = _grads(_module(_enhanced(), 2, seed=12), batch)
    assert all(torch.equal(a, b) for a, b in zip(first, same_seed))
    assert not all(torch.equal(a, b) for a, b in zip(first, other_seed))


def test_where_shards_do_not_pay_or_would_race_one_pass_is_taken():
    simple = _module(SimpleLSTM(4, hidden=8, n_classes=3, dropout=0.3), 4, threads=2)
    stacked = _module(_enhanced(layers=2), 4, threads=2)  # dropout inside nn.LSTM's kernel
    handed_in_eval_mode = _enhanced(layers=2).eval()  # it draws once training starts
    evaluated = ClassifierModule(handed_in_eval_mode, np.zeros((1, 12, 4), np.float32),
                                 np.zeros(1, np.int64), lr=1e-3, weight_decay=0.0, shards=4,
                                 threads=2)
    assert evaluated.shards == 1 and evaluated.shard_threads == 1
    elsewhere = ClassifierModule(_enhanced(), np.zeros((1, 12, 4), np.float32),
                                 np.zeros(1, np.int64), lr=1e-3, weight_decay=0.0, shards=4,
                                 threads=2, device="meta")  # an accelerator: one pass
    assert elsewhere.shards == 1
    for mod in (simple, stacked):
        assert mod.shards == 1 and mod.shard_threads == 1 and mod.shard_generators == ()
        loss, grads = _grads(mod, _batch(16))
        assert torch.isfinite(loss) and any(g.abs().max() > 0 for g in grads)


def _fit(run_dir, epochs: int, shards: int):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 12, 4)).astype(np.float32)
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    cfg = Config().replace("train", max_epochs=epochs, min_epochs=epochs, min_steps=0,
                           batch_size=16).replace("run", seed=3)
    return fit_classifier(_enhanced(), X, y, X[:8], y[:8], cfg, run_dir, CPU, "g",
                          shards=shards, eval_final_epoch_only=True)


def test_a_sharded_fit_resumes_where_it_stopped_and_restores_the_thread_count(tmp_path):
    threads = torch.get_num_threads()
    full = _fit(tmp_path / "full", 4, shards=2)
    assert torch.get_num_threads() == threads
    _fit(tmp_path / "cut", 2, shards=2)  # "killed" after 2 epochs
    resumed = _fit(tmp_path / "cut", 4, shards=2)
    assert resumed.fit.resumed_from_epoch == 2 and resumed.fit.epochs_run == 4
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    one_pass = _fit(tmp_path / "one", 4, shards=1)  # other masks: other weights
    assert not all(torch.equal(a, b) for a, b in
                   zip(full.model.parameters(), one_pass.model.parameters()))
    # a checkpoint of another number of shards lacks these shards' streams: start fresh
    _fit(tmp_path / "other", 2, shards=1)
    fresh = _fit(tmp_path / "other", 4, shards=2)
    assert fresh.fit.resumed_from_epoch is None
    for a, b in zip(full.model.parameters(), fresh.model.parameters()):
        assert torch.equal(a, b)


def test_sharded_backward_accumulates_like_backward():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    w.grad = torch.tensor([10.0, 10.0])
    parts = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])]
    loss = sharded_backward([w], parts, lambda v: (w * v).sum(), ShardPool(2))
    assert float(loss) == 7.0
    assert torch.equal(w.grad, torch.tensor([11.0, 13.0]))
