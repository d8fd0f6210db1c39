"""Run the real gate suite in a scratch project: shared by moola's tests and benchmarks.

A scratch project is a directory laid out like the repository's gate suite (a conftest that
registers the plugin, an ini file, copies of ``gates_tests/test_gate_*.py``) with its own
``reports/`` and ``.moola-cache/``. Sessions in it are real pytest sessions on the same files a
user runs. Needs a source checkout (``gates_tests/`` beside the ``moola`` package).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GATES_TESTS = REPO / "gates_tests"
SMOKE_DATA = REPO / "fixtures" / "smoke"
RESULTS = "gated_workflow_results.jsonl"
# importlib mode: a session that already imported gates_tests/test_gate_*.py (the outer test
# run) would otherwise refuse to import copies with the same basenames
SUITE_INI = ("[pytest]\naddopts = --ignore-unknown-dependency "
             "--import-mode=importlib\n")


# a user's conftest for a scratch project: gate 4 fails on request (environment FAIL_GATE_4=1),
# to test what a failed upstream gate does to the gates and fixtures after it
FAILING_GATE_4_CONFTEST = """\
import os
from dataclasses import replace

pytest_plugins = ["moola.plugin"]

if os.environ.get("FAIL_GATE_4"):
    from moola.gates import builtin, verdict
    from moola.gates.registry import REGISTRY

    spec = REGISTRY["gate_4_finetune_enhanced"]
    REGISTRY._specs[spec.name] = replace(
        spec, judge=lambda: verdict(False, "pretraining hurts (forced by the test)"))
