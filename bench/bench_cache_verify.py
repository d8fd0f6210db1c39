"""What verifying a cache entry's checksums costs (issue 15): each entry's files are hashed
(SHA-256) the first time a process uses the entry.

    python bench/bench_cache_verify.py [CACHE_DIR] [--repeats 5]

Prints, per kind of artifact: entries, files, bytes, and the median time to verify one entry
(page cache warm: the gates read these files right after, so the hash adds CPU, not I/O), next
to the time its build took (from the manifest).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from moola.cache import DAMAGED, MANIFEST, file_checksums, verify_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", nargs="?", default=".moola-cache")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    root = Path(args.cache)
    print(f"{'kind':<10} {'entries':>7} {'files':>6} {'MB':>8} {'verify ms':>10} {'build s':>8}")
    for kind in sorted(p for p in root.iterdir() if p.is_dir()):
        entries = [p for p in kind.iterdir() if p.name != DAMAGED and (p / MANIFEST).is_file()]
        if not entries:
            continue
        times, files, size, builds = [], 0, 0, []
        for e in entries:
            manifest = json.loads((e / MANIFEST).read_text())
            if "checksums" not in manifest:  # built before checksums: compute them to time it
                manifest["checksums"] = file_checksums(e)
            sums = manifest["checksums"]
            files += len(sums)
            size += sum(s["size"] for s in sums.values())
            builds.append(manifest.get("build_s") or 0.0)
            runs = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                assert verify_files(e, manifest) is None, e
                runs.append(time.perf_counter() - t0)
            times.append(statistics.median(runs))
        print(f"{kind.name:<10} {len(entries):>7} {files / len(entries):>6.0f} "
              f"{size / len(entries) / 1e6:>8.2f} {1e3 * statistics.median(times):>10.1f} "
              f"{statistics.median(builds):>8.1f}")
    print("(per entry: files, MB and verify ms are medians/means over the entries of a kind)")


if __name__ == "__main__":
    main()
