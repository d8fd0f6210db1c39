"""Train the replicas of one recipe together: one step of every replica at a time.

The repeated protocol trains each supervised recipe as seeds x folds replicas. One after
another, each pays the whole per-step work: the LSTM kernels and, more than half of a step on
a CPU, the dozens of small operations around them (attention, head, loss, clipping, AdamW).
Here every step of every replica still runs its own ``nn.LSTM`` kernels (spread over a pool of
threads: the kernels release the GIL, so two cores run two replicas' kernels at once), while
the rest is paid once for all replicas: the head runs batched over a replica axis
(:mod:`moola.models.batched`), one loss and one backward pass cover them all, gradients are
clipped per replica with foreach operations, and one AdamW (``foreach``) steps every replica's
parameters.

Each replica keeps what it has when trained alone: its own data, shuffling generator, class
weights, dropout generator, early stopping, best checkpoint, ``metrics.csv`` and ``last.pt``
(the same files, written by its own :class:`~moola.train.loop.Trainer`, so an interrupted build
resumes each replica from its checkpoint). A replica that has stopped leaves the step: it costs
nothing more. On the CPU its steps are the steps it takes alone, to float rounding (a test shows
it); on CUDA torch's dropout is a fused kernel whose masks a bernoulli draw does not reproduce,
so there a replica draws other masks (from the same distribution) than alone.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from moola.models.batched import BatchedSplit, split_for
from moola.train.device import worker_threads
from moola.train.classify import (ClassifierFit, EpochHook, classifier_fit, fit_classifier,
                                  prepare_fit)

__all__ = ["ReplicaJob", "fit_together", "fit_alone", "can_train_together", "replica_threads"]

log = logging.getLogger(__name__)


@dataclass
class ReplicaJob:
    """One replica: its untrained model (built right after seeding with its seed), its data,
    its config (``run.seed`` = its seed; the fixed-budget settings when it has no stopping
    slice) and run directory, and its transfer schedule (pretrained models)."""

    name: str
    model: torch.nn.Module
    X_fit: np.ndarray
    y_fit: np.ndarray
    X_stop: np.ndarray
    y_stop: np.ndarray
    cfg: Any
    run_dir: Path
    epoch_hook: EpochHook | None = None
    param_groups: list[dict] | None = None
    eval_final_epoch_only: bool = False
    shards: int = 1  # when trained alone: its batches in shards on the cores (fit_classifier)


def fit_alone(job: ReplicaJob, device: torch.device, gate: str, *, status: Any = None,
              **hooks: Any) -> ClassifierFit:
    """Train one job's replica by itself (``fit_classifier``): what :func:`fit_together` does
    for many, and what serves models without a batched split."""
    return fit_classifier(job.model, job.X_fit, job.y_fit, job.X_stop, job.y_stop, job.cfg,
                          job.run_dir, device, gate, status=status, epoch_hook=job.epoch_hook,
                          param_groups=job.param_groups,
                          eval_final_epoch_only=job.eval_final_epoch_only, shards=job.shards,
                          **hooks)


def can_train_together(models: Sequence[torch.nn.Module]) -> bool:
    """Whether these models have a batched split (moola.models.batched)."""
    return split_for(models) is not None


def replica_threads(setting: int, device: torch.device) -> int:
    """Threads for the replicas' LSTM kernels: `setting`, or (0) the cores this process may use;
    one on an accelerator, where kernels queue on one device."""
    if torch.device(device).type != "cpu":
        return 1
    return int(setting) if setting > 0 else worker_threads(device)


class _ReplicaOptimizer:
    """The optimizer one replica's Trainer sees: its own parameter groups (those of the AdamW it
    would train with alone, so that its checkpoints have that optimizer's format and resume
    either way) over state held by the shared AdamW."""

    def __init__(self, own: torch.optim.Optimizer, shared: torch.optim.Optimizer) -> None:
        self.own, self.shared = own, shared
        self.params = [p for g in own.param_groups for p in g["params"]]

    @property
    def param_groups(self) -> list[dict]:
        return self.own.param_groups

    def state_dict(self) -> dict:
        self.own.state.clear()
        self.own.state.update({p: self.shared.state[p] for p in self.params
                               if p in self.shared.state})
        return self.own.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.own.load_state_dict(state)
        for p in self.params:
            if p in self.own.state:
                self.shared.state[p] = self.own.state[p]


def _shared_optimizer(optimizers: Sequence[torch.optim.Optimizer]) -> torch.optim.Optimizer:
    """One AdamW over every replica's parameters: groups with the same hyperparameters are
    merged (AdamW is elementwise: a parameter's update depends on its own state only), so one
    foreach call updates all replicas."""
    if any(type(opt) is not torch.optim.AdamW for opt in optimizers):
        raise TypeError("training replicas together needs AdamW, got "
                        + ", ".join(sorted({type(o).__name__ for o in optimizers})))
    merged: dict[tuple, dict] = {}
    for opt in optimizers:
        for g in opt.param_groups:
            # a group's own `foreach` (None: torch picks the one-tensor loop on the CPU)
            # would override the constructor's
            hyper = {k: v for k, v in g.items() if k not in ("params", "foreach")}
            key = tuple(sorted((k, repr(v)) for k, v in hyper.items()))
            merged.setdefault(key, {**hyper, "params": []})["params"].extend(g["params"])
    return torch.optim.AdamW(list(merged.values()), foreach=True)


class _Lane:
    """One replica in flight: its module, loader, Trainer and where it is in its epoch."""

    def __init__(self, job: ReplicaJob, device: torch.device, gate: str, hooks: dict,
                 on_done: Callable[[ClassifierFit], Any] | None) -> None:
        # its Trainer logs "[<gate> <replica>] epoch ...": replicas' lines interleave
        self.module, self.loader, self.trainer = prepare_fit(
            job.model, job.X_fit, job.y_fit, job.X_stop, job.y_stop, job.cfg, job.run_dir,
            device, f"{gate} {job.name}".strip(), epoch_hook=job.epoch_hook,
            param_groups=job.param_groups, eval_final_epoch_only=job.eval_final_epoch_only,
            **hooks)
        if len(self.loader) == 0:
            raise ValueError(f"replica {job.name}: no training windows; nothing to train on")
        # the generator its model's dropout draws from when it trains alone (torch's default,
        # seeded with the replica's seed right before training) - here its own
        self.dropout = torch.Generator(device=device).manual_seed(int(job.cfg.run.seed))
        self.trainer.dropout_generator = self.dropout
        self.own_optimizer = self.module.configure_optimizer()
        self.epoch = 0
        self.batches: Iterable | None = None
        self.index = 0  # batches taken in this epoch
        self.stopped: str | None = None
        self.result: ClassifierFit | None = None
        self.on_done = on_done


def fit_together(jobs: Sequence[ReplicaJob], device: torch.device, gate: str, *,
                 threads: int = 1, status: Any = None, resume: bool = True,
                 on_checkpoint: Callable[[], Any] | None = None,
                 on_eval: Callable[[dict], Any] | None = None,
                 on_done: Callable[[int, ClassifierFit], Any] | None = None
                 ) -> list[ClassifierFit]:
    """Train every job's replica together (see the module docstring); one
    :class:`ClassifierFit` per job, in order, best weights loaded, as ``fit_classifier``
    returns. `status` (a StatusWriter) shows the replicas' progress; `threads` runs the LSTM
    kernels of that many replicas at once; `on_done(i, fit)` runs as soon as job i is over
    (the others may still train), e.g. to save it."""
    device = torch.device(device)
    split = split_for([j.model for j in jobs])
    if split is None:
        raise TypeError("fit_together: these models have no batched split "
                        "(moola.models.batched); train them one at a time")
    hooks = {"on_checkpoint": on_checkpoint, "on_eval": on_eval}
    t_start = time.perf_counter()
    lanes = [_Lane(j, device, gate, hooks,
                   None if on_done is None else (lambda fit, i=i: on_done(i, fit)))
             for i, j in enumerate(jobs)]
    shared = _shared_optimizer([lane.own_optimizer for lane in lanes])
    for lane in lanes:
        lane.optimizer = _ReplicaOptimizer(lane.own_optimizer, shared)
        start, lane.resumed_from, lane.stopped = lane.trainer.begin(
            lane.module, lane.optimizer, lane.loader, resume)
        lane.epoch, lane.first_step = start, lane.trainer.step
        if not lane.stopped and start < lane.trainer.settings.max_epochs:
            _start_epoch(lane)
        else:
            _finish(lane, device, t_start)
    # a thread pool for groups of replicas: only when no trunk draws random numbers (they
    # would share torch's default generator) and there is more than one core to use
    random_trunk = any(split.trunk_draws_random(lane.module.model) for lane in lanes)
    n_threads = 1 if random_trunk else max(1, int(threads))
    pool = ThreadPoolExecutor(n_threads, thread_name_prefix="moola-replica") \
        if n_threads > 1 else None
    steps = 0
    try:
        with pool or nullcontext():
            while True:
                active = [lane for lane in lanes if lane.result is None]
                if not active:
                    break
                _step(active, split, shared, device, pool, random_trunk, n_threads)
                steps += 1
                # replicas whose epoch is over: evaluate and decide (side by side: each has
                # its own model, files and callbacks), then finish or start the next epoch
                ended = [lane for lane in active if lane.index == len(lane.loader)]
                end = lambda lane: lane.trainer.end_epoch(lane.module, lane.optimizer,  # noqa: E731
                                                          lane.epoch)
                stops = list(pool.map(end, ended)) if pool is not None and len(ended) > 1 \
                    else [end(lane) for lane in ended]
                for lane, stopped in zip(ended, stops):
                    lane.stopped, lane.epoch = stopped, lane.epoch + 1
                    if stopped or lane.epoch >= lane.trainer.settings.max_epochs:
                        _finish(lane, device, t_start)
                    else:
                        _start_epoch(lane)
                if status is not None and steps % 10 == 0:
                    _show(status, gate, lanes, t_start)
    except BaseException:
        # the replicas' Trainers write no status file (the gate's status says it failed);
        # what they finished is saved (on_done), the rest resumes from last.pt
        log.exception("[%s] training the replicas together failed", gate)
        raise
    if status is not None:
        _show(status, gate, lanes, t_start)
    log.info("[%s] %d replicas trained together in %.1f s (%d steps, %d threads)", gate,
             len(lanes), time.perf_counter() - t_start, steps, n_threads)
    return [lane.result for lane in lanes]


def _start_epoch(lane: _Lane) -> None:
    lane.trainer.start_epoch(lane.module, lane.optimizer, lane.epoch)
    lane.batches, lane.index = iter(lane.loader), 0


def _finish(lane: _Lane, device: torch.device, t_start: float) -> None:
    """Best weights back into the replica's model, its FitResult; it leaves the step."""
    stopped = lane.stopped or f"max_epochs={lane.trainer.settings.max_epochs} reached"
    result = lane.trainer.finish(lane.module, stopped, lane.resumed_from, t_start)
    lane.result = classifier_fit(lane.module, result, device)
    lane.batches = None
    if lane.on_done is not None:
        lane.on_done(lane.result)


def _show(status: Any, gate: str, lanes: Sequence[_Lane], t_start: float) -> None:
    """moola status: replicas done, training, and the gate's steps so far of its budget (a
    finished replica's budget is the steps it took; a running one's, its epoch budget)."""
    done = sum(lane.result is not None for lane in lanes)
    step = sum(lane.trainer.step for lane in lanes)
    total = sum(lane.trainer.step if lane.result is not None else (lane.trainer.total_steps or 0)
                for lane in lanes)
    elapsed = time.perf_counter() - t_start
    ran = step - sum(lane.first_step for lane in lanes)  # in this session (not before a resume)
    eta = elapsed * (total - step) / ran if ran > 0 and total >= step else None
    try:
        status.update(gate=gate, phase="train", replica=None, replica_index=None,
                      replica_count=None, step=step, total_steps=total or None, epoch=None,
                      max_epochs=None, eta_s=eta, loss=None, lr=None, throughput=None,
                      replicas_together={"done": done, "training": len(lanes) - done,
                                         "count": len(lanes)})
    except Exception:
        log.exception("[%s] could not write the status file; training continues", gate)


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    if t.shape[0] == rows:
        return t
    return torch.cat([t, t.new_zeros((rows - t.shape[0], *t.shape[1:]))])


def _groups(items: Sequence, n: int) -> list[list]:
    """`items` in at most n contiguous groups of near-equal size."""
    n = max(1, min(n, len(items)))
    size, extra = divmod(len(items), n)
    out, i = [], 0
    for g in range(n):
        j = i + size + (g < extra)
        out.append(list(items[i:j]))
        i = j
    return out


def _step(active: Sequence[_Lane], split: BatchedSplit, shared: torch.optim.Optimizer,
          device: torch.device, pool: ThreadPoolExecutor | None, random_trunk: bool,
          n_groups: int) -> None:
    """One optimizer step of every active replica: forward and backward in `n_groups` groups
    side by side (each group's head batched), then clipping and one AdamW step for all."""
    batches = {}
    for lane in active:
        x, y = next(lane.batches)
        lane.index += 1
        batches[id(lane)] = (x.to(device), y.to(device))
    shared.zero_grad(set_to_none=True)
    groups = _groups(active, n_groups if pool is not None else 1)
    # every group padded to the largest batch of this step, whichever replicas share it: a
    # group's shapes then do not depend on how many threads split the replicas (kernels pick
    # their blocking by shape, and another blocking rounds differently)
    rows = max(len(b[1]) for b in batches.values())
    work = lambda group: _forward_backward(group, batches, rows, split, device,  # noqa: E731
                                           random_trunk)
    if pool is not None and len(groups) > 1:
        losses = [loss for part in pool.map(work, groups) for loss in part]
    else:
        losses = [loss for group in groups for loss in work(group)]
    norms = _clip_per_replica(active, device)
    shared.step()
    for lane, loss, norm in zip(active, losses, norms):
        n = len(batches[id(lane)][1])
        lane.trainer.after_step(lane.module, lane.optimizer, lane.epoch, loss, n, norm,
                                lane.index == len(lane.loader))


def _forward_backward(group: Sequence[_Lane], batches: dict, rows: int, split: BatchedSplit,
                      device: torch.device, random_trunk: bool) -> list[torch.Tensor]:
    """Forward and backward of one group of replicas: each one's trunk on its own kernels, the
    head batched over the group (batches padded to `rows`), each replica's own weighted loss.
    Returns the losses."""
    models = [lane.module.model for lane in group]
    outs = []
    for lane, model in zip(group, models):
        x = batches[id(lane)][0]
        if random_trunk:  # its draws come from its own generator, as torch's default alone
            outs.append(_with_generator(lane.dropout, device, lambda: split.trunk(model, x)))
        else:
            outs.append(split.trunk(model, x))
    sizes = [len(batches[id(lane)][1]) for lane in group]
    h = torch.stack([_pad_rows(o, rows) for o in outs])
    logits = split.head(models, h, sizes, [lane.dropout for lane in group])  # (A, B, K)
    A, B, K = logits.shape
    # padding rows: class 0 with weight 0
    y = torch.stack([_pad_rows(batches[id(lane)][1], rows) for lane in group])
    mask = (torch.arange(rows, device=device)[None, :]
            < torch.tensor(sizes, device=device)[:, None]).to(logits.dtype)
    weights = torch.stack([
        lane.module.class_weights.to(device) if lane.module.class_weights is not None
        else torch.ones(K, device=device) for lane in group])  # (A, K)
    w = torch.gather(weights, 1, y) * mask  # the weighted mean cross-entropy of each replica
    ce = F.cross_entropy(logits.reshape(A * B, K), y.reshape(A * B), reduction="none").view(A, B)
    losses = (w * ce).sum(dim=1) / w.sum(dim=1)
    losses.sum().backward()  # replicas share no parameter: each gets its own loss's gradient
    return list(losses.detach())


def _clip_per_replica(active: Sequence[_Lane], device: torch.device) -> list:
    """clip_grad_norm_ for each replica's own gradients (its global norm), in foreach calls.
    Returns each replica's norm before clipping (None when clipping is off)."""
    max_norm = active[0].trainer.settings.grad_clip
    if max_norm <= 0:
        return [None] * len(active)
    grads, owner = [], []
    for i, lane in enumerate(active):
        for p in lane.optimizer.params:
            if p.grad is not None:
                grads.append(p.grad)
                owner.append(i)
    if not grads:
        return [None] * len(active)
    norms = torch._foreach_norm(grads)  # what clip_grad_norm_ computes, for all at once
    per = [[] for _ in active]
    for n, i in zip(norms, owner):
        per[i].append(n)
    totals = [torch.linalg.vector_norm(torch.stack(ns)) if ns else None for ns in per]
    coefs = [None if t is None else torch.clamp(max_norm / (t + 1e-6), max=1.0) for t in totals]
    torch._foreach_mul_(grads, [coefs[i] for i in owner])
    return totals


def _with_generator(gen: torch.Generator, device: torch.device, fn: Callable[[], Any]) -> Any:
    """Run fn with torch's default generator (of `device`) in `gen`'s state, then carry the
    state back: a trunk that draws random numbers inside a kernel (nn.LSTM's dropout between
    layers) draws the replica's own stream. Sequential use only."""
    if device.type == "cpu":
        get, put = torch.get_rng_state, torch.set_rng_state
    else:
        get = lambda: torch.cuda.get_rng_state(device)  # noqa: E731
        put = lambda s: torch.cuda.set_rng_state(s, device)  # noqa: E731
    saved = get()
    put(gen.get_state())
    try:
        return fn()
    finally:
        gen.set_state(get())
        put(saved)