"""


def write_gate_suite(root: Path) -> Path:
    """Make `root` a scratch gate project (works for pytester's directory too)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "conftest.py").write_text('pytest_plugins = ["moola.plugin"]\n')
    (root / "pytest.ini").write_text(SUITE_INI)
    for f in GATES_TESTS.glob("test_*.py"):  # the gates and the decision
        shutil.copyfile(f, root / f.name)
    return root


def run_gate_session(root: Path, *args: str, env: dict[str, str] | None = None,
                     timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m pytest -q -rs ARGS` in `root` as a subprocess (output captured)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", *args]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout,
                          env=env)


def read_results(root: Path) -> list[dict[str, Any]]:
    """Every record of the scratch project's results log (no file: empty list)."""
    path = root / "reports" / RESULTS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cache_events(root: Path, run_id: str | None = None) -> list[dict[str, Any]]:
    """The cache's hit/build events, optionally those of one run."""
    path = root / ".moola-cache" / "events.jsonl"
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if run_id is None or e["run_id"] == run_id]


def random_ohlc(n: int = 12, T: int = 40, seed: int = 0, zscore: bool = True) -> np.ndarray:
    """Valid random-walk OHLC bars (n, T, 4), optionally z-scored per window (pooled)."""
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 1, (n, T)), axis=1)
    open_ = np.concatenate([close[:, :1], close[:, :-1]], axis=1) + rng.normal(0, 0.2, (n, T))
    high = np.maximum(open_, close) + np.abs(rng.normal(0, 0.5, (n, T)))
    low = np.minimum(open_, close) - np.abs(rng.normal(0, 0.5, (n, T)))
    X = np.stack([open_, high, low, close], axis=-1)
    if zscore:
        X = (X - X.mean(axis=(1, 2), keepdims=True)) / X.std(axis=(1, 2), keepdims=True)
    return X.astype(np.float32)


def judged(ctx, gate: str, upstream=None):
    """A gate's verdict with its artifacts resolved as the runner resolves them (no upstream
    gate judged first): for tests that judge one gate on prepared work."""
    from moola.gates.registry import REGISTRY, call_judge

    return call_judge(ctx, REGISTRY[gate], upstream or {})


def write_easy_trend(out: Path, seed: int) -> Path:
    """A dataset every model reads perfectly (a known answer, docs/JUDGING.md): 98 windows of
    105 steps, a random walk (steps of sd 1) plus a drift of +0.5 or -0.5 per step by class
    (about 52 against the walk's sd of about 10 over a window); unlabeled: 2,000 driftless
    walks. Whatever the architecture the answer is "level": the deep baseline with MiniRocket
    (gate 2 may pass), SimpleLSTM with the pretrained model (gate 6 must not call it beaten).
    Written through `moola data from-numpy`, as a user's arrays would be."""
    rng = np.random.default_rng(seed)
    n, t = 98, 105
    y = rng.permutation(np.arange(n) % 2)
    X = _trending_walks(rng, np.where(y == 1, 0.5, -0.5), t)
    U = _trending_walks(rng, np.zeros(2000), t)
    return _from_numpy(out, X[..., None], np.array(["down", "up"])[y], U[..., None], ["close"])


def write_split_views(out: Path, seed: int, n: int = 300, views: int = 7,
                      flip: float = 0.25, t: int = 60, independent: bool = True) -> Path:
    """Members that err on different windows, by construction (gate 7's known answer,
    docs/JUDGING.md): `n` windows of `views` channels; each channel is a random walk whose
    drift (+0.5 or -0.5 per step, plain to any model) gives the label flipped with
    probability `flip`, independently per channel and window. A model reading one channel
    can score at best 1 - flip (0.75); the majority of the `views` channels is right with
    probability P(Binomial(views, 1 - flip) > views / 2) (0.929 for the default 7 at 0.25),
    so an ensemble of one-channel members beats its best member by about 0.15-0.18.
    `independent=False` flips every channel of a window together: the members err on the same
    windows and an ensemble gains nothing (the control). Unlabeled: 500 driftless walks.
    Written through `moola data from-numpy`."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    flipped = rng.random((n, views if independent else 1)) < flip
    seen = np.where(flipped, 1 - y[:, None], y[:, None]) * np.ones((1, views), dtype=int)
    X = np.stack([_trending_walks(rng, np.where(seen[:, c] == 1, 0.5, -0.5), t)
                  for c in range(views)], axis=2)
    U = np.stack([_trending_walks(rng, np.zeros(500), t) for _ in range(views)], axis=2)
    return _from_numpy(out, X, np.array(["down", "up"])[y], U,
                       [f"view{c}" for c in range(views)])


# gate 7's split-views known answer: the one-channel members (user gates) and the setting that
# leaves the built-in models out (they read every channel: the majority itself)
ONE_VIEW_MEMBERS = REPO / "bench" / "known_gates" / "test_gate_8_one_view_members.py"
ONLY_VIEW_MEMBERS_CONFIG = ('[gates]\nskip = ["gate_1_smoke_enhanced", '
                            '"gate_2_control_minirocket", "gate_3_pretrain_bilstm"]\n')
# one training seed per fold: where a known answer is plain without seed averaging, it halves
# a smoke chain's training (the smoke known-answer tests)
ONE_SEED_PER_FOLD = "[protocol]\nseeds = 1\n"


def _trending_walks(rng: np.random.Generator, drift: np.ndarray, t: int) -> np.ndarray:
    """(len(drift), t): 100 + a random walk of unit steps + drift[i] per step."""
    steps = rng.normal(0, 1, (len(drift), t))
    return 100 + np.cumsum(steps, axis=1) + drift[:, None] * np.arange(t)[None, :]


def _from_numpy(out: Path, X: np.ndarray, y: np.ndarray, U: np.ndarray,
                features: list[str]) -> Path:
    """Write arrays as a dataset with `moola data from-numpy`, as a user would."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, a in (("X", X), ("y", y), ("U", U)):
            np.save(Path(tmp) / f"{name}.npy", a)
        subprocess.run([sys.executable, "-m", "moola.cli", "data", "from-numpy",
                        f"{tmp}/X.npy", f"{tmp}/y.npy", "--unlabeled", f"{tmp}/U.npy",
                        "--out", str(out), "--feature-names", ",".join(features)],
                       check=True, capture_output=True, text=True, timeout=300)
    return Path(out)
