"""Masked-autoencoder pretraining of the BiLSTM encoder on unlabeled windows (gate 3).

Masked timesteps (all features) are replaced by a learnable mask token before the encoder; a
linear decoder maps each encoder state to a correction added to the linear interpolation across
each masked span; the loss is the MSE on the masked steps only.

Why a residual over interpolation: price windows are close to random walks, for which linear
interpolation between the visible neighbours is already the best guess of a masked span (the
Brownian bridge). A decoder that starts from it (its last layer is zero-initialised) can only
gain by learning what interpolation cannot know (mean reversion inside consolidations, impulse
shapes, bar geometry), which is exactly what gate 3 asks the encoder to show. Training runs in the one moola training loop (:class:`moola.train.Trainer`),
so pretraining gets the status file, metrics.csv, early stopping and resumable checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from moola.pretrain.masking import make_mask
from moola.pretrain.quality import interpolate_masked_torch, interpolation_baseline_mse
from moola.train.shards import ShardPool, one_intra_op_thread, sharded_backward

GATE = "gate_3_pretrain_bilstm"


class MaskedAutoencoder(nn.Module):
    """BiLSTM encoder + learnable mask token + linear decoder of a residual over interpolation.

    ``forward(x: (B, T, F), mask: (B, T) bool) -> reconstruction (B, T, F)``: masked steps are
    replaced by the mask token before the encoder; the output is the linear interpolation of
    the visible steps (:func:`~moola.pretrain.quality.interpolate_masked_torch`) plus the
    decoded encoder states. The decoder starts at zero, so an untrained autoencoder reproduces
    interpolation exactly and only what the encoder learns can move it below gate 3's trivial
    baseline (a random-walk price series is hard to beat by a straight line otherwise: a plain
    decoder spends its first epochs re-learning interpolation). The encoder is ``.encoder``
    (a BiLSTMEncoder), the part saved for transfer.
    """

    def __init__(self, encoder_cfg: Any) -> None:
        super().__init__()
        from moola.models import BiLSTMEncoder

        self.encoder_cfg = encoder_cfg
        self.encoder = BiLSTMEncoder(encoder_cfg)
        # zeros = the per-window mean of z-scored data: a neutral start for the token
        self.mask_token = nn.Parameter(torch.zeros(encoder_cfg.input_features))
        self.decoder = nn.Linear(self.encoder.out_dim, encoder_cfg.input_features)
        nn.init.zeros_(self.decoder.weight)  # start exactly at the interpolation baseline
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden_in = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        base = interpolate_masked_torch(x, mask)  # uses visible steps only
        return base + self.decoder(self.encoder(hidden_in))


def _draws_random(model: nn.Module) -> bool:
    """Whether a training forward of `model` draws random numbers from dropout modules (every
    nn.Dropout kind, attention dropout, dropout between stacked RNN layers); a `forward` that
    calls F.dropout itself is not seen (MaskedAutoencoder's does not)."""
    from torch.nn.modules.dropout import _DropoutNd

    return any((isinstance(m, _DropoutNd) and m.p > 0)
               or (isinstance(m, nn.MultiheadAttention) and m.dropout > 0)
               or (isinstance(m, nn.RNNBase) and m.num_layers > 1 and m.dropout > 0)
               for m in model.modules())


def masked_mse(recon: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over masked steps only (every feature of a masked step counts).

    recon, x: (B, T, F); mask: (B, T) bool. Returns a scalar; 0 when nothing is masked.
    """
    return _masked_sq_sum(recon, x, mask) / _masked_count(mask, recon.shape[-1])


def _masked_sq_sum(recon: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((recon - x) ** 2 * mask.unsqueeze(-1).to(recon.dtype)).sum()


def _masked_count(mask: torch.Tensor, features: int) -> torch.Tensor:
    """How many values the masked MSE averages over (at least 1)."""
    return (mask.sum().to(torch.float32) * features).clamp_min(1.0)


class MAEModule:
    """TrainModule for :class:`MaskedAutoencoder` (see docs/CONTRACTS.md, Training loop).

    Training masks are drawn fresh for every batch from a generator that is re-seeded at the
    start of each epoch from ``(seed, epoch)``: a resumed run draws the same masks as an
    uninterrupted one. Validation uses masks drawn ONCE at construction (``val_masks``) so that
    ``val_loss`` is comparable across epochs; ``val_ratio`` is val_loss over the interpolation
    baseline on the same masks (gate 3's criterion, visible during training; gate 3 itself
    judges it on other held-out windows, which chose no epoch). `X_val` is what early stopping
    reads: in :func:`pretrain_encoder`, the stopping half of the held-out tail.

    A step cuts the batch into `shards` shards (default ``cfg.pretrain.shards``;
    :meth:`forward_backward`) and computes their gradients on up to `threads` threads; call
    :meth:`close` when done.
    """

    def __init__(self, model: MaskedAutoencoder, cfg: Any, X_val: np.ndarray, seed: int | None = None,
                 threads: int = 1, shards: int | None = None) -> None:
        self.model = model
        self.cfg = cfg
        self.seed = int(cfg.run.seed if seed is None else seed)
        p = cfg.pretrain
        self.shards = max(1, int(p.shards if shards is None else shards))
        n_threads = max(1, min(int(threads), self.shards))
        if _draws_random(model):
            # dropout between stacked LSTM layers draws from torch's one default generator:
            # shards on threads would take its numbers in a racing order
            n_threads = 1
        self._pool = ShardPool(n_threads)
        self._mask_args = (p.mask_strategy, p.mask_ratio, p.patch_size)
        self._gen = torch.Generator().manual_seed(self.seed)
        self.X_val = torch.as_tensor(np.asarray(X_val, dtype=np.float32))
        if self.X_val.ndim != 3 or len(self.X_val) == 0:
            raise ValueError(f"MAEModule: X_val must be a non-empty (N, T, F) array, got {tuple(self.X_val.shape)}")
        val_gen = torch.Generator().manual_seed(self.seed + 1)
        self.val_masks = make_mask(len(self.X_val), self.X_val.shape[1], *self._mask_args, generator=val_gen)
        self.interp_mse = interpolation_baseline_mse(self.X_val, self.val_masks)

    def configure_optimizer(self) -> torch.optim.Optimizer:
        """AdamW at cfg.pretrain.lr (torch's default weight decay 0.01)."""
        return torch.optim.AdamW(self.model.parameters(), lr=self.cfg.pretrain.lr)

    def on_epoch_start(self, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        """Re-seed the training-mask generator from (seed, epoch): resume-stable masks."""
        self._gen.manual_seed(self.seed * 100_003 + int(epoch) + 7)

    def training_step(self, batch: Any, device: torch.device) -> torch.Tensor:
        """Masked MSE of one batch under a freshly drawn mask (one pass over the whole batch)."""
        x, mask = self._masked_batch(batch, device)
        return masked_mse(self.model(x, mask), x, mask)

    def forward_backward(self, batch: Any, device: torch.device) -> torch.Tensor:
        """One batch's masked MSE (returned, detached) and its gradient, put into ``.grad``.

        The batch (and its mask, drawn whole, as :meth:`training_step` draws it) is cut into
        ``shards`` equal parts; each part's squared error is divided by the whole batch's
        masked count, so the parts' gradients add up to the batch's. Each part's gradient is
        taken with ``torch.autograd.grad`` (on a worker thread when there are several) and the
        parts are summed in shard order on this thread: the sum, hence the step, does not
        depend on how many threads computed them.
        """
        x, mask = self._masked_batch(batch, device)
        shards = min(self.shards, len(x))  # a short last batch: no empty shard
        if shards <= 1:
            loss = masked_mse(self.model(x, mask), x, mask)
            loss.backward()
            return loss.detach()
        count = _masked_count(mask, x.shape[-1])
        params = [p for p in self.model.parameters() if p.requires_grad]
        parts = list(zip(x.tensor_split(shards), mask.tensor_split(shards)))
        return sharded_backward(
            params, parts, lambda part: _masked_sq_sum(self.model(*part), *part) / count,
            self._pool)

    @property
    def shard_threads(self) -> int:
        """Threads the shards run on."""
        return self._pool.threads

    def close(self) -> None:
        """Stop the shard threads (idempotent; a later step runs its shards here)."""
        self._pool.close()

    def _masked_batch(self, batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        mask = make_mask(x.shape[0], x.shape[1], *self._mask_args, generator=self._gen)
        return x.to(device), mask.to(device)

    @torch.no_grad()
    def validation_metrics(self, model: nn.Module, device: torch.device, batch_size: int = 512) -> dict[str, float]:
        """Masked MSE on ``X_val`` (the stopping windows) under the fixed masks -> ``val_loss``,
        ``val_ratio``."""
        model.eval()
        total, count = 0.0, 0.0
        for i in range(0, len(self.X_val), batch_size):
            x = self.X_val[i : i + batch_size].to(device)
            m = self.val_masks[i : i + batch_size].to(device)
            sq = (model(x, m) - x) ** 2 * m.unsqueeze(-1)
            total += float(sq.sum())
            count += float(m.sum()) * x.shape[-1]
        val_loss = total / max(count, 1.0)
        ratio = val_loss / self.interp_mse if self.interp_mse > 0 else float("inf")
        return {"val_loss": val_loss, "val_ratio": ratio}


@dataclass
class PretrainResult:
    """What :func:`pretrain_encoder` returns.

    ``mae`` holds the best weights (by the masked MSE on the stopping windows);
    ``train_idx`` / ``heldout_idx`` are row positions in the unlabeled pool, the held-out tail
    cut into ``stop_idx`` (its earlier half: early stopping and the best epoch) and
    ``score_idx`` (its later half, which chose nothing: what gate 3 judges); ``val_masks`` /
    ``score_masks`` their fixed masks ((N, T) each); ``interp_mse`` interpolation's MSE on the
    stopping windows.
    """

    mae: MaskedAutoencoder
    fit: Any  # moola.train.FitResult
    heldout_idx: np.ndarray
    train_idx: np.ndarray
    encoder_cfg: Any
    val_masks: torch.Tensor
    interp_mse: float
    stop_idx: np.ndarray
    score_idx: np.ndarray
    score_masks: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)


def split_unlabeled(n: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train_idx, heldout_idx): the held-out set is the LAST share of the pool.

    The unlabeled windows overlap in time, so a random held-out set would share most of its
    bars with training windows; a tail slice keeps all but the boundary windows disjoint.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"pretrain.val_fraction = {val_fraction!r}; must lie strictly between 0 and 1")
    if n < 2:
        raise ValueError(f"pretraining needs at least 2 unlabeled windows, got {n}")
    # at least 2 when the pool allows: one to stop pretraining on, one to score (stop_and_score)
    n_val = min(n - 1, max(2 if n >= 3 else 1, int(round(val_fraction * n))))
    idx = np.arange(n, dtype=np.int64)
    return idx[: n - n_val], idx[n - n_val :]


def stop_and_score(heldout_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stop_idx, score_idx): the held-out tail's earlier half chooses the epoch (early
    stopping, best weights), its later half is scored by gate 3 and chooses nothing (an odd
    window goes to the scored half). Like the tail and the training windows, the two halves
    share bars at their boundary: the first ceil(T / stride) scored windows overlap stopping
    windows (no gap is left, as none is between training and held-out windows)."""
    heldout_idx = np.asarray(heldout_idx, dtype=np.int64)
    if len(heldout_idx) < 2:
        raise ValueError(
            f"pretraining holds out {len(heldout_idx)} unlabeled window(s); it needs at least 2 "
            f"(one half to stop on, one to score): raise pretrain.val_fraction or add "
            f"unlabeled windows")
    half = len(heldout_idx) // 2
    return heldout_idx[:half], heldout_idx[half:]


def encoder_config_for(cfg: Any, input_features: int) -> Any:
    """The EncoderConfig a run's model settings ask for."""
    from moola.models import EncoderConfig

    return EncoderConfig(
        input_features=int(input_features),
        hidden=cfg.model.hidden,
        layers=cfg.model.layers,
        bidirectional=True,
        dropout=cfg.model.dropout,
    )


def pretrain_encoder(
    X_unlabeled: np.ndarray,
    cfg: Any,
    run_dir: str | Path,
    device: torch.device | str,
    status: Any = None,
    resume: bool = True,
    gate: str = GATE,
    on_checkpoint: Any = None,
    on_eval: Any = None,
) -> PretrainResult:
    """Pretrain a MaskedAutoencoder on ``X_unlabeled: (m, T, F)`` (normalised windows).

    The pool is split with :func:`split_unlabeled` (cfg.pretrain.val_fraction), the held-out
    tail with :func:`stop_and_score` (early stopping reads only its first half); training runs in
    :class:`moola.train.Trainer` with ``LoopSettings.from_config(cfg, "pretrain",
    monitor="val_loss", mode="min")``: early stopping, checkpoints under ``run_dir/checkpoints``
    and, with ``resume=True``, continuation from ``last.pt`` after a crash. The returned MAE
    holds the best weights.
    """
    from moola.train import LoopSettings, Trainer, seed_everything
    from moola.train.device import worker_threads

    X = np.ascontiguousarray(np.asarray(X_unlabeled, dtype=np.float32))
    if X.ndim != 3:
        raise ValueError(f"pretrain_encoder: X_unlabeled must be (m, T, F), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("pretrain_encoder: X_unlabeled contains NaN or inf; validate the data first")
    device = torch.device(device)
    train_idx, heldout_idx = split_unlabeled(len(X), cfg.pretrain.val_fraction)
    stop_idx, score_idx = stop_and_score(heldout_idx)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    enc_cfg = encoder_config_for(cfg, X.shape[2])
    mae = MaskedAutoencoder(enc_cfg).to(device)
    threads = worker_threads(device)
    # shards pay on a CPU's cores and caches; an accelerator's kernels gain nothing from them
    shards = cfg.pretrain.shards if device.type == "cpu" else 1
    module = MAEModule(mae, cfg, X[stop_idx], seed=cfg.run.seed, threads=threads,
                       shards=shards)
    p = cfg.pretrain
    score_masks = make_mask(len(score_idx), X.shape[1], p.mask_strategy, p.mask_ratio,
                            p.patch_size, generator=torch.Generator().manual_seed(cfg.run.seed + 2))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(X[train_idx])),
        batch_size=cfg.pretrain.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(cfg.run.seed),
        num_workers=cfg.run.num_workers,
    )
    settings = LoopSettings.from_config(cfg, "pretrain", monitor="val_loss", mode="min")
    trainer = Trainer(settings, Path(run_dir), device, gate, status=status,
                      on_checkpoint=on_checkpoint, on_eval=on_eval)
    try:
        with one_intra_op_thread(module.shard_threads > 1):
            fit = trainer.fit(module, loader, resume=resume)
    finally:
        module.close()
    return PretrainResult(
        mae=module.model,
        fit=fit,
        heldout_idx=heldout_idx,
        train_idx=train_idx,
        encoder_cfg=enc_cfg,
        val_masks=module.val_masks,
        interp_mse=module.interp_mse,
        stop_idx=stop_idx,
        score_idx=score_idx,
        score_masks=score_masks,
    )
