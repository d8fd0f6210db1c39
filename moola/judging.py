"""Three outcomes for a comparison of two models on the same scored windows.

A comparison is the paired window bootstrap of :func:`moola.metrics.paired_delta_ci` (replicas
of a window resampled together). Its CI is read against two bounds a gate sets:

- **passed**: the whole CI lies above `pass_above` (the criterion holds, significantly);
- **failed**: the whole CI lies below `fail_below` (violated, significantly);
- **inconclusive**: neither; these windows cannot tell. The reason states the smallest
  difference they could have detected (80% power), so the user knows what more data buys.

This is the frequentist reading of Benavoli et al.'s (2017) region of practical equivalence:
interval-versus-bounds decisions, as in a two one-sided tests (TOST) equivalence design.
"""

from __future__ import annotations

from typing import Any

import numpy as np

OUTCOMES = ("passed", "failed", "inconclusive")


def paired_comparison(y: np.ndarray, pred_ref: np.ndarray, pred_new: np.ndarray, *,
                      reference: str, n_classes: int, n_bootstrap: int, ci_level: float,
                      seed: int, block: int = 1) -> dict[str, Any]:
    """Macro-F1 of new minus reference with its window-bootstrap CI and detectable difference."""
    from moola.metrics import paired_delta_ci

    d = paired_delta_ci(y, pred_ref, pred_new, metric="macro_f1", n_classes=n_classes,
                        n_bootstrap=n_bootstrap, ci_level=ci_level, seed=seed, block=block)
    return {"reference": reference, "delta": d["delta"], "delta_ci": d["ci"],
            "significant": d["significant"], "se": d["se"], "detectable": d["detectable"],
            "n_windows": d["n"], "ci_level": ci_level, "bootstrap_block": block,
            "test": "paired window bootstrap, expanded percentile CI (replicas resampled "
                    "together)"}


def decide(cmp: dict[str, Any], *, pass_above: float, fail_below: float) -> str:
    """passed / failed / inconclusive from the CI of `cmp` against the two bounds."""
    lo, hi = cmp["delta_ci"]
    if lo > pass_above:
        return "passed"
    if hi < fail_below:
        return "failed"
    return "inconclusive"


def ci_text(cmp: dict[str, Any]) -> str:
    """'delta +0.047 (95% CI -0.212 to +0.330)'."""
    from moola.report.fmt import number

    lo, hi = cmp["delta_ci"]
    return (f"delta {number(cmp['delta'], '+.3f')} ({cmp['ci_level']:.0%} CI "
            f"{number(lo, '+.3f')} to {number(hi, '+.3f')})")


def inconclusive_text(cmp: dict[str, Any], what: str) -> str:
    """The reason of an inconclusive comparison: what could not be told, and what could have."""
    from moola.report.fmt import number

    if cmp["se"] == 0.0:  # the two models predicted every scored window alike
        return (f"inconclusive: {what}: the two models predict all {cmp['n_windows']} scored "
                f"windows identically (delta {number(cmp['delta'], '+.3f')}), so these windows "
                f"hold no "
                f"evidence either way")
    return (f"inconclusive: {what} cannot be told on these {cmp['n_windows']} scored windows "
            f"({ci_text(cmp)}); they could only detect a macro-F1 difference of about "
            f"{cmp['detectable']:.2f} (80% power): more labeled windows, more folds or seeds "
            f"narrow it")


def seed_spread(per_replica: list[float]) -> dict[str, Any]:
    """Min / median / max of the per-seed macro-F1 (the per-seed spread every verdict reports)."""
    a = np.asarray(per_replica, dtype=float)
    return {"min": float(a.min()), "median": float(np.median(a)), "max": float(a.max()),
            "per_seed": [round(float(v), 4) for v in a]}
