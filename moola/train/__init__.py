"""One training loop with Lightning-style execution knobs (see docs/CONTRACTS.md)."""

from moola.train.callbacks import CheckpointKeeper, EarlyStopping
from moola.train.classify import (ClassifierFit, ClassifierModule, fit_classifier,
                                  inverse_frequency_weights, predict_proba)
from moola.train.csv_logger import CSVLogger
from moola.train.device import DeviceError, resolve_device, seed_everything
from moola.train.eval_timeout import EvalOutcome, evaluate_snapshot, run_with_timeout
from moola.train.loop import FitResult, LoopSettings, Trainer, TrainModule

__all__ = [
    "CheckpointKeeper", "ClassifierFit", "ClassifierModule", "CSVLogger", "DeviceError",
    "EarlyStopping", "EvalOutcome", "FitResult", "LoopSettings", "Trainer", "TrainModule",
    "evaluate_snapshot", "fit_classifier", "inverse_frequency_weights", "predict_proba",
    "resolve_device", "run_with_timeout", "seed_everything",
]
