"""One model's batch cut into shards whose gradients are computed on a thread per core.

A model trained by itself on a CPU uses one core: torch's intra-op threads gain little on
batches of tens of windows (the LSTM steps through its time steps in small matrix products,
and OpenMP's fork and join is paid at each). Cut into shards, each shard's forward and backward
runs on its own thread with one torch thread each (``nn.LSTM``'s kernels release the GIL), and
the gradients are summed in shard order on the calling thread: the step does not depend on how
many threads computed the shards. Each shard's loss must be its share of the whole batch's loss
(e.g. its squared error over the batch's count), so the shards' gradients add up to the
batch's. Used by gate 3's pretraining (:class:`moola.pretrain.mae.MAEModule`) and by the
exported models' refits (:class:`moola.train.classify.ClassifierModule`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch

__all__ = ["ShardPool", "sharded_backward", "one_intra_op_thread"]


class ShardPool:
    """Up to `threads` worker threads (none for one): ``map(fn, parts)`` runs fn on each part,
    results in order. Call :meth:`close` when done (idempotent)."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="moola-shard") \
            if self.threads > 1 else None

    def map(self, fn: Callable[[Any], Any], parts: Sequence[Any]) -> list[Any]:
        if self._pool is None or len(parts) < 2:
            return [fn(p) for p in parts]
        return list(self._pool.map(fn, parts))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def sharded_backward(params: Sequence[torch.Tensor], parts: Sequence[Any],
                     loss_of: Callable[[Any], torch.Tensor], pool: ShardPool) -> torch.Tensor:
    """Each part's loss (``loss_of(part)``, a scalar) differentiated with
    ``torch.autograd.grad`` on `pool`'s threads; the gradients are summed in part order and
    accumulated into each parameter's ``.grad`` as ``backward()`` accumulates. Returns the sum
    of the parts' losses, detached."""
    params = list(params)

    def shard(part: Any):
        loss = loss_of(part)
        return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)

    results = pool.map(shard, parts)
    for i, p in enumerate(params):
        grads = [g[i] for _, g in results if g[i] is not None]
        if grads:
            total = grads[0].clone()
            for g in grads[1:]:
                total += g
            p.grad = total if p.grad is None else p.grad.add_(total)
    return torch.stack([loss for loss, _ in results]).sum()


@contextmanager
def one_intra_op_thread(active: bool) -> Iterator[None]:
    """While shards run on a thread per core (`active`), torch's intra-op thread count is 1: a
    second OpenMP thread inside each shard would only contend with the other shards. Restored
    on exit."""
    before = torch.get_num_threads()
    if active:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
