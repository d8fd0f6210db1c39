"""Time-limited evaluation on a snapshot, in a worker thread (no signals)."""

import threading
import time

import pytest
import torch

from moola.train.eval_timeout import evaluate_snapshot, run_with_timeout


def test_returns_result_in_time():
    assert run_with_timeout(lambda: 42, timeout=5) == (42, False)


def test_abandons_slow_call_without_waiting():
    release = threading.Event()
    t0 = time.perf_counter()
    result, timed_out = run_with_timeout(lambda: release.wait(10), timeout=0.1)
    release.set()
    assert (result, timed_out) == (None, True)
    assert time.perf_counter() - t0 < 2


def test_exception_is_reraised_not_a_timeout():
    def bad():
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError, match="boom"):
        run_with_timeout(bad, timeout=5)


def test_works_off_the_main_thread():
    out = {}
    worker = threading.Thread(target=lambda: out.update(r=run_with_timeout(lambda: 7, timeout=5)))
    worker.start()
    worker.join(10)
    assert out["r"] == (7, False)


def test_snapshot_isolates_training_weights():
    model = torch.nn.Linear(2, 1)
    model.train()
    before = model.weight.detach().clone()
    seen = {}

    def evaluate(snap, device):
        seen.update(grad=torch.is_grad_enabled(), training=snap.training, same=snap is model)
        with torch.no_grad():
            snap.weight.add_(100.0)  # a misbehaving evaluation
        return {"loss": 1.0}

    outcome = evaluate_snapshot(evaluate, model, torch.device("cpu"), timeout=5)
    assert outcome.metrics == {"loss": 1.0} and not outcome.timed_out
    assert seen == {"grad": False, "training": False, "same": False}
    assert torch.equal(model.weight, before) and model.training


def test_worker_is_reused_until_abandoned():
    names = [run_with_timeout(lambda: threading.current_thread().name, timeout=5)[0]
             for _ in range(3)]
    assert len(set(names)) == 1 and names[0] != threading.current_thread().name
    release = threading.Event()
    assert run_with_timeout(lambda: release.wait(10), timeout=0.1) == (None, True)
    fresh, timed_out = run_with_timeout(lambda: threading.current_thread().name, timeout=5)
    release.set()
    assert not timed_out and fresh != names[0]  # the abandoned worker is not waited for


def test_each_calling_thread_has_its_own_worker():
    # a caller must never queue behind another thread's (possibly hanging) evaluation
    release = threading.Event()
    out = {}
    blocker = threading.Thread(target=lambda: run_with_timeout(lambda: release.wait(10), None))
    blocker.start()
    worker = threading.Thread(target=lambda: out.update(r=run_with_timeout(lambda: 7, timeout=5)))
    worker.start()
    worker.join(10)
    release.set()
    blocker.join(10)
    assert out["r"] == (7, False)
