"""What `moola data from-csv` and `from-numpy` share: input problems and validated publication.

A converter collects every problem it finds in its input files (each naming the file, the line
or column, and the fix) and raises them together. Its output goes through the same validator as
`moola data validate` before it is renamed into place, so a converted dataset is either valid
and whole or not there at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from moola.data.io import write_dataset
from moola.data.schema import DataError, DataValidationError

MAX_PER_KIND = 5  # problems listed per column/kind before "N more"


class InputProblems:
    """Problems found in one converter's input; `raise_if_any()` raises them as one DataError."""

    def __init__(self, what: str, action: str = "convert"):
        self.what = what
        self.action = action  # "cannot <action> <what>": moola predict reads, converters convert
        self.items: list[str] = []
        self._count: dict[str, int] = {}

    def add(self, message: str, kind: str | None = None) -> None:
        """Record a problem; of each `kind` (e.g. "bars.csv, column 'close': non-numeric values"),
        only the first MAX_PER_KIND are spelled out."""
        if kind is not None:
            self._count[kind] = self._count.get(kind, 0) + 1
            if self._count[kind] > MAX_PER_KIND:
                return
        self.items.append(message)

    def raise_if_any(self) -> None:
        """Raise every problem so far (and how many of each kind were not spelled out)."""
        more = [f"{kind}: {n - MAX_PER_KIND} more rows" for kind, n in self._count.items()
                if n > MAX_PER_KIND]
        problems = self.items + more
        if problems:
            n = len(self.items)
            raise DataError("\n".join(
                [f"cannot {self.action} {self.what} ({n} problem{'s' if n != 1 else ''}):",
                 *(f"  - {p}" for p in problems)]))


class ConvertedDatasetInvalid(DataValidationError):
    """The converted dataset failed `validate_dataset`; nothing was written. `.problems` as usual."""

    def __init__(self, problems: list[str], out: Path, source: str):
        super().__init__(problems)
        n = len(problems)
        self.args = ("\n".join(
            [f"{out}: not written: {source} converts into a dataset that fails validation "
             f"({n} problem{'s' if n != 1 else ''}; window ids name each window's first bar):",
             *(f"  - {p}" for p in problems)]),)


def publish(out_dir: str | Path, labeled: pa.Table, unlabeled: pa.Table, split: dict[str, list[int]],
            meta: dict[str, Any], source: str) -> Path:
    """Write the dataset atomically once `validate_dataset` accepts the complete temporary copy."""
    from moola.data.validate import validate_dataset

    out = Path(out_dir)

    def check(tmp: Path) -> None:
        report = validate_dataset(tmp)
        if not report.ok:
            # the messages name the temporary directory; name the one the user asked for
            raise ConvertedDatasetInvalid([p.replace(str(tmp), str(out)) for p in report.problems], out, source)

    return write_dataset(out, labeled, unlabeled, {0: split}, meta, check=check)
