"""Masked-autoencoder pretraining, encoder quality checks and the encoder checkpoint (gate 3)."""

from moola.pretrain.artifact import CheckpointError, load_encoder_checkpoint, save_encoder
from moola.pretrain.mae import (
    MAEModule,
    MaskedAutoencoder,
    PretrainResult,
    masked_mse,
    pretrain_encoder,
    split_unlabeled,
    stop_and_score,
)
from moola.pretrain.masking import STRATEGIES, make_mask
from moola.pretrain.quality import (
    interpolate_masked,
    interpolate_masked_torch,
    interpolation_baseline_mse,
    probe_baselines,
    ratio_ci,
    reconstruction_report,
)

__all__ = [
    "CheckpointError",
    "MAEModule",
    "MaskedAutoencoder",
    "PretrainResult",
    "STRATEGIES",
    "interpolate_masked",
    "interpolate_masked_torch",
    "interpolation_baseline_mse",
    "probe_baselines",
    "load_encoder_checkpoint",
    "make_mask",
    "masked_mse",
    "pretrain_encoder",
    "ratio_ci",
    "reconstruction_report",
    "save_encoder",
    "split_unlabeled",
    "stop_and_score",
]
