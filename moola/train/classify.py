"""Supervised classification with the shared recipe (gates 1, 4, 5, 6): one function call.

``fit_classifier`` wraps a model into a :class:`ClassifierModule` (AdamW, class-weighted
cross-entropy, macro-F1 validation) and runs it through :class:`~moola.train.loop.Trainer`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from torch.utils.data import DataLoader, TensorDataset

from moola.models.batched import split_for
from moola.train.device import seed_everything, worker_threads
from moola.train.loop import FitResult, LoopSettings, Trainer
from moola.train.shards import ShardPool, one_intra_op_thread, sharded_backward

__all__ = ["ClassifierFit", "ClassifierModule", "fit_classifier", "prepare_fit", "classifier_fit",
           "predict_proba", "inverse_frequency_weights"]

log = logging.getLogger(__name__)
EpochHook = Callable[[int, torch.optim.Optimizer, torch.nn.Module], Any]


def inverse_frequency_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Class weights n / (K * count_c) (sklearn's "balanced"); a class absent from `y` gets 1.

    With 48 / 30 samples of two classes: 78/(2*48) = 0.8125 and 78/(2*30) = 1.3.
    """
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    weights = np.ones(n_classes, dtype=np.float64)
    present = counts > 0
    weights[present] = counts.sum() / (n_classes * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


@torch.no_grad()
def predict_proba(model: torch.nn.Module, X: np.ndarray, device: torch.device | str,
                  batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities, X: (n, T, F) -> (n, K) float64. Restores the model's train mode."""
    was_training = model.training
    model.eval()
    try:
        xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
        out = [torch.softmax(model(xt[i:i + batch_size].to(device)), dim=-1).cpu()
               for i in range(0, len(xt), batch_size)]
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("predict_proba: X is empty")
    return torch.cat(out).double().numpy()


class ClassifierModule:
    """TrainModule for a classifier ``model(x: (B, T, F)) -> logits (B, K)``.

    `param_groups` (AdamW groups, e.g. discriminative learning rates) replaces
    ``model.parameters()``; `epoch_hook(epoch, optimizer, model)` runs at each epoch start
    (freeze / progressive unfreeze). `shards` > 1 cuts each batch into that many shards whose
    gradients are computed on up to `threads` threads (:meth:`forward_backward`), where the
    model's architecture gains from it (a batched split whose ``shards_pay``, and no random
    draws in its trunk); each shard then draws its dropout masks from its own generator,
    seeded from (`seed`, shard). CPU only: on another `device` a batch is one pass. Call
    :meth:`close` when done.
    """

    def __init__(self, model: torch.nn.Module, X_val: np.ndarray, y_val: np.ndarray, *,
                 lr: float, weight_decay: float, class_weights: torch.Tensor | None = None,
                 param_groups: Iterable[dict] | None = None, epoch_hook: EpochHook | None = None,
                 eval_batch_size: int = 256, shards: int = 1, threads: int = 1,
                 seed: int = 0, device: torch.device | str = "cpu") -> None:
        self.model = model
        self.X_val = torch.as_tensor(np.asarray(X_val, dtype=np.float32))
        self.y_val = torch.as_tensor(np.asarray(y_val, dtype=np.int64))
        self.lr, self.weight_decay = lr, weight_decay
        self.class_weights = class_weights
        self.param_groups = list(param_groups) if param_groups is not None else None
        self.epoch_hook, self.eval_batch_size = epoch_hook, eval_batch_size
        # shards pay on a CPU's cores; an accelerator runs one pass
        cpu = torch.device(device).type == "cpu"
        split = split_for([model]) if int(shards) > 1 and cpu else None
        if split is not None and (not split.shards_pay or split.trunk_draws_random(model)):
            split = None  # one pass: shards would cost more, or race for torch's generator
        self._split = split
        self.shards = int(shards) if split is not None else 1
        self.shard_generators = tuple(
            torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), s])
                                              .generate_state(1)[0]))
            for s in range(self.shards)) if split is not None else ()
        self._pool = ShardPool(min(int(threads), self.shards))  # no thread for one pass

    @property
    def shard_threads(self) -> int:
        """Threads the shards run on (1 for one pass)."""
        return self._pool.threads

    def configure_optimizer(self) -> torch.optim.Optimizer:
        params = self.param_groups if self.param_groups is not None else self.model.parameters()
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = None if self.class_weights is None else self.class_weights.to(logits.device)
        return F.cross_entropy(logits, y, weight=w)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> torch.Tensor:
        x, y = batch
        return self._loss(self.model(x.to(device)), y.to(device))

    def forward_backward(self, batch: tuple[torch.Tensor, torch.Tensor],
                         device: torch.device) -> torch.Tensor:
        """One batch's loss (returned, detached) and its gradient, put into ``.grad``.

        Without shards: ``training_step(...).backward()``. With shards: the batch is cut into
        ``shards`` parts (fewer for a short batch); a part's loss is its class-weighted
        cross-entropy summed over its windows and divided by the whole batch's total weight, so
        the parts' losses add up to the batch's weighted mean. Each part runs the model's trunk
        and its head on one model (:mod:`moola.models.batched`, the same arithmetic as
        ``forward``) with shard s's dropout masks drawn from ``shard_generators[s]``.
        """
        if self._split is None:
            loss = self.training_step(batch, device)
            loss.backward()
            return loss.detach()
        x, y = batch[0].to(device), batch[1].to(device)
        n = min(self.shards, len(y))
        w = (self.class_weights.to(device)[y] if self.class_weights is not None
             else torch.ones(len(y), device=device))
        total = w.sum()
        split, model = self._split, self.model

        def loss_of(part):
            xs, ys, ws, gen = part
            logits = split.head([model], split.trunk(model, xs)[None], [len(ys)], [gen])[0]
            return (ws * F.cross_entropy(logits, ys, reduction="none")).sum() / total

        parts = list(zip(x.tensor_split(n), y.tensor_split(n), w.tensor_split(n),
                         self.shard_generators[:n]))
        params = [p for p in model.parameters() if p.requires_grad]
        return sharded_backward(params, parts, loss_of, self._pool)

    def close(self) -> None:
        """Stop the shard threads (idempotent)."""
        self._pool.close()

    def validation_metrics(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """val_loss (same weighted loss as training), val_macro_f1, val_accuracy."""
        logits = torch.cat([model(self.X_val[i:i + self.eval_batch_size].to(device)).float().cpu()
                            for i in range(0, len(self.X_val), self.eval_batch_size)])
        pred = logits.argmax(dim=-1).numpy()
        y = self.y_val.numpy()
        return {
            "val_loss": float(self._loss(logits, self.y_val)),
            "val_macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
            "val_accuracy": float(accuracy_score(y, pred)),
        }

    def on_epoch_start(self, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        if self.epoch_hook is not None:
            self.epoch_hook(epoch, optimizer, self.model)


@dataclass
class ClassifierFit:
    """A trained classifier (best weights) and its validation predictions."""

    model: torch.nn.Module
    fit: FitResult
    val_proba: np.ndarray  # (n_val, K)
    val_pred: np.ndarray  # (n_val,) int64
    train_loss_first: float
    train_loss_last: float
    shards: int = 1  # each batch's shards (ClassifierModule; 1 = one pass)


def _n_classes(model: torch.nn.Module, X: np.ndarray, device: torch.device) -> int:
    """K from the model's output on one window (eval mode: consumes no random numbers)."""
    return int(predict_proba(model, X[:1], device).shape[1])


def steps_per_epoch(n_windows: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over n windows (the last batch may be short)."""
    return max(1, -(-int(n_windows) // int(batch_size)))


def epoch_budget(settings: LoopSettings, steps_per_epoch: int, min_steps: int, *,
                 fixed: bool = False) -> LoopSettings:
    """The one rule for the epochs a fit may run (recorded per replica as ``max_epochs``).

    Early stopping (`fixed` False): min_epochs is raised so that stopping cannot fire before
    `min_steps` optimizer steps, and max_epochs so that the run can get past them by a full
    patience; ``train.max_epochs`` is a floor, not a cap, on a few dozen windows. A fixed
    budget (`fixed`: no stopping slice, final weights): exactly max_epochs epochs, raised to
    `min_steps` steps, with nothing to stop on."""
    spe = max(1, int(steps_per_epoch))
    floor = -(-int(min_steps) // spe) if min_steps > 0 else 0
    if fixed:
        n = max(settings.max_epochs, floor)
        return dataclasses.replace(settings, min_epochs=n, max_epochs=n,
                                   early_stop_patience=n + 1, checkpoint_save_top_k=0,
                                   eval_final_epoch_only=True)
    min_epochs = max(settings.min_epochs, floor)
    max_epochs = max(settings.max_epochs, min_epochs + settings.early_stop_patience
                     if floor else settings.max_epochs)
    return dataclasses.replace(settings, min_epochs=min_epochs, max_epochs=max_epochs)


def fit_classifier(model: torch.nn.Module, X_train: np.ndarray, y_train: np.ndarray,
                   X_val: np.ndarray, y_val: np.ndarray, cfg: Any, run_dir: str | os.PathLike,
                   device: torch.device, gate: str, status: Any = None,
                   epoch_hook: EpochHook | None = None, param_groups: Iterable[dict] | None = None,
                   *, resume: bool = True, on_checkpoint: Callable[[], Any] | None = None,
                   on_eval: Callable[[dict], Any] | None = None,
                   eval_final_epoch_only: bool = False, shards: int = 1) -> ClassifierFit:
    """Train `model` with the recipe in ``cfg.train`` and the knobs in ``cfg.run``.

    X: (n, T, F) float32, y: (n,) int64 class indices. Seeds from ``cfg.run.seed`` first (the
    shuffling generator too), so two calls with the same inputs train identically.
    Early stopping and the best checkpoint follow ``val_loss`` (min).
    `eval_final_epoch_only`: a fixed epoch budget whose final weights are the result (no
    per-epoch evaluation, no selection). `shards` > 1: each batch in shards on the cores (see
    :class:`ClassifierModule`; CPU only), with one torch intra-op thread while they run
    (whatever the cores, so that the sums, hence the weights, do not depend on them).
    """
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    module, loader, trainer = prepare_fit(
        model, X_train, y_train, X_val, y_val, cfg, run_dir, device, gate, status=status,
        epoch_hook=epoch_hook, param_groups=param_groups, on_checkpoint=on_checkpoint,
        on_eval=on_eval, eval_final_epoch_only=eval_final_epoch_only, shards=shards)
    try:
        with one_intra_op_thread(module.shards > 1):
            result = trainer.fit(module, loader, resume=resume)
    finally:
        module.close()
    return classifier_fit(module, result, device)


def prepare_fit(model: torch.nn.Module, X_train: np.ndarray, y_train: np.ndarray,
                X_val: np.ndarray, y_val: np.ndarray, cfg: Any, run_dir: str | os.PathLike,
                device: torch.device, gate: str, *, status: Any = None,
                epoch_hook: EpochHook | None = None, param_groups: Iterable[dict] | None = None,
                on_checkpoint: Callable[[], Any] | None = None,
                on_eval: Callable[[dict], Any] | None = None,
                eval_final_epoch_only: bool = False, shards: int = 1
                ) -> tuple[ClassifierModule, DataLoader, Trainer]:
    """What :func:`fit_classifier` trains with: the module (loss, optimizer, validation), the
    shuffling loader (its own generator, seeded with ``cfg.run.seed``) and the Trainer.
    :mod:`moola.train.together` builds the same three for each replica it trains."""
    device = torch.device(device)
    model.to(device)
    k = _n_classes(model, X_train, device)
    for name, y in (("y_train", y_train), ("y_val", y_val)):
        if len(y) and (np.min(y) < 0 or np.max(y) >= k):
            raise ValueError(f"fit_classifier: {name} has labels outside 0..{k - 1} (the model "
                             f"outputs {k} classes); encode labels as class indices")
    weights = inverse_frequency_weights(y_train, k) if cfg.train.class_weighting else None
    module = ClassifierModule(model, X_val, y_val, lr=cfg.train.lr,
                              weight_decay=cfg.train.weight_decay, class_weights=weights,
                              param_groups=param_groups, epoch_hook=epoch_hook,
                              shards=shards, threads=worker_threads(device), seed=cfg.run.seed,
                              device=device)
    data = TensorDataset(torch.as_tensor(np.asarray(X_train, dtype=np.float32)),
                         torch.as_tensor(np.asarray(y_train, dtype=np.int64)))
    loader = DataLoader(data, batch_size=cfg.train.batch_size, shuffle=True, drop_last=False,
                        generator=torch.Generator().manual_seed(cfg.run.seed),
                        num_workers=cfg.run.num_workers)
    settings = epoch_budget(LoopSettings.from_config(cfg, "train", monitor="val_loss", mode="min"),
                            len(loader), cfg.train.min_steps, fixed=eval_final_epoch_only)
    trainer = Trainer(settings, run_dir, device, gate, status=status, on_checkpoint=on_checkpoint,
                      on_eval=on_eval)
    trainer.shard_generators = module.shard_generators  # their states go into checkpoints
    return module, loader, trainer


def classifier_fit(module: ClassifierModule, result: FitResult,
                   device: torch.device) -> ClassifierFit:
    """Package a finished fit (best weights already in ``module.model``)."""
    proba = predict_proba(module.model, module.X_val.numpy(), device)
    history = result.history
    return ClassifierFit(
        model=module.model, fit=result, val_proba=proba, val_pred=proba.argmax(axis=1),
        train_loss_first=history[0]["train_loss"] if history else float("nan"),
        train_loss_last=history[-1]["train_loss"] if history else float("nan"),
        shards=module.shards)
