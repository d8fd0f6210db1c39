"""The cache plumbing under every gate's work: keys, the build of a missing entry (seeded,
with the right threads, progress shown), and the arrays and JSON an entry holds.

Used by the recipes (:mod:`moola.gates.work`), gate 7's calibration
(:mod:`moola.gates.ensemble_work`) and the refits of exported models (:mod:`moola.gates.refit`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from moola.cache import CacheEntry, code_version, make_key
from moola.gates.context import GateContext
from moola.io_utils import copy_file

# moola modules whose source is part of every trained artifact's key
TRAIN_CODE = ["models", "train", "data", "transfer", "pretrain", "augment", "pseudo", "ensemble",
              "protocol", "gates.building", "gates.work", "gates.ensemble_work"]

# torch's intra-op thread count when the gates' work is first imported (run.torch_threads, if
# set, is applied before). Every build runs with it: numba, inside sktime's MiniRocket (gate 2),
# resets the OpenMP thread count that torch shares, and another count sums floats in another
# order, so gate 4 trained after gate 2 in one process differed from gate 4 trained alone.
_TORCH_THREADS = torch.get_num_threads()
# artifacts trained with the supervised recipe: they run with train.torch_threads
SUPERVISED_KINDS = frozenset({"baseline", "finetuned", "random_init", "augmented", "simple",
                              "ensemble", "refit"})


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------


def cache_key(ctx: GateContext, kind: str, sections: tuple[str, ...], **extra: Any) -> str:
    cfg = ctx.cfg
    run = cfg.run
    config = {s: dict(cfg.to_dict()[s]) for s in sections}
    if "train" in config:  # how many threads share the replicas changes no weight (tested);
        config["train"].pop("replica_threads", None)
        # the refit's shards change the refit only: moola.gates.refit puts them in its key
        config["train"].pop("refit_shards", None)
    return make_key(
        {
            "kind": kind,
            "config": config,
            # the seed and determinism change results; the rest of `run` does not
            "seed": run.seed,
            "deterministic": run.deterministic,
            "device": ctx.device.type,
            "data": ctx.dataset.fingerprint,
            "code": code_version(TRAIN_CODE),
            **extra,
        }
    )


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays of a cached .npz; one holding pickled objects (moola never writes any) is refused."""
    with np.load(path, allow_pickle=False) as z:  # never unpickle cached data
        try:
            return {k: z[k] for k in z.files}
        except ValueError as exc:
            if "allow_pickle" not in str(exc):
                raise
            raise ValueError(
                f"{path}: refused, it holds pickled Python objects (object arrays), which moola "
                f"never writes and never loads; the cache entry was altered - delete "
                f"{path.parent} or rerun with --rebuild") from None


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def build_entry(ctx: GateContext, gate: str, kind: str, key: str,
           build: Callable[[Path, Path], dict | None]) -> CacheEntry:
    def seeded_build(tmp: Path, workdir: Path):
        # seed before any model is constructed: weights must not depend on what ran earlier
        # in this process (other gates, cache hits or misses, xdist scheduling)
        from moola.train import seed_everything

        seed_everything(ctx.cfg.run.seed, ctx.cfg.run.deterministic)
        threads = ctx.cfg.train.torch_threads if kind in SUPERVISED_KINDS else 0
        torch.set_num_threads(threads or ctx.cfg.run.torch_threads or _TORCH_THREADS)
        return build(tmp, workdir)

    if not ctx.build_allowed:  # read what exists, never train (the session-end decision)
        found = ctx.cache.lookup(kind, key)
        if found is None:
            raise LookupError(f"the {kind} artifact for {gate} is not in the cache (its gate "
                              f"did not finish building it)")
        return found
    entry = ctx.cache.get_or_build(kind, key, seeded_build, fresh_for_run=ctx.fresh(gate))
    if entry.repaired:
        ctx.repairs.append(entry.repaired)  # the runner puts it into the verdict being judged
    _publish_run_files(ctx, gate, entry.path)
    return entry


def _publish_run_files(ctx: GateContext, gate: str, artifact: Path) -> None:
    """Copy the artifact's metrics.csv into reports/runs/<run_id>/<gate>/ for people to read."""
    src = artifact / "metrics.csv"
    if src.exists():
        copy_file(src, ctx.gate_dir(gate) / "metrics.csv")


def status_for(ctx: GateContext, gate: str):
    st = ctx.status
    st.gate = gate
    return st


