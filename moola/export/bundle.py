"""An exported model directory: writing it atomically, reading it back, predicting with it.

A model (``kind`` "model")::

    <name>/model.pt       state dict: torch.load(path, weights_only=True)
    <name>/card.json      architecture, classes, feature names, window length, normalisation,
                          how it was trained, the gate's verdict and the estimate describing it
    <name>/card.md        the same for people
    <name>/metrics.csv    the refit's training curve (Lightning CSVLogger layout), if logged

An ensemble (``kind`` "ensemble") holds its members as model directories under
``members/<name>/`` and ``calibration.json``: one isotonic map per member (one monotone curve
per class), applied to the member's probabilities before they are averaged.

Nothing here unpickles: weights load with ``weights_only=True``, everything else is JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from moola.diskspace import writing
from moola.io_utils import atomic_write_json, atomic_write_text, file_sha256

FORMAT = "moola-model/1"
CARD = "card.json"
WEIGHTS = "model.pt"
CALIBRATION = "calibration.json"
MEMBERS = "members"


class ModelDirError(ValueError):
    """An exported model directory is missing, incomplete or altered; the message says which
    file and what to do."""


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


def write_model_files(out: Path, weights: Path, card: dict[str, Any],
                      markdown: Callable[[dict[str, Any]], str],
                      metrics_csv: Path | None = None) -> None:
    """Fill the (new) directory `out` with one model: weights, card.json, card.md, metrics.csv."""
    from moola.io_utils import jsonable
    from moola.io_utils import copy_file

    out.mkdir(parents=True, exist_ok=True)
    copy_file(weights, out / WEIGHTS)
    card = jsonable({**card, "weights": {
        "file": WEIGHTS, "sha256": file_sha256(out / WEIGHTS),
        "load": "torch.load(path, weights_only=True) -> state dict"}})
    if metrics_csv is not None and metrics_csv.is_file():
        copy_file(metrics_csv, out / "metrics.csv")
    atomic_write_json(out / CARD, card, indent=1, fsync=False)
    atomic_write_text(out / "card.md", markdown(card), fsync=False)


def publish(final: Path, fill: Callable[[Path], None]) -> Path:
    """Write a model directory atomically: `fill(tmp)` writes into a temporary directory beside
    `final`, which is then renamed into place (an older one is replaced). A reader never sees
    a half-written model; a failure (a full disk) leaves no temporary directory behind."""
    from moola.cache import publish_directory

    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    try:
        with writing(final):  # mkdir / rename on a full disk: a DiskFullError naming the model
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            fill(tmp)
            publish_directory(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def read_card(directory: str | Path) -> dict[str, Any]:
    """card.json of an exported model directory; errors name the file and the fix."""
    d = Path(directory)
    fix = ("pass a directory that `pytest gates_tests` exported: "
           "reports/runs/<run_id>/models/<name>/")
    if not d.is_dir():
        raise ModelDirError(f"{d}: model directory not found; {fix}")
    path = d / CARD
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in d.iterdir())) or "nothing"
        raise ModelDirError(f"{path}: missing (found {found}); {fix}")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path}: not readable JSON ({exc}); export the model again "
                            f"(rerun its gate)") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise ModelDirError(f"{path}: format {found!r}, expected {FORMAT!r}; {fix}")
    missing = [k for k in ("kind", "classes", "feature_names", "window_length", "normalization")
               if k not in card]
    if missing:
        raise ModelDirError(f"{path}: lacks {', '.join(missing)}; export the model again")
    return card


class ExportedModel:
    """One exported model: :meth:`predict_proba` takes raw windows (n, T, F) and normalises
    them as in training."""

    def __init__(self, directory: str | Path):
        from moola.models.architecture import build

        self.directory = Path(directory)
        self.card = read_card(self.directory)
        if self.card["kind"] != "model":
            raise ModelDirError(f"{self.directory / CARD}: kind {self.card['kind']!r}; load it "
                                f"with moola.export.load_model")
        weights = self.directory / WEIGHTS
        if not weights.is_file():
            raise ModelDirError(f"{weights}: missing; the weights were not copied with "
                                f"{self.directory / CARD} - copy the whole directory")
        want = (self.card.get("weights") or {}).get("sha256")
        if want and file_sha256(weights) != want:
            raise ModelDirError(f"{weights}: its SHA-256 differs from the one {CARD} records "
                                f"(the file was changed or truncated); copy it again from the "
                                f"run's reports/runs/<run_id>/models/")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # refused pickles, truncation: name the file
            raise ModelDirError(f"{weights}: cannot be loaded with weights_only=True "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        self.module = build(self.card["architecture"], str(self.directory / CARD))
        try:
            self.module.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelDirError(f"{weights}: does not fit the architecture in {CARD} "
                                f"({str(exc).splitlines()[0]})") from None
        self.module.eval()

    @property
    def classes(self) -> list[str]:
        return list(self.card["classes"])

    @property
    def feature_names(self) -> list[str]:
        return list(self.card["feature_names"])

    @property
    def window_length(self) -> int:
        return int(self.card["window_length"])

    @property
    def normalization(self) -> str:
        return str(self.card["normalization"]["method"])

    def predict_proba(self, X_raw: np.ndarray) -> np.ndarray:
        """Raw windows (n, T, F) -> class probabilities (n, K), columns in `classes` order."""
        from moola.data.normalize import normalize
        from moola.train import predict_proba

        check_windows(X_raw, self.card, str(self.directory))
        return predict_proba(self.module, normalize(X_raw, self.normalization), "cpu")


class ExportedEnsemble:
    """An exported calibrated ensemble: each member's probabilities through its isotonic map,
    then averaged (what gate 7 judged)."""

    def __init__(self, directory: str | Path):
        from moola.ensemble import IsotonicCalibrator

        self.directory = Path(directory)
        self.card = read_card(self.directory)
        path = self.directory / CALIBRATION
        if not path.is_file():
            raise ModelDirError(f"{path}: missing; copy the whole ensemble directory")
        try:
            maps = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelDirError(f"{path}: not readable JSON ({exc})") from None
        self.members: dict[str, ExportedModel] = {}
        self.calibrators: dict[str, Any] = {}
        for name in self.card["members"]:
            if name not in maps:
                raise ModelDirError(f"{path}: no calibration map for member {name!r}")
            self.members[name] = ExportedModel(self.directory / MEMBERS / name)
            if self.members[name].classes != self.classes:
                raise ModelDirError(f"{self.directory / MEMBERS / name / CARD}: classes "
                                    f"{self.members[name].classes} differ from the ensemble's "
                                    f"{self.classes}")
            self.calibrators[name] = IsotonicCalibrator.from_state_dict(maps[name])

    classes = ExportedModel.classes
    feature_names = ExportedModel.feature_names
    window_length = ExportedModel.window_length
    normalization = ExportedModel.normalization

    def predict_proba(self, X_raw: np.ndarray) -> np.ndarray:
        """Raw windows (n, T, F) -> calibrated ensemble probabilities (n, K)."""
        from moola.ensemble import average_proba

        check_windows(X_raw, self.card, str(self.directory))
        return average_proba([self.calibrators[n].transform(m.predict_proba(X_raw))
                              for n, m in self.members.items()])


def load_model(directory: str | Path):
    """The exported model, ensemble or MiniRocket control in `directory`
    (reports/runs/<run_id>/models/<name>/)."""
    kind = read_card(directory)["kind"]
    if kind == "ensemble":
        return ExportedEnsemble(directory)
    if kind == "model":
        return ExportedModel(directory)
    if kind == "minirocket":
        from moola.export.control import ExportedControl

        return ExportedControl(directory)
    raise ModelDirError(f"{Path(directory) / CARD}: kind {kind!r}, expected model, ensemble or "
                        f"minirocket")


def check_windows(X: np.ndarray, card: Mapping[str, Any], source: str) -> None:
    """Windows must be (n, T, F) with the model's T and F; errors name `source` and the fix."""
    T, names = int(card["window_length"]), list(card["feature_names"])
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 3:
        raise ValueError(f"{source}: windows must have shape (n, {T}, {len(names)}), got {shape}")
    if shape[0] == 0:
        raise ValueError(f"{source}: no windows to predict")
    if shape[2] != len(names):
        raise ValueError(
            f"{source}: windows have {shape[2]} features, the model was trained on {len(names)} "
            f"({', '.join(names)}); give it windows of exactly those features")
    if shape[1] != T:
        raise ValueError(
            f"{source}: windows have {shape[1]} timesteps, the model was trained on {T}-step "
            f"windows (card.json window_length); cut {T}-bar windows (moola data from-csv "
            f"--window {T}), or pass the CSV of bars, which moola predict cuts itself")
