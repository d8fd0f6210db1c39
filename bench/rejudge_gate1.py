"""Re-judge gate 1 from cached baseline artifacts (no training): one line per artifact.

Walks ``.moola-cache/baseline/*/`` and, for each dataset given, the artifacts whose scored
windows and labels match that dataset's walk-forward folds; prints the artifact's seeds, the
gate-1 status and pooled macro-F1 under the current judging code and configuration. This is
what a threshold change does in a gate session (judging is recomputed from cached work).

    python bench/rejudge_gate1.py data/synthetic data/GunPoint
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moola.cache import CacheEntry  # noqa: E402
from moola.config import load_config  # noqa: E402
from moola.gates import work  # noqa: E402
from moola.gates.context import GateContext  # noqa: E402
from moola.testing import judged


def main(datasets: list[str]) -> None:
    cache = Path(".moola-cache/baseline")
    for data in datasets:
        ctx = GateContext(cfg=load_config("standard", overrides={"run.data": data}),
                          run_id="rejudge")
        folds = work.folds(ctx)
        score_idx = np.concatenate([f.score_idx for f in folds])
        y = ctx.dataset.y[score_idx]
        rows = []
        for d in sorted(cache.glob("*/pooled.npz")):
            with np.load(d) as z:
                if not (np.array_equal(z["score_idx"], score_idx) and np.array_equal(z["y"], y)):
                    continue
            manifest = json.loads((d.parent / "manifest.json").read_text())
            entry = CacheEntry("baseline", d.parent.name, d.parent, True, manifest)
            w = work.load_classifier(entry)
            work_baseline, work.baseline = work.baseline, (lambda ctx, w=w: w)
            try:
                v = judged(ctx, "gate_1_smoke_enhanced")
            finally:
                work.baseline = work_baseline
            rows.append((int(w["seeds"][0]), v.status, v.metrics["macro_f1"],
                         v.metrics["skill_p_value"]))
        for seed, status, f1, p in sorted(rows):
            print(f"{data}\tseed {seed}\t{status}\tmacro_f1={f1:.3f}\tskill_p={p:.4f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
