"""What keeps a gate session's fixed costs down: no torch._inductor import, gc freezing, the
numba warm-up's bookkeeping. (Their speed is measured in bench/, never asserted here.)"""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from moola import numba_warmup
from moola.gates import gc_freeze


def test_seed_everything_does_not_import_inductor_unless_deterministic():
    code = ("import sys, torch; from moola.train.device import seed_everything; "
            "seed_everything(3); a = 'torch._inductor.config' in sys.modules; "
            "seed_everything(3, deterministic=True); "
            "b = torch.are_deterministic_algorithms_enabled(); "
            "seed_everything(3); print(a, b, torch.are_deterministic_algorithms_enabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "False"]


def test_only_the_outermost_session_freezes(monkeypatch):
    calls = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc_freeze, "_depth", 0)
    gc_freeze.session_configured()  # outer session
    gc_freeze.session_configured()  # a pytester session inside it
    gc_freeze.session_finished()
    gc_freeze.session_unconfigured()
    assert calls == ["freeze"]  # the inner session froze nothing
    gc_freeze.session_finished()
    assert calls == ["freeze", "freeze"]
    gc_freeze.session_unconfigured()
    assert gc_freeze._depth == 0


def test_cache_looks_warm_finds_numba_index_files(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(numba_warmup.importlib.util, "find_spec", lambda name: None)
    assert not numba_warmup.cache_looks_warm(4)
    d = tmp_path / "rocket_0123"
    d.mkdir()
    (d / "_minirocket_multi_numba._transform_multi-476.py311.nbi").write_bytes(b"")
    assert numba_warmup.cache_looks_warm(4)
    assert not numba_warmup.cache_looks_warm(1)  # univariate data needs MiniRocket's kernels


def test_start_does_nothing_when_the_cache_is_warm(monkeypatch):
    monkeypatch.setattr(numba_warmup, "cache_looks_warm", lambda n: True)
    monkeypatch.setattr(numba_warmup, "_pending", None)
    assert numba_warmup.start(4) is None and numba_warmup._pending is None


def test_wait_blocks_until_the_warmup_ends(monkeypatch):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    monkeypatch.setattr(numba_warmup, "_pending", proc)
    numba_warmup.wait()
    assert proc.returncode == 0 and numba_warmup._pending is None
    numba_warmup.wait()  # nothing pending: a no-op


def test_a_stuck_warmup_is_killed_after_the_limit(monkeypatch, caplog):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(numba_warmup, "_pending", proc)
    numba_warmup.wait(timeout=0.2)
    assert proc.returncode is not None and "killed, compiling in-process" in caplog.text


def test_stop_ends_a_warmup_nobody_waited_for(monkeypatch):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(numba_warmup, "_pending", proc)
    numba_warmup.stop(proc)
    assert proc.returncode is not None and numba_warmup._pending is None


def test_stop_leaves_another_sessions_warmup_pending(monkeypatch):
    mine = subprocess.Popen([sys.executable, "-c", "pass"])
    theirs = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(numba_warmup, "_pending", theirs)
    numba_warmup.stop(mine)
    assert numba_warmup._pending is theirs and theirs.poll() is None
    numba_warmup.stop(theirs)


@pytest.mark.parametrize("n_features", [1, 3])
def test_warmup_main_runs_the_transform_it_caches(n_features, monkeypatch):
    calls = []

    class Fake:
        def __init__(self, **kw):
            calls.append((type(self).__name__, kw))

        def fit(self, X):
            calls.append(("fit", X.shape))
            return self

        def transform(self, X):
            calls.append(("transform", X.shape))

    rocket = pytest.importorskip("sktime.transformations.panel.rocket")
    monkeypatch.setattr(rocket, "MiniRocket", type("MiniRocket", (Fake,), {}))
    monkeypatch.setattr(rocket, "MiniRocketMultivariate", type("MiniRocketMultivariate", (Fake,), {}))
    assert numba_warmup.main([str(n_features)]) == 0
    expected = "MiniRocket" if n_features == 1 else "MiniRocketMultivariate"
    assert calls[0][0] == expected and calls[1] == ("fit", (8, n_features, 36))
