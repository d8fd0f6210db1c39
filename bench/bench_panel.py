"""Benchmark `moola panel`: N chains on a 2-worker LocalCluster against the same chains one
after another in one process, and the engine's overhead per task.

    .venv/bin/python bench/bench_panel.py [--chains 8] [--workers 2] [--repeats 3]
                                          [--profile smoke] [-k EXPR] [--data fixtures/smoke]

The chains are the given dataset at seeds 1..N, every gate (or -k), each at --torch-threads 1
(both ways). One after another: the bench process runs each chain's task function
(`moola.panel.run_task`: the same pytest subprocess a worker runs) in a loop, no Dask. On the
cluster: `moola.panel.run_panel` with a fresh --out, so every chain runs; the cluster's start
and stop are part of its wall time. The two ways alternate (sequential, panel, sequential, ...)
so that the machine's drift hits both alike; every number is the median of --repeats.

Printed: the wall times and their ratio (panel / sequential), the engine's overhead per task,
(panel wall - sum of the tasks' walls / workers) / tasks, where a task's wall is the chain's
subprocess as its worker timed it; and whether the panel's verdicts equal the sequential ones
(same dataset, seed, profile). Runs in a scratch project (moola.testing.write_gate_suite) with
a warm numba cache. Not a test: the machines are shared and noisy; read ratios from one run.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moola.panel import PanelSettings, TaskSpec, run_panel, run_task
from moola.testing import REPO, SMOKE_DATA, write_gate_suite


def verdicts(results: list[dict]) -> dict[tuple[int, str], str]:
    return {(res["seed"], r["gate"]): r["status"] for res in results for r in res["records"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("-k", default=None, help="gates (default: every gate and the decision)")
    ap.add_argument("--data", default=str(SMOKE_DATA))
    args = ap.parse_args()

    os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba-cache"))
    root = write_gate_suite(Path(tempfile.mkdtemp(prefix="bench_panel_")))
    settings = PanelSettings(profile=args.profile, k=args.k, gates=".")
    data = str(Path(args.data).resolve())
    seeds = list(range(1, args.chains + 1))
    specs = lambda: [TaskSpec(args.data, data, s, str(root), settings, torch_threads=1)  # noqa: E731
                     for s in seeds]

    # warm-up (not timed): numba's kernels compiled, imports in the page cache
    warm = run_task(specs()[0])
    if warm["state"] != "ran":
        print(warm.get("log_tail"), file=sys.stderr)
        return 1

    seq_walls, panel_walls, overheads, task_sums, seq_cpu, panel_cpu = [], [], [], [], [], []
    same = True
    for i in range(args.repeats):
        t0 = time.perf_counter()
        seq = [run_task(spec) for spec in specs()]
        seq_walls.append(time.perf_counter() - t0)
        seq_cpu.append(sum(r["cpu_s"] or 0 for r in seq))
        print(f"repeat {i + 1}: one after another {seq_walls[-1]:.1f} s (chains' CPU "
              f"{seq_cpu[-1]:.1f} s)", flush=True)

        out = root / f"panel-out-{i}"
        t0 = time.perf_counter()
        panel = run_panel([args.data], seeds, out, settings=settings, workers=args.workers,
                          torch_threads=1, project=root, log=io.StringIO())
        wall = time.perf_counter() - t0
        panel_walls.append(wall)
        task_sum = sum(c["wall_s"] for c in panel["chains"])
        task_sums.append(task_sum)
        panel_cpu.append(sum(c.get("cpu_s") or 0 for c in panel["chains"]))
        overheads.append((wall - task_sum / args.workers) / len(seeds))
        crashed = [c for c in panel["chains"] if c["state"] != "ran"]
        by_chain = {(r["seed"], r["gate"]): r["status"] for r in panel["rows"]}
        same = same and not crashed and by_chain == verdicts(seq)
        print(f"repeat {i + 1}: panel ({args.workers} workers) {wall:.1f} s; tasks' walls "
              f"{task_sum:.1f} s; chains' CPU {panel_cpu[-1]:.1f} s; overhead/task {overheads[-1]:+.2f} s; verdicts equal: "
              f"{by_chain == verdicts(seq)}", flush=True)
        shutil.rmtree(out, ignore_errors=True)

    med = statistics.median
    print()
    print(f"{args.chains} chains, profile {args.profile}, -k {args.k or '(all gates)'}, "
          f"data {args.data}, --torch-threads 1, {os.cpu_count()} cores; median of {args.repeats}")
    print(f"{'one after another, one process':40s} {med(seq_walls):8.1f} s   "
          f"({', '.join(f'{w:.1f}' for w in seq_walls)})")
    print(f"{f'panel, LocalCluster of {args.workers} workers':40s} {med(panel_walls):8.1f} s   "
          f"({', '.join(f'{w:.1f}' for w in panel_walls)})")
    ratios = [p / s for p, s in zip(panel_walls, seq_walls)]
    print(f"{'ratio panel / one after another':40s} {med(panel_walls) / med(seq_walls):8.3f}     "
          f"(per repeat: {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"{'engine overhead per task':40s} {med(overheads):+8.2f} s   "
          f"({', '.join(f'{o:+.2f}' for o in overheads)}; sum of tasks' walls "
          f"{', '.join(f'{t:.1f}' for t in task_sums)} s)")
    print(f"{'mean chain wall, sequential':40s} {med(seq_walls) / args.chains:8.1f} s")
    # the cores the chains actually got: CPU seconds over wall seconds (another user's load
    # on a shared machine takes the rest)
    print(f"{'chains CPU s: sequential / panel':40s} {med(seq_cpu):8.1f} / {med(panel_cpu):.1f}")
    print(f"{'cores used: sequential / panel':40s} {med(seq_cpu) / med(seq_walls):8.2f} / "
          f"{med(panel_cpu) / med(panel_walls):.2f}  (of {os.cpu_count()})")
    print(f"{'verdicts equal (every repeat)':40s} {'yes' if same else 'NO'}")
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime at the end: {load}")
    shutil.rmtree(root, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
