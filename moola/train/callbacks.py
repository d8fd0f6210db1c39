"""Early stopping and top-k checkpoint bookkeeping, one job per class (Lightning-style).

Both keep only primitive state so it round-trips through ``state_dict()`` /
``load_state_dict()`` inside a ``weights_only`` checkpoint, which is what makes resume work.
Epochs are 0-based, as in the CSV log.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["MODES", "EarlyStopping", "CheckpointKeeper", "KeepDecision"]

MODES = ("min", "max")


def _check_mode(mode: str, who: str) -> str:
    if mode not in MODES:
        raise ValueError(f"{who}: mode {mode!r} is unknown; allowed values: {', '.join(MODES)}")
    return mode


def _is_better(score: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """True when `score` improves on `best` by more than `min_delta` (None = no best yet)."""
    if score is None or not math.isfinite(score):
        return False
    if best is None:
        return True
    return score < best - min_delta if mode == "min" else score > best + min_delta


class EarlyStopping:
    """Stop when `monitor` has not improved for `patience` epochs, never before `min_epochs`.

    An epoch without a score (evaluation timed out, NaN) counts as "no improvement".
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        patience: int = 8,
        min_epochs: int = 1,
        min_delta: float = 0.0,
    ) -> None:
        _check_mode(mode, "EarlyStopping")
        if int(patience) < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience!r}")
        if int(min_epochs) < 0:
            raise ValueError(f"EarlyStopping: min_epochs must be >= 0, got {min_epochs!r}")
        if float(min_delta) < 0:
            raise ValueError(f"EarlyStopping: min_delta must be >= 0, got {min_delta!r}")
        self.monitor, self.mode = monitor, mode
        self.patience, self.min_epochs, self.min_delta = int(patience), int(min_epochs), float(min_delta)
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0  # epochs since the last improvement

    def score_from(self, metrics: dict[str, Any] | None) -> float | None:
        """The monitored value in `metrics`; None when no evaluation happened (`metrics` None).

        A metrics dict without the monitored key is a configuration error: it raises and lists
        the metrics that do exist.
        """
        if metrics is None:
            return None
        if self.monitor not in metrics:
            raise KeyError(
                f"EarlyStopping: monitored metric {self.monitor!r} is not among the logged "
                f"metrics: {', '.join(sorted(metrics)) or '(none)'}"
            )
        value = metrics[self.monitor]
        return None if value is None else float(value)

    def update(self, epoch: int, score: float | None) -> tuple[bool, str]:
        """Record the score of `epoch` (None = no evaluation) and decide whether to stop."""
        if _is_better(score, self.best_score, self.mode, self.min_delta):
            self.best_score, self.best_epoch, self.wait = float(score), int(epoch), 0
        else:
            self.wait += 1
        return self.decide(epoch)

    def decide(self, epoch: int) -> tuple[bool, str]:
        """(should_stop, reason) after `epoch` has been recorded, from the current state."""
        if self.wait == 0:
            return False, f"{self.monitor} improved ({self._best_text()})"
        stale = f"{self.monitor} did not improve for {self.wait} epochs ({self._best_text()})"
        if self.wait < self.patience:
            return False, f"{stale}; patience {self.patience}"
        if epoch + 1 < self.min_epochs:
            return False, f"{stale}; not stopping before min_epochs={self.min_epochs}"
        return True, stale

    def _best_text(self) -> str:
        if self.best_score is None:
            return "no evaluation has produced a score yet"
        return f"best {self.best_score:.4g} at epoch {self.best_epoch}"

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "mode": self.mode, "best_score": self.best_score,
                "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["monitor"] != self.monitor or state["mode"] != self.mode:
            raise ValueError(
                f"EarlyStopping state is for {state['monitor']} ({state['mode']}), this one "
                f"monitors {self.monitor} ({self.mode})"
            )
        self.best_score = None if state["best_score"] is None else float(state["best_score"])
        self.best_epoch = None if state["best_epoch"] is None else int(state["best_epoch"])
        self.wait = int(state["wait"])


class KeepDecision(NamedTuple):
    """What to do on disk after :meth:`CheckpointKeeper.record`."""

    save_path: Path | None  # write the checkpoint here (None: this epoch is not in the top k)
    evict: list[Path]  # delete these after the new files are written


class CheckpointKeeper:
    """Which ``best-epoch=NN-<monitor>=X.pt`` files to keep: the top `save_top_k` by `monitor`.

    It decides; the trainer writes and deletes (write first, then delete, so a crash in
    between leaves an extra file, never a missing one). ``save_top_k=0`` keeps none.
    """

    def __init__(self, dirpath: str | os.PathLike, monitor: str = "val_loss", mode: str = "min",
                 save_top_k: int = 1) -> None:
        _check_mode(mode, "CheckpointKeeper")
        if int(save_top_k) < 0:
            raise ValueError(f"CheckpointKeeper: save_top_k must be >= 0, got {save_top_k!r}")
        self.dirpath = Path(dirpath)
        self.monitor, self.mode, self.save_top_k = monitor, mode, int(save_top_k)
        self.kept: list[tuple[int, float, str]] = []  # (epoch, score, file name), best first

    def filename(self, epoch: int, score: float) -> str:
        return f"best-epoch={epoch:02d}-{self.monitor}={score:.4f}.pt"

    @property
    def best_path(self) -> Path | None:
        return self.dirpath / self.kept[0][2] if self.kept else None

    def record(self, epoch: int, score: float | None) -> KeepDecision:
        """Enter `epoch`'s score into the ranking; return what to write and what to delete."""
        if self.save_top_k == 0 or score is None or not math.isfinite(score):
            return KeepDecision(None, [])
        worst = self.kept[-1][1] if len(self.kept) >= self.save_top_k else None
        if worst is not None and not _is_better(score, worst, self.mode):
            return KeepDecision(None, [])
        name = self.filename(epoch, score)
        self.kept.append((int(epoch), float(score), name))
        # Stable sort: on ties the earlier epoch ranks first.
        self.kept.sort(key=lambda k: k[1] if self.mode == "min" else -k[1])
        evicted = self.kept[self.save_top_k:]
        self.kept = self.kept[: self.save_top_k]
        return KeepDecision(self.dirpath / name, [self.dirpath / e[2] for e in evicted])

    def reconcile(self) -> list[Path]:
        """After a resume: forget kept files that are gone, delete ``best-*.pt`` files that the
        state does not know (written after the checkpoint we resumed from). Returns deleted."""
        self.kept = [k for k in self.kept if (self.dirpath / k[2]).is_file()]
        known = {k[2] for k in self.kept}
        removed = []
        for path in self.dirpath.glob("best-epoch=*.pt"):
            if path.name not in known and re.match(r"best-epoch=\d+-", path.name):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "mode": self.mode, "save_top_k": self.save_top_k,
                "kept": [[e, s, n] for e, s, n in self.kept]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["monitor"] != self.monitor or state["mode"] != self.mode:
            raise ValueError(
                f"CheckpointKeeper state is for {state['monitor']} ({state['mode']}), this one "
                f"keeps {self.monitor} ({self.mode})"
            )
        kept = [(int(e), float(s), str(n)) for e, s, n in state["kept"]]
        self.kept = kept[: self.save_top_k]  # a smaller k on resume keeps the best ones
