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
from collections import OrderedDict
from pathlib import Path

LINE = re.compile(r"^([\d.]+)s (setup|call|teardown)\s+(\S+)$", re.M)


def module_costs(log: str) -> "OrderedDict[str, list[float]]":
    """Each module's tests' durations (setup + call + teardown), in the log's order."""
    per_test: dict[str, float] = {}
    for seconds, _, nodeid in LINE.findall(log):
        per_test[nodeid] = per_test.get(nodeid, 0.0) + float(seconds)
    modules: OrderedDict[str, list[float]] = OrderedDict()
    # modules in alphabetical order (pytest collects a directory's files so; the tests within a
    # module are kept in the log's order, which only breaks ties in the simulation)
    for nodeid in sorted(per_test, key=lambda n: n.split("::")[0]):
        modules.setdefault(nodeid.split("::")[0], []).append(per_test[nodeid])
    return modules


def finish_times(modules: list[list[float]], workers: int) -> list[float]:
    """Each worker's finish time when the modules are handed out in this order."""
    queue, clock = list(modules), [0.0] * workers
    pending: list[list[float]] = [[] for _ in range(workers)]
    for w in range(workers):  # one module each, then a second while two or fewer are pending
        if queue:
            pending[w] += queue.pop(0)
    for w in range(workers):
        if queue and len(pending[w]) <= 2:
            pending[w] += queue.pop(0)
    while any(pending):
        w = min((k for k in range(workers) if pending[k]), key=lambda k: clock[k])
        clock[w] += pending[w].pop(0)
        if queue and len(pending[w]) <= 2:
            pending[w] += queue.pop(0)
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
