"""Known-answer controls made from a real dataset: data on which a gate's answer is known.

A gate is trusted once it has been seen to fail on the failure it exists for, built from data,
never by editing moola (docs/JUDGING.md, "Known answers"). Each control copies a dataset
directory and breaks one thing, seeded:

* ``shuffled-labels``: the labeled windows' labels permuted (class shares kept): no model may
  show skill, gate 1 must fail and the decision must recommend nothing;
* ``random-walk-pool``: the unlabeled pool replaced by Gaussian random walks of the same shape
  and scale (OHLC-consistent when the features are open, high, low, close): pretraining on it
  can learn nothing about the labels, so gates 3-4 must not call it helpful;
* ``time-shuffled-pool``: each unlabeled window's bars in a random order: the values stay, their
  time structure goes.

The labeled windows, the splits and meta.json are kept as they are (meta.json records the
control), so every other gate sees the same data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from moola.data.io import features_column, write_dataset
from moola.data.schema import OHLC, DataError

KINDS = ("shuffled-labels", "random-walk-pool", "time-shuffled-pool")


def _features(table: pa.Table) -> np.ndarray:
    """(n, T, F) float32 from a validated dataset's nested features column."""
    col = table.column("features").combine_chunks()
    n = len(col)
    inner = col.flatten()
    T = len(inner) // max(n, 1)
    values = inner.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(n, T, -1).astype(np.float32)


def _random_walks(X: np.ndarray, rng: np.random.Generator, ohlc: bool) -> np.ndarray:
    """Random walks shaped and scaled like `X` (n, T, F): each window starts at its own first
    close (or first value) and steps with its own step size."""
    n, T, F = X.shape
    ref = X[:, :, 3] if ohlc else X[:, :, 0]
    step = np.maximum(np.std(np.diff(ref, axis=1), axis=1, keepdims=True), 1e-6)  # (n, 1)
    path = ref[:, :1] + np.cumsum(rng.standard_normal((n, T)) * step, axis=1)
    if not ohlc:
        return np.repeat(path[:, :, None], F, axis=2) + rng.standard_normal((n, T, F)) * step[
            :, :, None] * 0.1
    close = path
    open_ = np.concatenate([ref[:, :1], close[:, :-1]], axis=1)
    wick = np.abs(rng.standard_normal((n, T, 2))) * step[:, :, None] * 0.5
    high = np.maximum(open_, close) + wick[..., 0]
    low = np.minimum(open_, close) - wick[..., 1]
    out = np.stack([open_, high, low, close], axis=2)
    if F > 4:  # extra feature columns: kept as they were (their meaning is the user's)
        out = np.concatenate([out, X[:, :, 4:]], axis=2)
    return out.astype(np.float32)


def make_control(src: str | Path, out: str | Path, kind: str, seed: int = 0) -> Path:
    """Write the `kind` control (see the module docstring) of dataset `src` to `out`."""
    from moola.data import validate_dataset

    src, out = Path(src), Path(out)
    if kind not in KINDS:
        raise DataError(f"unknown control {kind!r}; choose one of: {', '.join(KINDS)}")
    report = validate_dataset(src)
    if not report.ok:
        raise DataError(f"{src}: not a valid dataset; `moola data validate {src}` lists the "
                        f"problems")
    if out.resolve() == src.resolve():
        raise DataError(f"--out {out} is the source dataset; write the control elsewhere")
    import json

    labeled_name = "labeled.parquet" if (src / "labeled.parquet").exists() else \
        "train_clean.parquet"
    labeled = pq.read_table(src / labeled_name)
    unlabeled = pq.read_table(src / "unlabeled.parquet")
    meta = json.loads((src / "meta.json").read_text(encoding="utf-8"))
    splits = {int(p.stem.split("_")[1]): json.loads(p.read_text(encoding="utf-8"))
              for p in sorted((src / "splits").glob("fold_*.json"))}
    rng = np.random.default_rng(seed)
    if kind == "shuffled-labels":
        labels = labeled.column("label").to_numpy(zero_copy_only=False)
        i = labeled.schema.get_field_index("label")
        labeled = labeled.set_column(i, "label", pa.array(rng.permutation(labels),
                                                          labeled.schema.field("label").type))
    else:
        X = _features(unlabeled)
        if kind == "random-walk-pool":
            names = [str(n).lower() for n in meta.get("feature_names") or []]
            X = _random_walks(X, rng, ohlc=names[:4] == OHLC)
        else:  # time-shuffled-pool: each window's bars in their own random order
            order = np.argsort(rng.random(X.shape[:2]), axis=1)
            X = np.take_along_axis(X, order[:, :, None], axis=1)
        i = unlabeled.schema.get_field_index("features")
        unlabeled = unlabeled.set_column(i, "features", features_column(X))
    meta = {**meta, "control": {"kind": kind, "seed": seed, "source": str(src)}}
    return write_dataset(out, labeled, unlabeled, splits, meta,
                         check=lambda tmp: _check(tmp))


def _check(tmp: Path) -> None:
    from moola.data import validate_dataset

    report = validate_dataset(tmp)
    if not report.ok:
        raise DataError("the control is not a valid dataset: " + "; ".join(report.problems))
