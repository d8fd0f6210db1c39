"""Compile MiniRocket's numba kernels in a background process while the first gates run.

sktime's MiniRocket compiles its numba kernels on first use: ~33 s on a 2-core machine, most of
a cold smoke chain (measured, docs/PERFORMANCE.md). numba writes them to its on-disk cache, so a
second process only loads them (~1 s). A gate session whose selection includes gate 2 and whose
numba cache looks cold therefore starts ``python -m moola.numba_warmup N_FEATURES`` when
collection ends; it compiles on the core the single-threaded training leaves idle, and
:meth:`MiniRocketControl.fit` waits for it (:func:`wait`) instead of compiling a second time.

The warm-up only fills numba's cache: results never depend on it. If it fails or is not started,
the control compiles in-process as before.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

WAIT_LIMIT_S = 600.0  # past this the control compiles itself (a stuck warm-up must not hang)
_pending: subprocess.Popen | None = None


def _kernel_module(n_features: int) -> str:
    # MiniRocketControl uses MiniRocket for one channel and MiniRocketMultivariate otherwise
    return "_minirocket_numba" if n_features == 1 else "_minirocket_multi_numba"


def cache_looks_warm(n_features: int) -> bool:
    """Whether numba's on-disk cache already holds the kernels (index files present).

    Looks where numba caches: NUMBA_CACHE_DIR when set, else ``__pycache__`` beside sktime's
    rocket sources. A stale index (other numba version) counts as warm: the control then
    compiles in-process, as it would without a warm-up.
    """
    pattern = f"{_kernel_module(n_features)}.*.nbi"
    roots = []
    if os.environ.get("NUMBA_CACHE_DIR"):
        roots.append(Path(os.environ["NUMBA_CACHE_DIR"]) / "**")
    spec = importlib.util.find_spec("sktime")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            roots.append(Path(loc) / "transformations" / "panel" / "rocket" / "__pycache__")
    return any(glob.glob(str(root / pattern), recursive=True) for root in roots)


def start(n_features: int) -> subprocess.Popen | None:
    """Start the background compile unless the cache looks warm (or one runs already).

    Returns the process this call started, or None; :func:`stop` takes it back."""
    global _pending
    if _pending is not None and _pending.poll() is None:
        return None
    if n_features < 1 or cache_looks_warm(n_features):
        return None
    try:
        _pending = subprocess.Popen(
            [sys.executable, "-m", "moola.numba_warmup", str(n_features)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:
        log.warning("numba warm-up not started (%s); MiniRocket compiles on first use", exc)
        return None
    log.info("compiling MiniRocket's numba kernels in the background (pid %d)", _pending.pid)
    return _pending


def wait(timeout: float = WAIT_LIMIT_S) -> None:
    """Block until a running warm-up ends (at most `timeout` s); a no-op when none runs."""
    global _pending
    proc, _pending = _pending, None
    if proc is None:
        return
    t0 = time.perf_counter()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        log.warning("numba warm-up still running after %.0f s; killed, compiling in-process",
                    timeout)
        return
    if code != 0:
        log.warning("numba warm-up exited with code %s; MiniRocket compiles in-process", code)
    elif time.perf_counter() - t0 > 1:
        log.info("waited %.1f s for the numba warm-up", time.perf_counter() - t0)


def stop(proc: subprocess.Popen) -> None:
    """End the warm-up `proc` (started by :func:`start`) if nobody waited for it: its session
    is over. Only the session that started a warm-up stops it."""
    global _pending
    if _pending is proc:
        _pending = None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the transform MiniRocketControl.fit uses once on tiny random data: every kernel it
    needs is compiled and cached (numba specialises on types, not on sizes or kernel counts).

    Imports sktime directly, not moola.models, which would load torch for nothing.
    """
    import numpy as np
    from sktime.transformations.panel.rocket import MiniRocket, MiniRocketMultivariate

    args = sys.argv[1:] if argv is None else argv
    n_features = int(args[0]) if args else 4
    panel = np.random.default_rng(0).normal(size=(8, n_features, 36))  # numpy3D (n, F, T)
    cls = MiniRocket if n_features == 1 else MiniRocketMultivariate
    cls(num_kernels=84, random_state=0, n_jobs=1).fit(panel).transform(panel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
