"""Full-tier evaluation with a time limit (seed 004: an evaluation that hangs must not hang
the run).

The evaluation runs on a *snapshot* of the model (``copy.deepcopy``, eval mode, gradients off)
in a daemon worker thread, reused from one evaluation to the next; the caller waits at most
`timeout` seconds for it through a ``concurrent.futures.Future``. On timeout the evaluation is abandoned: its thread may keep
running in the background, but it only holds the snapshot, so it cannot touch the weights being
trained, and being a daemon it never keeps the interpreter alive. No signals are used, so this
works off the main thread and under pytest-xdist.
"""

from __future__ import annotations

import concurrent.futures
import copy
import itertools
import logging
import queue
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch

__all__ = ["EvalOutcome", "run_with_timeout", "evaluate_snapshot", "model_snapshot",
           "abandoned_running"]

log = logging.getLogger(__name__)
_counter = itertools.count()
_abandoned: list[threading.Thread] = []  # timed-out workers, kept to report how many still run
_abandoned_lock = threading.Lock()


def abandoned_running() -> int:
    """How many abandoned evaluation threads are still running (they compete for the CPU)."""
    with _abandoned_lock:
        _abandoned[:] = [t for t in _abandoned if t.is_alive()]
        return len(_abandoned)


@dataclass
class EvalOutcome:
    """Result of one time-limited evaluation: `metrics` is None when it timed out."""

    metrics: dict[str, Any] | None
    timed_out: bool
    duration_s: float


class _Worker:
    """A daemon thread that runs submitted calls one after another.

    Reused across evaluations because a fresh thread makes each one slower: a new thread's first
    torch ops pay per-thread set-up (allocator arena, thread-local state); with one torch thread
    an evaluation on a new thread took 2-3x as long as on a reused one (measured). The serving
    loop holds only the queue, so when the owning thread's worker is dropped the finaliser
    sends the stop sentinel and the thread ends.
    """

    def __init__(self, name: str) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=_serve, args=(self.jobs,), name=name, daemon=True)
        self.thread.start()
        weakref.finalize(self, self.jobs.put, None)

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.jobs.put((fn, future))
        return future


def _serve(jobs: queue.SimpleQueue) -> None:
    while True:
        job = jobs.get()
        if job is None:  # stop: the worker was abandoned or dropped
            return
        fn, future = job
        del job
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the waiting thread, which re-raises it
                future.set_exception(exc)
        del fn, future  # hold nothing (e.g. a model snapshot) between calls


_local = threading.local()  # one worker per calling thread: callers never queue behind each other


def _worker_for_this_thread(name: str) -> _Worker:
    worker = getattr(_local, "worker", None)
    if worker is None or not worker.thread.is_alive():
        worker = _local.worker = _Worker(f"{name}-{next(_counter)}")
    return worker


def run_with_timeout(fn: Callable[[], Any], timeout: float | None,
                     name: str = "moola-eval",
                     before_limit: threading.Event | None = None) -> tuple[Any, bool]:
    """Call `fn()` on this thread's daemon worker and wait up to `timeout` seconds (None or
    <= 0: no limit).

    `before_limit`: an event `fn` sets once its setup is done (e.g. the model snapshot); the
    limit counts from then, and the caller does not go on before it (or before `fn` ends).

    Returns ``(result, False)``, or ``(None, True)`` when the limit passed first: the worker is
    then abandoned (it finishes `fn` in the background and exits) and the next call gets a new
    one. An exception raised by `fn` is re-raised here (an evaluation bug must not look like a
    timeout).
    """
    worker = _worker_for_this_thread(name)
    future = worker.submit(fn)
    if before_limit is not None:
        while not before_limit.wait(0.05) and not future.done():
            pass
    limit = timeout if timeout is not None and timeout > 0 else None
    try:
        return future.result(timeout=limit), False
    except concurrent.futures.TimeoutError:
        _local.worker = None
        worker.jobs.put(None)  # exit once the abandoned call returns
        with _abandoned_lock:
            _abandoned.append(worker.thread)
        log.warning("%s did not finish within %.3gs; abandoned (thread %s keeps running in the "
                    "background on a model snapshot)", name, timeout, worker.thread.name)
        return None, True


def model_snapshot(model: torch.nn.Module) -> torch.nn.Module:
    """An independent copy of `model` in eval mode with gradients off."""
    snap = copy.deepcopy(model)
    snap.eval()
    for p in snap.parameters():
        p.requires_grad_(False)
    return snap


def evaluate_snapshot(
    evaluate: Callable[[torch.nn.Module, torch.device], dict[str, Any]],
    model: torch.nn.Module,
    device: torch.device,
    timeout: float | None,
) -> EvalOutcome:
    """Run ``evaluate(snapshot, device)`` under ``torch.no_grad()`` with a time limit.

    The snapshot is taken by the worker thread, and this thread waits until it is taken before
    it starts counting the limit, so it holds the weights as they are now. (Copying on the
    worker matters: a model copied on one thread and run on another evaluated twice as slowly
    in our measurements, which was most of the harness's per-epoch overhead.)
    """
    taken = threading.Event()

    def call() -> dict[str, Any]:
        snap = model_snapshot(model)
        taken.set()
        with torch.no_grad():  # grad mode is per thread: set it inside the worker
            return evaluate(snap, device)

    t0 = time.perf_counter()
    metrics, timed_out = run_with_timeout(call, timeout, before_limit=taken)
    if not timed_out and not isinstance(metrics, dict):
        raise TypeError(f"validation_metrics must return a dict of metrics, got {type(metrics).__name__}")
    return EvalOutcome(metrics=metrics, timed_out=timed_out, duration_s=time.perf_counter() - t0)
