"""Gate 7's work: cross-fitted isotonic calibration of each approved member's pooled predictions.

Every member already has out-of-fold probabilities for the protocol's scored windows (R seeds x
n windows). Each fold's windows are calibrated by a map fitted on the other folds' windows
(:func:`moola.ensemble.cross_fitted_calibration`), so no refits are needed and no window's own
label shapes its calibrated probability. The ensemble averages the calibrated members per seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from moola.gates import building, work
from moola.gates.context import GateContext
from moola.io_utils import atomic_save_npz


def calibrated_members(ctx: GateContext, approved: Mapping[str, Any],
                       gate: str) -> dict[str, Any]:
    """Raw and calibrated pooled probabilities of each approved member (cached), on the scored
    windows. `approved`: {model name: GateSpec}; each spec's producer gives the TrainedModel.
    `gate`: the gate whose work it is (its progress and cache records)."""
    members = {name: spec.producer(ctx) for name, spec in approved.items()}
    upstream = {n: m.artifact["key"] for n, m in members.items()}
    key = building.cache_key(ctx, "ensemble", work.CLASSIFIER_SECTIONS + ("finetune", "augment"),
                    members=upstream)

    def build(tmp: Path, workdir: Path):
        from moola.ensemble import cross_fitted_calibration

        arrays, ref = {}, None
        for name, m in members.items():
            if ref is None:
                ref = m
            elif not np.array_equal(m.score_idx, ref.score_idx):
                raise ValueError(f"gate 7: member '{name}' was scored on other windows than "
                                 f"the others; rebuild with --rebuild")
            arrays[f"{name}__raw"] = m.proba
            arrays[f"{name}__cal"] = cross_fitted_calibration(m.proba, m.y, m.fold_of)
        atomic_save_npz(tmp / "ensemble.npz", y=ref.y, fold_of=ref.fold_of,
                       score_idx=ref.score_idx, seeds=ref.seeds, **arrays)
        return {"members": list(members)}

    entry = building.build_entry(ctx, gate, "ensemble", key, build)
    z = building.load_npz(entry.path / "ensemble.npz")
    out = {"y": z["y"], "fold_of": z["fold_of"], "seeds": z["seeds"], "members": {}}
    for name in members:
        out["members"][name] = {"raw": z[f"{name}__raw"], "calibrated": z[f"{name}__cal"]}
    out["artifact"] = entry.record(members=upstream)
    return out
