"""Split files: reading `splits/fold_<k>.json` and checking it against the labeled rows.

Splits are temporal: rows of the labeled file are in time order and every train index precedes
every val index (and every val index precedes every test index), so validation never looks at
windows older than the ones a model was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from moola.data.schema import SPLIT_KEYS, SPLIT_ROLES
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
