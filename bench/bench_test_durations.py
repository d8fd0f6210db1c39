"""Where the test suite's time goes: per-module totals from a `--durations=0` log, and the
finish time of each pytest-xdist worker under `--dist loadfile`, simulated (xdist's default
order: the modules with the most tests first).

    .venv/bin/pytest moola/tests gates_tests --profile smoke -n auto --dist loadfile \\
        --durations=0 --durations-min=0 > tests.log
    .venv/bin/python bench/bench_test_durations.py tests.log [--workers 2] [--top 20]

The simulation follows xdist's LoadScopeScheduling: each worker starts with one module, is sent
the next whenever two or fewer of its tests are pending, and runs its tests in order. It leaves
out the session's start (and, without --durations-min=0, the phases under 5 ms, which also
undercounts each module's tests), so it runs a little short of the measured wall time; use it
to compare orders or to find the modules worth shrinking.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

LINE = re.compile(r"^([\d.]+)s (setup|call|teardown)\s+(\S+)$", re.M)


def module_costs(log: str) -> dict[str, list[float]]:
    """Each module's tests' durations (setup + call + teardown). Modules in alphabetical order
    (pytest collects a directory's files so); a module's tests in the log's order, which only
    breaks ties in the simulation."""
    per_test: dict[str, float] = {}
    for seconds, _, nodeid in LINE.findall(log):
        per_test[nodeid] = per_test.get(nodeid, 0.0) + float(seconds)
    modules: dict[str, list[float]] = {}
    for module, seconds in sorted(((n.split("::")[0], s) for n, s in per_test.items()),
                                  key=lambda ms: ms[0]):
        modules.setdefault(module, []).append(seconds)
    return modules


def finish_times(modules: list[list[float]], workers: int) -> list[float]:
    """Each worker's finish time when the modules are handed out in this order."""
    queue, clock = list(modules), [0.0] * workers
    pending: list[list[float]] = [[] for _ in range(workers)]

    def top_up(w: int) -> None:  # xdist sends the next module when <= 2 tests are pending
        if queue and len(pending[w]) <= 2:
            pending[w] += queue.pop(0)

    for _ in range(2):  # one module each, then a second one each
        for w in range(workers):
            top_up(w)
    while any(pending):
        w = min((k for k in range(workers) if pending[k]), key=lambda k: clock[k])
        clock[w] += pending[w].pop(0)
        top_up(w)
    return clock


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--top", type=int, default=20)
    a = ap.parse_args()
    modules = module_costs(a.log.read_text())
    total = sum(map(sum, modules.values()))
    print(f"{total:.0f} worker-seconds in {len(modules)} modules; "
          f"{total / a.workers:.0f} s if {a.workers} workers split them evenly")
    for name, cost in sorted(modules.items(), key=lambda kv: -sum(kv[1]))[:a.top]:
        print(f"{sum(cost):7.1f} s  {len(cost):3d} tests  {name}")
    default = sorted(modules.values(), key=len, reverse=True)  # xdist: most tests first
    print("simulated finish per worker (xdist's default order):",
          ", ".join(f"{t:.0f} s" for t in finish_times(default, a.workers)))


if __name__ == "__main__":
    main()
