"""Split files: reading `splits/fold_<k>.json` and checking it against the labeled rows, and the
temporal split with purge gaps that the converters (`moola data from-csv|from-numpy`) write.

Splits are temporal: rows of the labeled file are in time order and every train index precedes
every val index (and every val index precedes every test index), so validation never looks at
windows older than the ones a model was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from moola.data.schema import SPLIT_KEYS, SPLIT_ROLES, DataError
from moola.data.io import Problem


def read_split(path: Path, n_rows: int | None, problem: Problem) -> dict[str, np.ndarray] | None:
    """Parse and check one split file; returns {role: int64 indices} or None when invalid.

    `n_rows` is the labeled row count (None when the labeled file could not be read: range and
    order checks that need it are skipped).
    """
    if not path.is_file():
        problem(
            f"{path}: split file missing; write a JSON object with 'train_idx' and 'val_idx' "
            f"(row positions in the labeled file), or pass the fold that exists"
        )
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problem(f"{path}: not valid JSON ({exc}); rewrite it as {{\"train_idx\": [...], \"val_idx\": [...]}}")
        return None
    if not isinstance(data, dict):
        problem(f"{path}: top level is {type(data).__name__}, expected an object with 'train_idx' and 'val_idx'")
        return None
    allowed = ", ".join(SPLIT_KEYS)
    ok = True
    by_role: dict[str, list] = {}
    for key, value in data.items():
        role = SPLIT_KEYS.get(key)
        if role is None:
            problem(f"{path}: unknown key {key!r}; allowed keys: {allowed} - remove or rename it")
            ok = False
            continue
        if role in by_role:
            problem(f"{path}: the {role} indices are given twice (two spellings of the key); keep one")
            ok = False
            continue
        by_role[role] = value
    for role in ("train", "val"):
        if role not in by_role:
            problem(f"{path}: missing key '{role}_idx' (or '{role}_indices'); keys found: "
                    f"{', '.join(map(repr, data)) or 'none'}")
            ok = False
    out: dict[str, np.ndarray] = {}
    for role, value in by_role.items():
        idx = _as_indices(value, path, role, problem)
        if idx is None:
            ok = False
            continue
        out[role] = idx
    if not ok:
        return None
    out.setdefault("test", np.zeros(0, np.int64))
    if n_rows is not None and not _check_indices(out, n_rows, path, problem):
        return None
    return out


def _as_indices(value: object, path: Path, role: str, problem: Problem) -> np.ndarray | None:
    """A JSON list of integers -> int64 array; anything else is a problem."""
    if not isinstance(value, list):
        problem(f"{path}: '{role}' indices are {type(value).__name__}, expected a list of integers")
        return None
    bad = [(i, v) for i, v in enumerate(value) if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        pos, v = bad[0]
        problem(
            f"{path}: '{role}' indices must be integers; entry {pos} is {v!r} "
            f"({len(bad)} non-integer entries); write row positions as plain integers"
        )
        return None
    return np.asarray(value, dtype=np.int64)


def _check_indices(split: dict[str, np.ndarray], n_rows: int, path: Path, problem: Problem) -> bool:
    """Range, duplicates, overlap and temporal order; reports every failure, True when clean."""
    ok = True
    for role in SPLIT_ROLES:
        idx = split[role]
        out_of_range = idx[(idx < 0) | (idx >= n_rows)]
        if len(out_of_range):
            problem(
                f"{path}: '{role}' index {int(out_of_range[0])} is out of range "
                f"({len(out_of_range)} such); the labeled file has {n_rows} rows (valid: 0..{n_rows - 1})"
            )
            ok = False
        uniq, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            problem(f"{path}: '{role}' lists row {int(uniq[counts > 1][0])} more than once; list each row once")
            ok = False
    if not len(split["train"]) or not len(split["val"]):
        empty = "train" if not len(split["train"]) else "val"
        problem(f"{path}: '{empty}' indices are empty; give at least one row")
        ok = False
    for a_i, a in enumerate(SPLIT_ROLES):
        for b in SPLIT_ROLES[a_i + 1:]:
            both = np.intersect1d(split[a], split[b])
            if len(both):
                problem(
                    f"{path}: row {int(both[0])} is in both '{a}' and '{b}' ({len(both)} rows "
                    f"overlap); each row may belong to one split only - remove it from one of them"
                )
                ok = False
    # temporal: rows are in time order, so every earlier split must end before the next starts
    order = [r for r in SPLIT_ROLES if len(split[r])]
    for a, b in zip(order, order[1:]):
        if split[a].max() >= split[b].min():
            problem(
                f"{path}: split is not temporal: '{a}' row {int(split[a].max())} comes after "
                f"'{b}' row {int(split[b].min())}; every {a} row must precede every {b} row "
                f"(rows are in time order) - rebuild the split by time"
            )
            ok = False
    return ok


def temporal_split(
    start: np.ndarray, end: np.ndarray, *, val_fraction: float, test_fraction: float = 0.0,
    purge: int = 0, unit: str = "bars",
) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Split rows in time order into train, val and (optional) test blocks, with purge gaps.

    start, end: (n,) the first and last time position (bar, or row) each row's window covers,
    in row order (non-decreasing). The last `test_fraction` of the rows are test, the
    `val_fraction` before them val, the rest train. A row is left out of every role when its
    window ends fewer than `purge` + 1 positions before the next block's first window starts:
    windows that share bars (or lie within `purge` bars) of the rows a model is judged on would
    let it see them (Lopez de Prado's purging). Returns (split file content, {"train": rows
    purged, "val": rows purged}); too few rows for a split raise `DataError` naming the option.
    """
    start, end = np.asarray(start, np.int64), np.asarray(end, np.int64)
    n = len(start)
    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction {val_fraction} must lie between 0 and 1 (e.g. 0.2)")
    if not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DataError(f"--test-fraction {test_fraction} must be >= 0 and leave training rows next to "
                        f"--val-fraction {val_fraction} (their sum must be below 1)")
    if purge < 0:
        raise DataError(f"--purge {purge} must be >= 0 ({unit} between the last train window and the first val window)")
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction))
    cut_val, cut_test = n - n_test - n_val, n - n_test
    if cut_val < 1:
        raise DataError(f"{n} labeled windows are too few for {n_val} val and {n_test} test windows "
                        f"and at least one train window; label more windows or lower --val-fraction")
    rows = np.arange(n)
    train = rows[:cut_val][end[:cut_val] + purge < start[cut_val]]
    val = rows[cut_val:cut_test]
    if n_test:
        val = val[end[val] + purge < start[cut_test]]
    purged = {"train": int(cut_val - len(train)), "val": int(n_val - len(val))}
    for role, kept, before in (("train", train, "val"), ("val", val, "test")):
        if not len(kept):
            raise DataError(
                f"no {role} window is left after purging the {purged[role]} that end within "
                f"--purge {purge} {unit} of the first {before} window (windows sharing {unit} are "
                f"always purged); label more windows, lower --purge, or change --val-fraction/--test-fraction")
    split = {"train_idx": train.tolist(), "val_idx": val.tolist()}
    if n_test:
        split["test_idx"] = rows[cut_test:].tolist()
    return split, purged
