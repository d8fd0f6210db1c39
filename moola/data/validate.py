"""Dataset validation: every problem found, each naming file, row/column and the fix.

Validation only reads. It collects all problems it can find instead of stopping at the first;
a check that depends on an unreadable part (e.g. split ranges without a readable labeled file)
is skipped, because its message would only repeat the first problem.

Leakage rule: windows used for training or validation (train_idx + val_idx) must not appear in
the unlabeled pool, by window_id or by identical feature content; pretraining on them would let
the encoder see validation windows. Test rows are exempt: the UCR layout documents reusing the
test windows (unlabeled, under other ids) as the pretraining pool, as in transductive
self-supervised evaluation. When the split cannot be read, every labeled row is checked.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moola.data.io import features_to_array, read_parquet, row_name
from moola.data.schema import (
    LABELED_FILES,
    LABELED_OPTIONAL,
    LABELED_REQUIRED,
    META_FILE,
    UNLABELED_FILE,
    UNLABELED_REQUIRED,
    ValidationReport,
    default_feature_names,
    split_file,
)
from moola.data.splits import read_split


@dataclass
class Parsed:
    """What validation read; `load_dataset` reuses it instead of reading the files twice."""

    path: Path
    labeled_path: Path | None = None
    unlabeled_path: Path | None = None
    split_path: Path | None = None
    window_ids: list[str] | None = None
    labels: list[str] | None = None
    X: np.ndarray | None = None  # (n, T, F) float32, raw
    expansion: dict[str, np.ndarray] = field(default_factory=dict)
    unlabeled_ids: list[str] | None = None
    X_unlabeled: np.ndarray | None = None  # (m, T, F) float32, raw
    split: dict[str, np.ndarray] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _string_like(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _read_table(path: Path, required: tuple[str, ...], problems: list[str]) -> pa.Table | None:
    """Read and check presence, emptiness and required columns of one parquet file."""
    table = read_parquet(path, problems.append)
    if table is None:
        return None
    if table.num_rows == 0:
        problems.append(f"{path}: file is empty (0 rows); write at least one window or regenerate the dataset")
        return None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        problems.append(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}; "
            f"columns found: {', '.join(map(repr, table.column_names))}; required: "
            f"{', '.join(map(repr, required))}; add the column (or rename the one that holds "
            f"it) or regenerate the dataset"
        )
    return table


def _string_column(table: pa.Table, name: str, path: Path, problems: list[str], ids=None) -> list[str] | None:
    """A string column as a list; wrong type and nulls are problems."""
    if name not in table.column_names:
        return None
    col = table.column(name)
    if not _string_like(col.type):
        problems.append(
            f"{path}: column {name!r} has type {col.type}, expected strings; "
            f"convert it with df[{name!r}] = df[{name!r}].astype(str)"
        )
        return None
    values = col.to_pylist()
    nulls = [i for i, v in enumerate(values) if v is None]
    if nulls:
        problems.append(
            f"{path}: column {name!r}, {row_name(nulls[0], ids)} is null ({len(nulls)} null rows); "
            f"give every row a {name}"
        )
        return None
    return values


def _check_ids(ids: list[str], path: Path, problems: list[str]) -> None:
    """Duplicate window ids, naming both rows."""
    first: dict[str, int] = {}
    dups = []
    for i, w in enumerate(ids):
        if w in first:
            dups.append((first[w], i, w))
        else:
            first[w] = i
    for a, b, w in dups[:10]:
        problems.append(
            f"{path}: column 'window_id': duplicate id {w!r} in row {a} and row {b}; "
            f"window ids must be unique - drop the duplicate window or rename it"
        )
    if len(dups) > 10:
        problems.append(f"{path}: column 'window_id': {len(dups) - 10} more duplicate ids")


def _check_labels(labels: list[str], ids: list[str] | None, path: Path, problems: list[str]) -> None:
    """At least two classes, and no two spellings of one label."""
    counts = Counter(labels)
    groups: dict[str, list[str]] = {}
    for lab in counts:
        groups.setdefault(lab.strip().casefold(), []).append(lab)
    for spellings in groups.values():
        if len(spellings) > 1:
            spellings.sort(key=lambda s: -counts[s])
            main, others = spellings[0], spellings[1:]
            row = labels.index(others[0])
            problems.append(
                f"{path}: column 'label': unknown label spelling {others[0]!r} in {row_name(row, ids)} "
                f"({', '.join(f'{s!r} x{counts[s]}' for s in spellings)}); labels differ only by "
                f"case or whitespace - write {main!r} for all of them"
            )
    if len(groups) < 2:
        problems.append(
            f"{path}: column 'label' has a single class ({', '.join(map(repr, counts))}); a "
            f"classifier needs at least two classes - add windows of another class"
        )


def _check_expansion(table: pa.Table, T: int | None, path: Path, ids, problems: list[str]) -> dict[str, np.ndarray]:
    """Optional expansion_start / expansion_end: integers within the window, start <= end."""
    out = {}
    for name in LABELED_OPTIONAL:
        if name not in table.column_names:
            continue
        col = table.column(name)
        if not pa.types.is_integer(col.type):
            problems.append(
                f"{path}: column {name!r} has type {col.type}, expected integers (bar positions); "
                f"cast it with df[{name!r}] = df[{name!r}].astype('int64') or drop the column"
            )
            continue
        out[name] = col.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> nan
    if T is not None:
        for name, v in out.items():
            bad = np.flatnonzero((v < 0) | (v >= T))
            if len(bad):
                problems.append(
                    f"{path}: column {name!r}, {row_name(int(bad[0]), ids)} is {int(v[bad[0]])}, "
                    f"outside the window (0..{T - 1}); fix the bar position"
                )
    if len(out) == 2:
        bad = np.flatnonzero(out["expansion_start"] > out["expansion_end"])
        if len(bad):
            problems.append(
                f"{path}: {row_name(int(bad[0]), ids)}: expansion_start > expansion_end "
                f"({len(bad)} rows); the span must start before it ends"
            )
    return out


def _check_leakage(p: Parsed, problems: list[str]) -> None:
    """Train/val windows must not be in the unlabeled pool (by id or identical content)."""
    if p.window_ids is None or p.unlabeled_ids is None:
        return
    if p.split is not None:
        rows = np.concatenate([p.split["train"], p.split["val"]])
        scope = "train/val"
    else:
        rows = np.arange(len(p.window_ids))
        scope = "labeled"
    u_pos = {w: j for j, w in enumerate(p.unlabeled_ids)}
    hits = [(int(i), u_pos[p.window_ids[i]]) for i in rows if p.window_ids[i] in u_pos]
    for i, j in hits[:10]:
        problems.append(
            f"{p.unlabeled_path}: leakage: {scope} window {p.window_ids[i]!r} ({p.labeled_path.name} "
            f"row {i}) is also in the unlabeled pool (row {j}); remove it from {UNLABELED_FILE}"
        )
    if len(hits) > 10:
        problems.append(f"{p.unlabeled_path}: leakage: {len(hits) - 10} more {scope} window ids in the unlabeled pool")
    X, U = p.X, p.X_unlabeled
    if X is None or U is None or X.shape[1:] != U.shape[1:]:
        return
    content = {np.ascontiguousarray(X[i]).tobytes(): int(i) for i in rows}
    same = []
    for j, u in enumerate(U):
        i = content.get(u.tobytes())
        if i is not None and p.window_ids[i] != p.unlabeled_ids[j]:  # id hits reported above
            same.append((i, j))
    for i, j in same[:10]:
        problems.append(
            f"{p.unlabeled_path}: leakage: unlabeled {row_name(j, p.unlabeled_ids)} has the same "
            f"features as {scope} window {p.window_ids[i]!r} ({p.labeled_path.name} row {i}); "
            f"remove it from {UNLABELED_FILE}"
        )
    if len(same) > 10:
        problems.append(f"{p.unlabeled_path}: leakage: {len(same) - 10} more unlabeled windows copy {scope} windows")


def _read_meta(path: Path, problems: list[str]) -> dict[str, Any]:
    f = path / META_FILE
    if not f.is_file():
        return {}
    try:
        meta = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problems.append(f"{f}: not valid JSON ({exc}); fix or delete it (it is optional)")
        return {}
    if not isinstance(meta, dict):
        problems.append(f"{f}: top level must be an object; fix or delete it (it is optional)")
        return {}
    return meta


def inspect_dataset(path: str | Path, fold: int = 0) -> tuple[ValidationReport, Parsed]:
    """Validate and return what was read (for `load_dataset`). Never writes anything."""
    root = Path(path)
    p = Parsed(path=root)
    problems: list[str] = []
    if not root.is_dir():
        problems.append(
            f"{root}: dataset directory not found; create one with `moola data synth --out {root}` "
            f"or pass an existing dataset directory"
        )
        return ValidationReport(False, problems, {"path": str(root)}), p
    found = sorted(x.name for x in root.iterdir())

    # labeled windows
    lab = next((root / n for n in LABELED_FILES if (root / n).is_file()), None)
    if lab is None:
        problems.append(
            f"{root / LABELED_FILES[0]}: missing file (also looked for {LABELED_FILES[1]}); files "
            f"found: {', '.join(found) or 'none'}; add the labeled windows or regenerate the dataset"
        )
    else:
        p.labeled_path = lab
        table = _read_table(lab, LABELED_REQUIRED, problems)
        if table is not None:
            p.window_ids = _string_column(table, "window_id", lab, problems)
            ids = p.window_ids
            if ids is not None:
                _check_ids(ids, lab, problems)
            p.labels = _string_column(table, "label", lab, problems, ids)
            if p.labels is not None:
                _check_labels(p.labels, ids, lab, problems)
            if "features" in table.column_names:
                p.X = features_to_array(table.column("features"), lab, ids, problems.append)
            T = p.X.shape[1] if p.X is not None else None
            p.expansion = _check_expansion(table, T, lab, ids, problems)
    n_rows = None
    if p.window_ids is not None and p.labels is not None and p.X is not None:
        n_rows = len(p.window_ids)

    # unlabeled pool
    ul = root / UNLABELED_FILE
    p.unlabeled_path = ul
    if not ul.is_file():
        problems.append(
            f"{ul}: missing file; the unlabeled pool (window_id, features) is needed for "
            f"pretraining - add it or regenerate the dataset; files found: {', '.join(found) or 'none'}"
        )
    else:
        table = _read_table(ul, UNLABELED_REQUIRED, problems)
        if table is not None:
            p.unlabeled_ids = _string_column(table, "window_id", ul, problems)
            if p.unlabeled_ids is not None:
                _check_ids(p.unlabeled_ids, ul, problems)
            if "features" in table.column_names:
                p.X_unlabeled = features_to_array(table.column("features"), ul, p.unlabeled_ids, problems.append)
        if p.X is not None and p.X_unlabeled is not None and p.X.shape[1:] != p.X_unlabeled.shape[1:]:
            problems.append(
                f"{ul}: column 'features': unlabeled windows have shape {p.X_unlabeled.shape[1:]} "
                f"(T, F) but labeled windows have {p.X.shape[1:]}; cut both from the same series "
                f"with the same window length and features"
            )

    # split
    p.split_path = root / split_file(fold)
    p.split = read_split(p.split_path, n_rows, problems.append)
    if p.split is not None and n_rows is not None:
        train_labels = {p.labels[i] for i in p.split["train"]}
        if len(train_labels) == 1:
            problems.append(
                f"{p.split_path}: the train rows hold a single class ({next(iter(train_labels))!r}); "
                f"a model cannot learn from one class - move the split point"
            )
    if n_rows is None:
        p.split = None  # its ranges could not be checked, so nothing downstream may index with it

    _check_leakage(p, problems)
    p.meta = _read_meta(root, problems)
    F = p.X.shape[2] if p.X is not None else None
    names = p.meta.get("feature_names")
    if names is not None and F is not None and (not isinstance(names, list) or len(names) != F):
        problems.append(f"{root / META_FILE}: 'feature_names' must be a list of {F} names (one per feature)")

    summary: dict[str, Any] = {"path": str(root), "fold": fold}
    if lab is not None:
        summary["labeled_file"] = lab.name
    if n_rows is not None:
        summary.update(
            n_labeled=n_rows,
            classes=dict(sorted(Counter(p.labels).items())),
            timesteps=int(p.X.shape[1]),
            features=int(p.X.shape[2]),
            feature_names=names if isinstance(names, list) else default_feature_names(p.X.shape[2]),
        )
    if p.split is not None:
        summary.update({f"n_{r}": int(len(v)) for r, v in p.split.items()})
    if p.X_unlabeled is not None:
        summary["n_unlabeled"] = int(len(p.X_unlabeled))
    return ValidationReport(not problems, problems, summary), p


def validate_dataset(path: str | Path, fold: int = 0) -> ValidationReport:
    """Check a dataset directory; `.ok`, `.problems` (one message each), `.summary`."""
    return inspect_dataset(path, fold)[0]
