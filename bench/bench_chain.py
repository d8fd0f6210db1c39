"""Benchmark the gate chain as a user runs it (real pytest sessions), printing a table.

    .venv/bin/python bench/bench_chain.py [--repeats 3] [--standard] [--skip-smoke]

Measures, each as the median of --repeats runs:
  * the smoke chain 0-7, cold (fresh moola cache, fresh numba cache) and warm (numba compiled);
  * each gate's share of the chain (from the results log's duration_s);
  * `pytest -k gate_6` with a warm cache vs gate 6's own training time (its artifact's build_s);
  * with --standard: the standard chain 0-7 on the synthetic seed-scale data (98 labeled,
    11,873 unlabeled), once per repeat; with --alone too, once more per repeat with each
    gate's replicas trained one after another (train.replicas_together = false) instead of
    together.
Timings are wall-clock seconds of whole sessions, including interpreter start and imports.
Not a test: the machines are shared and noisy, so read ratios taken in the same run.

The last column repeats the single-split figures (one split, one seed, before the repeated
walk-forward protocol of docs/JUDGING.md) measured with this script on commit 744e039 on the
same kind of machine, so the protocol's cost reads off one table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moola.testing import REPO, read_results, write_gate_suite


# single split, one seed (commit 744e039, README "Figures" of 2026-11-22), seconds
SINGLE_SPLIT = {
    "smoke chain 0-7, cold (fresh cache + numba)": 49.2,
    "smoke chain 0-7, warm (numba compiled)": 18.2,
    "pytest -k gate_6, warm moola cache": 6.0,
    "  gate 6's own training (artifact build_s)": 1.8,
    "standard chain 0-7, seed-scale synthetic": 130.1,
    "standard:gate_2_control_minirocket": 23.0,
    "standard:gate_3_pretrain_bilstm": 55.0,
    "standard:gate_7_ensemble": 25.0,
}


def ref(name: str) -> str:
    v = SINGLE_SPLIT.get(name)
    return f"{v:7.1f}" if v is not None else "      -"


def session(root: Path, numba_cache: Path, *args: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(numba_cache))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *args],
                       cwd=root, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"session {args} failed (exit {r.returncode})")
    return dt


def last_run(root: Path) -> list[dict]:
    recs = read_results(root)
    rid = recs[-1]["run_id"]
    return [r for r in recs if r["run_id"] == rid]


def build_seconds(root: Path, kind: str) -> float:
    """build_s of the newest complete artifact of `kind` in the scratch cache."""
    manifests = sorted((root / ".moola-cache" / kind).glob("*/manifest.json"),
                       key=lambda p: json.loads(p.read_text())["built_at"])
    return json.loads(manifests[-1].read_text())["build_s"]


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.1f}" if xs else "      -"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--standard", action="store_true", help="also time the standard chain")
    ap.add_argument("--skip-smoke", action="store_true")
    ap.add_argument("--alone", action="store_true",
                    help="with --standard: also the standard chain with replicas one after another")
    args = ap.parse_args(argv)
    smoke = ["--profile", "smoke", f"--data={REPO / 'fixtures' / 'smoke'}"]
    rows: list[tuple[str, list[float]]] = []
    shares: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_smoke:
            cold, warm, k6, own6 = [], [], [], []
            for i in range(args.repeats):
                root = write_gate_suite(tmp / f"smoke{i}")
                numba = tmp / f"numba{i}"  # fresh: MiniRocket's kernels compile again
                cold.append(session(root, numba, *smoke))
                warm.append(session(root, numba, *smoke))
                total = sum(r["duration_s"] for r in last_run(root))
                for r in last_run(root):
                    shares.setdefault(r["gate"], []).append(100 * r["duration_s"] / total)
                k6.append(session(root, numba, *smoke, "-k", "gate_6"))
                own6.append(build_seconds(root, "simple"))
            rows += [("smoke chain 0-7, cold (fresh cache + numba)", cold),
                     ("smoke chain 0-7, warm (numba compiled)", warm),
                     ("pytest -k gate_6, warm moola cache", k6),
                     ("  gate 6's own training (artifact build_s)", own6),
                     ("  the rest (session - training; target < 5)",
                      [a - b for a, b in zip(k6, own6)])]
        if args.standard:
            data = tmp / "synthetic"
            subprocess.run([sys.executable, "-m", "moola.cli", "data", "synth", "--out",
                            str(data)], check=True, capture_output=True)
            std, alone = [], []
            for i in range(args.repeats):
                root = write_gate_suite(tmp / f"std{i}")
                std.append(session(root, tmp / "numba-std", "--profile", "standard",
                                   f"--data={data}"))
                for r in last_run(root):
                    shares.setdefault("standard:" + r["gate"], []).append(r["duration_s"])
                if args.alone:
                    root = write_gate_suite(tmp / f"alone{i}")
                    (root / "alone.toml").write_text("[train]\nreplicas_together = false\n")
                    alone.append(session(root, tmp / "numba-std", "--profile", "standard",
                                         f"--data={data}", "--gates-config", "alone.toml"))
                    for r in last_run(root):
                        shares.setdefault("alone:" + r["gate"], []).append(r["duration_s"])
            rows.append(("standard chain 0-7, seed-scale synthetic", std))
            if alone:
                rows.append(("  same, replicas one after another", alone))
    print(f"\nmachine: {os.cpu_count()} cpus, python {sys.version.split()[0]}; "
          f"median of {args.repeats} run(s), seconds\n")
    print(f"{'what':<48} {'median':>7} {'1-split':>7}  runs")
    for name, xs in rows:
        print(f"{name:<48} {med(xs)} {ref(name)}  {', '.join(f'{x:.1f}' for x in xs)}")
    if shares:
        print(f"\n{'gate':<48} {'median':>7} {'1-split':>7}")
        for gate, xs in shares.items():
            unit = "s" if gate.startswith(("standard:", "alone:")) else "% of smoke chain"
            print(f"{gate:<48} {med(xs)} {ref(gate)}  {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
