"""Parquet reading and writing for datasets.

Reading turns the nested `features` column (a list of T lists of F numbers per row) into one
float32 array (n, T, F) without a Python loop over rows: the list arrays are flattened twice and
their per-row lengths checked, so 12,000 x 105 x 4 loads in well under a second. When the
lengths disagree, the same length arrays say which rows are ragged and what shape they have.

Writing is atomic: a dataset is built in a temporary directory next to its destination and
renamed into place, so a crash never leaves a half-written dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from moola.data.schema import DATASET_ENTRIES, DataError, split_file

Problem = Callable[[str], None]  # collects one problem message


def row_name(i: int, ids: list[str] | None) -> str:
    """'row 12 (window_id 'w-00012')' — how every message names a row."""
    if ids is not None and 0 <= i < len(ids) and ids[i] is not None:
        return f"row {i} (window_id {ids[i]!r})"
    return f"row {i}"


def read_parquet(path: Path, problem: Problem) -> pa.Table | None:
    """Read a parquet file; an unreadable, truncated or non-parquet file is reported, not raised."""
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        problem(
            f"{path}: cannot be read as parquet ({first}); the file is truncated, corrupt or not "
            f"parquet - rewrite it with pandas.DataFrame.to_parquet or regenerate the dataset"
        )
        return None


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def features_to_array(
    column: pa.ChunkedArray, path: Path, ids: list[str] | None, problem: Problem
) -> np.ndarray | None:
    """Nested `features` column -> float32 array (n, T, F); None (and problems) when malformed.

    Every window must have the most common shape (T, F); values must be finite numbers.
    """
    t = column.type
    if not (_is_list(t) and _is_list(t.value_type) and _is_numeric(t.value_type.value_type)):
        problem(
            f"{path}: column 'features' has type {t}, expected a list of timesteps, each a list "
            f"of numbers (e.g. 105 lists of [open, high, low, close]); store each window as "
            f"nested lists of floats"
        )
        return None
    outer = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(outer)
    if n == 0:
        return np.zeros((0, 0, 0), np.float32)
    # per-row number of timesteps (null rows -> -1)
    t_len = pc.list_value_length(outer).fill_null(-1).to_numpy(zero_copy_only=False)
    inner = outer.flatten()  # timesteps of non-null rows, in row order
    f_len = pc.list_value_length(inner).fill_null(-1).to_numpy(zero_copy_only=False)
    row_of_step = np.repeat(np.arange(n), np.maximum(t_len, 0))
    # a row's inner lengths: min and max over its timesteps (equal when not ragged)
    big = np.iinfo(np.int64).max
    f_min = np.where(t_len == 0, 0, big).astype(np.int64)
    f_max = np.where(t_len == 0, 0, -1).astype(np.int64)
    if len(f_len) and (f_len == f_len[0]).all():  # common case: skip the slower per-row reduction
        f_min[t_len > 0] = f_max[t_len > 0] = f_len[0]
    else:
        np.minimum.at(f_min, row_of_step, f_len)
        np.maximum.at(f_max, row_of_step, f_len)
    ok_row = (t_len >= 0) & (f_min == f_max) & (f_min >= 0)
    shapes = Counter(zip(t_len[ok_row].tolist(), f_min[ok_row].tolist()))
    if not shapes:
        problem(f"{path}: column 'features' holds no well-formed window; store T lists of F numbers per row")
        return None
    (T, F), _ = shapes.most_common(1)[0]
    bad = np.flatnonzero(~ok_row | (t_len != T) | (f_min != F))
    for i in bad[:10]:
        if t_len[i] < 0:
            found = "a null window"
        elif f_min[i] < 0:
            found = "a null timestep"
        elif f_min[i] != f_max[i]:
            found = f"{t_len[i]} timesteps with between {f_min[i]} and {f_max[i]} values each (ragged)"
        else:
            found = f"shape ({t_len[i]}, {f_min[i]})"
        problem(
            f"{path}: column 'features', {row_name(int(i), ids)} has {found}, expected shape "
            f"({T}, {F}) like most rows; fix or drop the window so every row is {T} x {F}"
        )
    if len(bad) > 10:
        problem(f"{path}: column 'features': {len(bad) - 10} more rows with the wrong shape")
    if len(bad):
        return None
    values = inner.flatten()
    if values.null_count:
        values = pc.cast(values, pa.float64()).fill_null(float("nan"))
    flat = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    X = flat.reshape(n, T, F)
    bad_mask = ~np.isfinite(X)
    if bad_mask.any():
        rows = np.flatnonzero(bad_mask.any(axis=(1, 2)))
        for i in rows[:10]:
            ts, fs = np.nonzero(bad_mask[i])
            problem(
                f"{path}: column 'features', {row_name(int(i), ids)}: non-finite value "
                f"{X[i, ts[0], fs[0]]} at timestep {ts[0]}, feature {fs[0]} "
                f"({len(ts)} non-finite in this window); fill or drop the window"
            )
        if len(rows) > 10:
            problem(f"{path}: column 'features': {len(rows) - 10} more rows with non-finite values")
        return None
    return X.astype(np.float32)


def features_column(X: np.ndarray) -> pa.Array:
    """float array (n, T, F) -> nested list column (list of T lists of F float32)."""
    n, T, F = X.shape
    values = pa.array(np.ascontiguousarray(X, dtype=np.float32).reshape(-1), pa.float32())
    inner = pa.ListArray.from_arrays(pa.array(np.arange(0, n * T * F + 1, F, dtype=np.int32)), values)
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * T + 1, T, dtype=np.int32)), inner)


def write_parquet(table: pa.Table, path: Path) -> None:
    """Deterministic parquet (same table -> same bytes); float values split by byte for zstd."""
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=9,
        use_dictionary=["window_id", "label"],
        use_byte_stream_split=["features.list.element.list.element"],
        row_group_size=1 << 20,
    )


def write_json(obj: Any, path: Path) -> None:
    """Stable JSON (sorted keys, trailing newline) so regenerated datasets are byte-identical."""
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def write_dataset(
    out_dir: str | Path,
    labeled: pa.Table,
    unlabeled: pa.Table,
    splits: dict[int, dict[str, list[int]]],
    meta: dict[str, Any],
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Write a dataset directory atomically (temp dir next to `out_dir`, then rename).

    An existing `out_dir` is replaced only when it holds nothing but dataset files; anything
    else is refused so a user directory is never deleted. `check(tmp_dir)` runs on the complete
    temporary directory before it is renamed into place: if it raises, nothing is published
    (converters validate their output this way).
    """
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: exists and is not a directory; choose another --out")
        extra = sorted(p.name for p in out.iterdir() if p.name not in DATASET_ENTRIES)
        if extra:
            raise DataError(
                f"{out}: holds files that are not part of a dataset ({', '.join(extra[:5])}); "
                f"choose a new or empty directory for --out"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "splits").mkdir()
        write_parquet(labeled, tmp / "labeled.parquet")
        write_parquet(unlabeled, tmp / "unlabeled.parquet")
        for fold, split in splits.items():
            write_json(split, tmp / split_file(fold))
        write_json(meta, tmp / "meta.json")
        if check is not None:
            check(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if out.exists():
            # swap: the old dataset stays whole until the new one is complete and in place
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rmdir(old)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
