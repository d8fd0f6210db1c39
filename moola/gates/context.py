"""Everything a gate needs from the run: configuration, data, device, cache, outputs.

A :class:`GateContext` is created once per pytest session (and per xdist worker, all sharing
one ``run_id``). It memoises verdicts, so that a gate asked for by several downstream gates is
judged once per process, and it decides which work is rebuilt: the gates selected in this
session run their own work afresh; upstream work comes from the cache (built if missing).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from moola.cache import ArtifactCache
from moola.config import Config

# status.json is rewritten at most this often within a phase (phase changes are written at
# once): fast enough for a person watching, and a tiny model's steps no longer pay for a file
# rewrite every log_every_n_steps
STATUS_MIN_INTERVAL_S = 0.25

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """Sortable, unique run id: UTC time plus a short random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


@dataclass
class GateContext:
    """Shared state of one gate session (see module docstring)."""

    cfg: Config
    run_id: str
    root: Path = field(default_factory=Path.cwd)  # paths in the config are relative to this
    selected: set[str] = field(default_factory=set)  # gates whose own work is rebuilt this run
    verdicts: dict[str, Any] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)  # damaged cache entries rebuilt (cache.py)
    # False while the decision is made at the end of a session (moola.plugin): it reads
    # what the judged gates built and must never start training (moola.gates.building.build_entry)
    build_allowed: bool = True

    # -- paths --------------------------------------------------------------------------------
    @cached_property
    def reports(self) -> Path:
        p = _inside(self.root, self.cfg.run.reports, "run.reports")
        p.mkdir(parents=True, exist_ok=True)
        return p

    @cached_property
    def cache(self) -> ArtifactCache:
        root = _inside(self.root, self.cfg.run.cache, "run.cache")
        root.mkdir(parents=True, exist_ok=True)
        return ArtifactCache(root, run_id=self.run_id, rebuild=self.cfg.run.rebuild)

    def check_paths(self) -> None:
        """Refuse output paths outside the project now (ConfigError), before anything is written;
        `reports` and `cache` would otherwise be checked only when first used."""
        _inside(self.root, self.cfg.run.reports, "run.reports")
        _inside(self.root, self.cfg.run.cache, "run.cache")

    @property
    def data_dir(self) -> Path:
        p = Path(self.cfg.run.data)
        return p if p.is_absolute() else self.root / p

    def gate_dir(self, gate: str) -> Path:
        """reports/runs/<run_id>/<gate>/ : metrics.csv, plots."""
        p = self.reports / "runs" / self.run_id / gate
        p.mkdir(parents=True, exist_ok=True)
        return p

    # -- lazily resolved resources ------------------------------------------------------------
    @cached_property
    def device(self):
        from moola.train import resolve_device

        return resolve_device(self.cfg.run.accelerator)

    @cached_property
    def dataset(self):
        from moola.data import load_dataset

        return load_dataset(
            self.data_dir,
            fold=self.cfg.run.fold,
            normalization=self.cfg.data.normalization,
            max_unlabeled=self.cfg.data.max_unlabeled,
            expected_timesteps=self.cfg.data.expected_timesteps,
        )

    @cached_property
    def status(self):
        from moola.report.status import StatusWriter

        return StatusWriter(self.reports / "status.json", run_id=self.run_id, gate="",
                            min_interval_s=STATUS_MIN_INTERVAL_S)

    @cached_property
    def sync(self):
        from moola.report.sync import SyncRunner

        return SyncRunner(self.cfg.run.sync_cmd, log_path=self.reports / "sync.log",
                          reports_dir=self.reports)

    def training_hooks(self) -> dict[str, Any]:
        """Trainer hooks: run --sync-cmd in the background after checkpoints and evaluations."""
        if not self.cfg.run.sync_cmd.strip():
            return {}
        return {"on_checkpoint": lambda: self.sync.trigger("checkpoint"),
                "on_eval": lambda metrics: self.sync.trigger("eval")}

    def fresh(self, gate: str) -> bool:
        """Whether `gate`'s own work must be rebuilt in this run (it was selected)."""
        return gate in self.selected



def _inside(root: Path, value: str, key: str) -> Path:
    """Resolve a configured output path; it may not point outside the project root.

    Paths from configuration are untrusted: '../../etc' must not make moola write elsewhere.
    """
    p = Path(value)
    resolved = (p if p.is_absolute() else root / p).resolve()
    base = root.resolve()
    if resolved != base and base not in resolved.parents:
        from moola.config import ConfigError

        raise ConfigError(
            f"'{key}' = {value!r} resolves to {resolved}, outside the project directory {base}; "
            f"use a path inside it"
        )
    return resolved
