"""The one training loop: fit a :class:`TrainModule` with early stopping, checkpoints, resume and
two-tier logging (fast tier every ``log_every_n_steps``: status.json + a CSV row; full tier once
per epoch and every ``eval_every_n_steps``: time-limited validation on a model snapshot).

Run directory layout::

    run_dir/metrics.csv                      Lightning CSVLogger layout
    run_dir/checkpoints/last.pt              at most every 2 s, and on the first, a new-best and
                                             the final epoch (resume from here)
    run_dir/checkpoints/best-epoch=NN-<monitor>=X.pt   top-k by the monitored metric

Checkpoints hold only tensors and plain values, so ``torch.load(p, weights_only=True)`` works;
writing and resuming them lives in :mod:`moola.train.checkpointing`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch

from moola.train.callbacks import MODES, CheckpointKeeper, EarlyStopping
from moola.train.checkpointing import CHECKPOINT_FORMAT, CheckpointMixin
from moola.train.csv_logger import make_logger
from moola.train.eval_timeout import abandoned_running, evaluate_snapshot

__all__ = ["LoopSettings", "TrainModule", "FitResult", "Trainer", "CHECKPOINT_FORMAT"]

log = logging.getLogger(__name__)
@dataclass(frozen=True)
class LoopSettings:
    """How the loop runs. Built from a Config with :meth:`from_config`."""

    max_epochs: int = 40
    min_epochs: int = 1  # early stopping never fires before this many epochs
    early_stop_patience: int = 8  # epochs without improvement of `monitor`
    checkpoint_save_top_k: int = 1  # best-k checkpoints kept, plus last.pt
    grad_clip: float = 1.0  # max global grad norm; 0 = no clipping
    log_every_n_steps: int = 10  # fast tier; 0 = off
    eval_every_n_steps: int = 0  # extra full-tier evaluations inside an epoch; 0 = per epoch only
    eval_timeout: float = 120.0  # seconds before an evaluation is abandoned; 0 = no limit
    logger: str = "csv"  # csv | none
    monitor: str = "val_loss"
    mode: str = "min"  # min | max
    # a fixed budget with nothing to select (protocol.inner_fraction = 0): evaluate the last
    # epoch only; its weights are the result
    eval_final_epoch_only: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"LoopSettings.mode {self.mode!r}; allowed values: {', '.join(MODES)}")
        if self.logger not in ("csv", "none"):
            raise ValueError(f"LoopSettings.logger {self.logger!r}; allowed values: csv, none")
        if self.max_epochs < 1:
            raise ValueError(f"LoopSettings.max_epochs must be >= 1, got {self.max_epochs}")
        for name in ("min_epochs", "early_stop_patience", "checkpoint_save_top_k", "grad_clip",
                     "log_every_n_steps", "eval_every_n_steps", "eval_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"LoopSettings.{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, cfg: Any, section: str = "train", monitor: str = "val_loss",
                    mode: str = "min") -> "LoopSettings":
        """Epoch budget and early stopping from ``cfg.<section>``; the tier knobs, eval timeout
        and logger from ``cfg.run``. ``pretrain`` has no min_epochs / checkpoint / grad_clip
        keys: min_epochs=1, checkpoint_save_top_k from cfg.train, grad_clip 1.0."""
        if section not in ("train", "pretrain"):
            raise ValueError(f"LoopSettings.from_config: section {section!r}; allowed: train, pretrain")
        sec, run = getattr(cfg, section), cfg.run
        return cls(
            max_epochs=sec.max_epochs,
            min_epochs=getattr(sec, "min_epochs", 1),
            early_stop_patience=sec.early_stop_patience,
            checkpoint_save_top_k=getattr(sec, "checkpoint_save_top_k", cfg.train.checkpoint_save_top_k),
            grad_clip=getattr(sec, "grad_clip", 1.0),
            log_every_n_steps=run.log_every_n_steps,
            eval_every_n_steps=run.eval_every_n_steps,
            eval_timeout=run.eval_timeout,
            logger=run.logger,
            monitor=monitor,
            mode=mode,
        )


@runtime_checkable
class TrainModule(Protocol):
    """What the loop trains. Optionally also ``on_epoch_start(epoch, optimizer)``, and
    ``forward_backward(batch, device) -> loss``: a module that computes its gradients itself
    (into each parameter's ``.grad``; the loop has cleared them) instead of the loop calling
    ``training_step(...).backward()``."""

    model: torch.nn.Module

    def configure_optimizer(self) -> torch.optim.Optimizer: ...

    def training_step(self, batch: Any, device: torch.device) -> torch.Tensor: ...

    def validation_metrics(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Gets a snapshot copy of the model (eval mode, no grad); may run in a worker thread."""
        ...


@dataclass
class FitResult:
    """Outcome of :meth:`Trainer.fit`. Epochs are 0-based; `history` has one dict per epoch."""

    best_score: float | None
    best_epoch: int | None
    epochs_run: int  # epochs completed in total, including those before a resume
    stopped_reason: str
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    duration_s: float = 0.0  # this call only
    timed_out_evals: int = 0  # full-tier evaluations abandoned (this call, mid-epoch included)
    resumed_from_epoch: int | None = None  # first epoch run by this call when it resumed
    best_checkpoint: str | None = None
    last_checkpoint: str | None = None
    metrics_csv: str | None = None
    max_epochs: int = 0  # the epochs it could run (moola.train.classify.epoch_budget)


def _val_name(key: str) -> str:
    return key if key.startswith("val_") else f"val_{key}"


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Keep scalar metrics (prefixed ``val_``); other values are not logged."""
    out = {}
    for key, value in metrics.items():
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[_val_name(str(key))] = float(value)
        else:
            log.debug("validation metric %r is not a scalar; not logged", key)
    return out


def _batch_len(batch: Any) -> int:
    """Number of samples in a batch (tensor, tuple/list of tensors, or dict of tensors)."""
    first = batch
    while isinstance(first, (list, tuple, dict)):
        first = next(iter(first.values())) if isinstance(first, dict) else first[0]
    return int(first.shape[0]) if hasattr(first, "shape") else 1


class Trainer(CheckpointMixin):
    """Runs :meth:`fit`; see the module docstring for what it writes.

    `status` is a :class:`moola.report.status.StatusWriter` (or None). `on_checkpoint()` runs
    after each checkpoint write and `on_eval(metrics)` after each full evaluation (e.g. a
    --sync-cmd); an exception in either is logged and never stops training.
    """

    def __init__(self, settings: LoopSettings, run_dir: str | os.PathLike, device: torch.device,
                 gate: str, status: Any = None, on_checkpoint: Callable[[], Any] | None = None,
                 on_eval: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.settings, self.run_dir, self.gate = settings, Path(run_dir), gate
        self.device = torch.device(device)
        self.status, self.on_checkpoint, self.on_eval = status, on_checkpoint, on_eval
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.last_path = self.ckpt_dir / "last.pt"
        # a replica trained together with others draws dropout masks from its own generator
        # (moola.train.together); its state goes into the checkpoints in place of torch's
        self.dropout_generator: torch.Generator | None = None
        # a sharded step's shards draw theirs from generators of their own (moola.train.shards)
        self.shard_generators: tuple[torch.Generator, ...] = ()

    # ------------------------------------------------------------------ the loop
    def fit(self, module: TrainModule, train_loader: Any, resume: bool = True) -> FitResult:
        """Train `module.model` on `train_loader`; load the best weights into it at the end."""
        t_start = time.perf_counter()
        model = module.model.to(self.device)
        optimizer = module.configure_optimizer()
        start, resumed_from, stopped = self.begin(module, optimizer, train_loader, resume)
        s = self.settings
        own_gradients = getattr(module, "forward_backward", None)
        try:
            for epoch in range(start, s.max_epochs):
                if stopped:
                    break
                self.start_epoch(module, optimizer, epoch)
                for i, batch in enumerate(train_loader):
                    # forward / backward
                    optimizer.zero_grad(set_to_none=True)
                    if own_gradients is not None:  # the module fills .grad itself
                        loss = own_gradients(batch, self.device)
                    else:
                        loss = module.training_step(batch, self.device)
                        loss.backward()
                    # clip and step
                    grad_norm = None
                    if s.grad_clip > 0:
                        params = [p for g in optimizer.param_groups for p in g["params"]
                                  if p.grad is not None]
                        grad_norm = torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
                    optimizer.step()
                    last_batch = self.steps_per_epoch is not None and i + 1 == self.steps_per_epoch
                    self.after_step(module, optimizer, epoch, loss, _batch_len(batch), grad_norm,
                                    last_batch)
                stopped = self.end_epoch(module, optimizer, epoch)
            stopped = stopped or f"max_epochs={s.max_epochs} reached"
        except BaseException as exc:
            self.failed(exc)
            raise
        return self.finish(module, stopped, resumed_from, t_start)

    # The phases of :meth:`fit`, public so that :mod:`moola.train.together` can drive one
    # Trainer per replica while it computes the steps of many replicas at once.
    def begin(self, module: TrainModule, optimizer: torch.optim.Optimizer, train_loader: Any,
              resume: bool = True) -> tuple[int, int | None, str | None]:
        """Set up callbacks, logger and checkpoints, resume from last.pt when it fits.

        Returns (first epoch to run, the epoch resumed from or None, a stop reason when the
        resumed run had already stopped)."""
        s = self.settings
        self.early = EarlyStopping(s.monitor, s.mode, s.early_stop_patience, s.min_epochs)
        self.keeper = CheckpointKeeper(self.ckpt_dir, s.monitor, s.mode, s.checkpoint_save_top_k)
        self._last_ckpt_at: float | None = None
        self.logger = make_logger(s.logger, self.run_dir / "metrics.csv")
        self.history, self.step, self.timed_out_evals, self._best_state = [], 0, 0, None
        self.generator = getattr(train_loader, "generator", None)
        start = self._restore(module, optimizer) if resume else None
        resumed_from, start = start, start or 0
        if resumed_from is None:
            self._fresh_start()
        try:
            self.steps_per_epoch: int | None = len(train_loader)
        except TypeError:  # an iterable loader without a length: no ETA
            self.steps_per_epoch = None
        self.total_steps = s.max_epochs * self.steps_per_epoch if self.steps_per_epoch else None
        stopped = None
        if resumed_from is not None and start > 0:
            should_stop, reason = self.early.decide(start - 1)  # it may have stopped already
            stopped = reason if should_stop else None
        # a writer may be shared by several gates: clear what the previous run left behind
        self._write_status(gate=self.gate, phase="train", step=self.step, total_steps=self.total_steps,
                           epoch=start, max_epochs=s.max_epochs, loss=None, lr=None,
                           throughput=None, eta_s=None, last_eval=None, stopped_reason=None,
                           best_score=None, best_epoch=None, epochs_run=None, error=None)
        return start, resumed_from, stopped

    def start_epoch(self, module: TrainModule, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        """Epoch start: train mode, then the module's freeze / unfreeze schedule."""
        module.model.train()
        if hasattr(module, "on_epoch_start"):
            module.on_epoch_start(epoch, optimizer)
        self._loss_sum, self._n_seen = torch.zeros((), device=self.device), 0
        self._reset_window()

    def after_step(self, module: TrainModule, optimizer: torch.optim.Optimizer, epoch: int,
                   loss: torch.Tensor, n: int, grad_norm: torch.Tensor | None,
                   last_batch: bool) -> None:
        """Book one optimizer step over `n` windows: running loss, fast tier, mid-epoch eval."""
        s = self.settings
        self.step += 1
        self._loss_sum += loss.detach() * n
        self._n_seen += n
        self._win_samples += n
        self._win_steps += 1
        # fast tier: status + CSV row (the only place a step loss is synced)
        if s.log_every_n_steps and self.step % s.log_every_n_steps == 0:
            self._fast_tier(epoch, loss, self._loss_sum.item() / self._n_seen, optimizer, grad_norm)
        # full tier inside the epoch (the end-of-epoch one follows anyway)
        if s.eval_every_n_steps and self.step % s.eval_every_n_steps == 0 and not last_batch:
            self._full_tier(module, epoch, self._loss_sum.item() / self._n_seen, epoch_end=False)
            self._reset_window()

    def end_epoch(self, module: TrainModule, optimizer: torch.optim.Optimizer,
                  epoch: int) -> str | None:
        """Evaluate, decide early stopping, write checkpoints; returns the stop reason or None."""
        s = self.settings
        if self._n_seen == 0:
            raise ValueError("train_loader yielded no batches; nothing to train on")
        train_loss = self._loss_sum.item() / self._n_seen
        # full tier at the end of the epoch
        if s.eval_final_epoch_only and epoch < s.max_epochs - 1:
            record = self._train_only_record(epoch, train_loss)
        else:
            record = self._full_tier(module, epoch, train_loss, epoch_end=True)
        # early stopping (a timed-out or skipped evaluation counts as no improvement)
        unscored = record["eval_timed_out"] or record.get("evaluated") is False
        # epochs before min_epochs are not candidates for the best checkpoint: on small
        # data the first ~100 steps sit on the ln(K) plateau, and a stopping slice of a
        # few windows can rank that near-uniform model first (a one-class result)
        warming_up = epoch + 1 < s.min_epochs
        score = None if unscored or warming_up else self.early.score_from(record)
        should_stop, reason = self.early.update(epoch, score)
        if not math.isfinite(train_loss):
            should_stop, reason = True, (
                f"training loss became non-finite ({train_loss}) in epoch {epoch}; check the "
                "learning rate and the input normalisation")
        stopped = reason if should_stop else None
        log.info("[%s] epoch %d: train_loss %.4f %s: %s", self.gate, epoch, train_loss,
                 s.monitor, "timed out" if score is None else f"{score:.4f}")
        # checkpoints: top-k best and last.pt
        final = stopped is not None or epoch == s.max_epochs - 1
        self._checkpoint(module.model, optimizer, epoch, score, stopped, final)
        return stopped

    def failed(self, exc: BaseException) -> None:
        """Say in the status file why training stopped."""
        self._write_status(phase="failed", error=f"{type(exc).__name__}: {exc}"[:500])

    def finish(self, module: TrainModule, stopped: str, resumed_from: int | None,
               t_start: float) -> FitResult:
        """Best weights back into the module; the :class:`FitResult`."""
        s = self.settings
        if self._best_state is not None:
            module.model.load_state_dict(self._best_state)
        else:
            log.warning("[%s] no evaluation produced a %s score; the model keeps its last weights",
                        self.gate, s.monitor)
        result = FitResult(
            best_score=self.early.best_score, best_epoch=self.early.best_epoch,
            epochs_run=len(self.history), max_epochs=s.max_epochs, stopped_reason=stopped,
            history=list(self.history),
            steps=self.step, duration_s=time.perf_counter() - t_start,
            timed_out_evals=self.timed_out_evals, resumed_from_epoch=resumed_from,
            best_checkpoint=str(self.keeper.best_path) if self.keeper.best_path else None,
            last_checkpoint=str(self.last_path) if self.last_path.is_file() else None,
            metrics_csv=str(self.logger.path) if self.logger.path else None)
        self._write_status(phase="done", stopped_reason=stopped, best_score=result.best_score,
                           best_epoch=result.best_epoch, epochs_run=result.epochs_run)
        log.info("[%s] stopped: %s", self.gate, stopped)
        return result

    # ------------------------------------------------------------------ tiers
    def _reset_window(self) -> None:
        self._win_t0, self._win_samples, self._win_steps = time.perf_counter(), 0, 0

    def _fast_tier(self, epoch: int, loss: torch.Tensor, running: float,
                   optimizer: torch.optim.Optimizer, grad_norm: torch.Tensor | None) -> None:
        """Status (running-mean loss, lr, throughput, ETA) and a CSV step row."""
        elapsed = max(time.perf_counter() - self._win_t0, 1e-9)
        lr = max(g["lr"] for g in optimizer.param_groups)
        eta = None
        if self.total_steps is not None and self._win_steps:
            eta = max(self.total_steps - self.step, 0) * elapsed / self._win_steps
        row = {"train_loss_step": loss.item(), "lr": lr}
        if grad_norm is not None:
            row["grad_norm"] = float(grad_norm)
        self.logger.log(row, epoch=epoch, step=self.step)
        self._write_status(phase="train", step=self.step, total_steps=self.total_steps, epoch=epoch,
                           max_epochs=self.settings.max_epochs, loss=running, lr=lr,
                           throughput=self._win_samples / elapsed, eta_s=eta)
        self._reset_window()

    def _full_tier(self, module: TrainModule, epoch: int, train_loss: float, epoch_end: bool) -> dict:
        """Time-limited evaluation on a snapshot; logs it, updates status, calls on_eval."""
        self._write_status(phase="eval", epoch=epoch, step=self.step)
        if abandoned_running():
            log.warning("[%s] %d abandoned evaluation(s) still running in the background",
                        self.gate, abandoned_running())
        outcome = evaluate_snapshot(module.validation_metrics, module.model, self.device,
                                    self.settings.eval_timeout)
        metrics = {} if outcome.timed_out else _scalar_metrics(outcome.metrics)
        self.timed_out_evals += int(outcome.timed_out)
        gap = None
        if "val_loss" in metrics and math.isfinite(train_loss):
            gap = metrics["val_loss"] - train_loss
        row = {("train_loss_epoch" if epoch_end else "train_loss_running"): train_loss, **metrics}
        if gap is not None:
            row["train_val_gap"] = gap
        row["eval_timed_out"] = int(outcome.timed_out)
        self.logger.log(row, epoch=epoch, step=self.step)
        record = {"epoch": epoch, "step": self.step, "train_loss": train_loss, **metrics,
                  "train_val_gap": gap, "eval_timed_out": outcome.timed_out,
                  "eval_duration_s": round(outcome.duration_s, 4)}
        if epoch_end:
            self.history.append(record)
        self._write_status(phase="train", last_eval={
            "step": self.step, "epoch": epoch, "metrics": metrics, "train_val_gap": gap,
            "timed_out": outcome.timed_out, "duration_s": outcome.duration_s,
            "abandoned_running": abandoned_running(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())})
        self._call_hook(self.on_eval, dict(record))
        return record

    def _train_only_record(self, epoch: int, train_loss: float) -> dict:
        """An epoch that is not evaluated (eval_final_epoch_only): its training loss only."""
        self.logger.log({"train_loss_epoch": train_loss}, epoch=epoch, step=self.step)
        record = {"epoch": epoch, "step": self.step, "train_loss": train_loss,
                  "eval_timed_out": False, "evaluated": False}
        self.history.append(record)
        return record

    # ------------------------------------------------------------------ helpers
    def _write_status(self, **fields: Any) -> None:
        """Status is for people watching; a failed write is logged, training goes on."""
        if self.status is None:
            return
        try:
            self.status.update(**fields)
        except Exception:
            log.exception("[%s] could not write the status file; training continues", self.gate)

    def _call_hook(self, hook: Callable | None, *args: Any) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:
            log.exception("[%s] hook %r raised; training continues", self.gate, hook)
