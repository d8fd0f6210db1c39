"""Evidence for gate 3: is the pretrained encoder any good?

Two independent checks, each against a trivial reference so that a number means something:

- :func:`reconstruction_report`: masked-step MSE of the autoencoder next to the MSE of linear
  interpolation across each masked span (and of predicting the window mean). An encoder that
  cannot beat interpolation has learnt nothing a straight line does not already know.
- :func:`linear_probe`: a logistic-regression probe on frozen encoder features, cross-validated
  on the labeled TRAIN split, scored with macro-F1 next to the majority-class baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def _as_numpy(a: Any) -> np.ndarray:
    """Tensor or array -> numpy array (on the CPU)."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def interpolate_masked(x: Any, mask: Any) -> np.ndarray:
    """Fill masked steps by linear interpolation between the nearest unmasked neighbours.

    x: (N, T, F); mask: (N, T) bool, True = masked. Each feature is interpolated across each
    masked span from the last visible step before it to the first visible step after it; a span
    touching an edge carries the nearest visible value; a window with no visible step becomes 0
    (the mean of z-scored data). Unmasked steps are returned unchanged. Fully vectorised.
    """
    x = _as_numpy(x).astype(np.float64, copy=False)
    mask = _as_numpy(mask).astype(bool, copy=False)
    if x.ndim != 3 or mask.shape != x.shape[:2]:
        raise ValueError(f"interpolate_masked: x {x.shape} must be (N, T, F) and mask (N, T); got mask {mask.shape}")
    N, T, _ = x.shape
    t = np.broadcast_to(np.arange(T), (N, T))
    visible = ~mask
    # index of the last visible step at or before t (-1: none) and first at or after t (T: none)
    prev = np.maximum.accumulate(np.where(visible, t, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(visible, t, T)[:, ::-1], axis=1)[:, ::-1]
    has_prev, has_next = prev >= 0, nxt < T
    x_prev = np.take_along_axis(x, np.clip(prev, 0, T - 1)[..., None], axis=1)
    x_next = np.take_along_axis(x, np.clip(nxt, 0, T - 1)[..., None], axis=1)
    span = np.maximum(nxt - prev, 1)  # 0 on visible steps (prev == nxt == t)
    w = np.where(has_prev & has_next, (t - prev) / span, 0.0)[..., None]
    both = x_prev * (1.0 - w) + x_next * w
    fill = np.where(
        (has_prev & has_next)[..., None], both,
        np.where(has_prev[..., None], x_prev, np.where(has_next[..., None], x_next, 0.0)),
    )
    return np.where(mask[..., None], fill, x)


def interpolate_masked_torch(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`interpolate_masked` (same rules), on x's device and dtype.

    Used inside the autoencoder, whose output is this interpolation plus a learned residual.
    x: (B, T, F); mask: (B, T) bool. No gradient flows through the step indices.
    """
    B, T, _ = x.shape
    t = torch.arange(T, device=x.device).expand(B, T)
    visible = ~mask
    prev = torch.cummax(torch.where(visible, t, torch.full_like(t, -1)), dim=1).values
    nxt = torch.cummin(torch.where(visible, t, torch.full_like(t, T)).flip(1), dim=1).values.flip(1)
    has_prev, has_next = prev >= 0, nxt < T
    x_prev = torch.gather(x, 1, prev.clamp(0, T - 1).unsqueeze(-1).expand_as(x))
    x_next = torch.gather(x, 1, nxt.clamp(0, T - 1).unsqueeze(-1).expand_as(x))
    both = has_prev & has_next
    w = torch.where(both, (t - prev).to(x.dtype) / (nxt - prev).clamp_min(1).to(x.dtype), torch.zeros((), dtype=x.dtype, device=x.device))
    w = w.unsqueeze(-1)
    fill = torch.where(
        both.unsqueeze(-1), x_prev * (1 - w) + x_next * w,
        torch.where(has_prev.unsqueeze(-1), x_prev,
                    torch.where(has_next.unsqueeze(-1), x_next, torch.zeros_like(x))),
    )
    return torch.where(mask.unsqueeze(-1), fill, x)


def _masked_mse_np(pred: np.ndarray, x: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared error over masked steps (all features); NaN when nothing is masked."""
    m = mask.astype(bool)
    if not m.any():
        return float("nan")
    return float(((pred - x) ** 2)[m].mean())


def interpolation_baseline_mse(x: Any, mask: Any) -> float:
    """Masked-step MSE of :func:`interpolate_masked` (the trivial reconstruction of gate 3)."""
    xn = _as_numpy(x).astype(np.float64)
    mn = _as_numpy(mask).astype(bool)
    return _masked_mse_np(interpolate_masked(xn, mn), xn, mn)


def window_mean_mse(x: Any, mask: Any) -> float:
    """Masked-step MSE of predicting, per window and feature, the mean of the VISIBLE steps.

    (The mean over the whole window would peek at the masked values.) 0 for a window with no
    visible step.
    """
    xn = _as_numpy(x).astype(np.float64)
    mn = _as_numpy(mask).astype(bool)
    vis = (~mn)[..., None]
    denom = np.maximum(vis.sum(axis=1, keepdims=True), 1)
    mean = (xn * vis).sum(axis=1, keepdims=True) / denom
    return _masked_mse_np(np.broadcast_to(mean, xn.shape), xn, mn)


@torch.no_grad()
def reconstruction_report(
    mae: torch.nn.Module,
    X_heldout: Any,
    masks: Any,
    device: torch.device | str,
    batch_size: int = 512,
    per_window: bool = False,
) -> dict[str, Any]:
    """Masked MSE of the autoencoder on held-out windows against two trivial reconstructions.

    mae: a :class:`~moola.pretrain.mae.MaskedAutoencoder`; X_heldout: (N, T, F); masks: (N, T)
    bool (fixed masks, so every method is scored on the same steps). Returns ``mae_mse``,
    ``interp_mse`` (linear interpolation), ``mean_mse`` (visible-window mean), ``ratio`` =
    mae_mse / interp_mse (gate 3 wants it <= 1 - recon_margin), ``n_windows``, ``masked_share``;
    with `per_window`, ``per_window`` = each window's summed squared errors of the MAE and of
    interpolation (what :func:`ratio_ci` resamples).
    The model is put in eval mode and its previous mode restored.
    """
    xn = _as_numpy(X_heldout).astype(np.float32)
    mn = _as_numpy(masks).astype(bool)
    if xn.shape[:2] != mn.shape or len(xn) == 0:
        raise ValueError(f"reconstruction_report: X {xn.shape} and masks {mn.shape} must be (N, T, F) and (N, T), N > 0")
    was_training = mae.training
    mae.eval()
    try:
        recon = []
        for i in range(0, len(xn), batch_size):
            xb = torch.from_numpy(xn[i : i + batch_size]).to(device)
            mb = torch.from_numpy(mn[i : i + batch_size]).to(device)
            recon.append(mae(xb, mb).float().cpu().numpy())
    finally:
        mae.train(was_training)
    rec = np.concatenate(recon).astype(np.float64)
    x64 = xn.astype(np.float64)
    interp_rec = interpolate_masked(x64, mn)  # once: the MSE and the per-window sums read it
    mae_mse = _masked_mse_np(rec, x64, mn)
    interp = _masked_mse_np(interp_rec, x64, mn)
    out = {
        "mae_mse": mae_mse,
        "interp_mse": interp,
        "mean_mse": window_mean_mse(x64, mn),
        "ratio": mae_mse / interp if interp > 0 else float("inf"),
        "n_windows": int(len(xn)),
        "masked_share": float(mn.mean()),
    }
    if per_window:
        m = mn[:, :, None]
        out["per_window"] = {  # squared errors summed over each window's masked values
            "mae_sq": (((rec - x64) ** 2) * m).sum(axis=(1, 2)).tolist(),
            "interp_sq": (((interp_rec - x64) ** 2) * m).sum(axis=(1, 2)).tolist(),
        }
    return out


def ratio_ci(mae_sq: Any, interp_sq: Any, *, n_bootstrap: int, ci_level: float,
             seed: int, block: int = 1) -> tuple[float, float]:
    """Percentile CI of sum(mae_sq) / sum(interp_sq) (the masked-MSE ratio: both sums run over
    the same masked values) by the windows' bootstrap every verdict uses
    (:func:`moola.metrics.window_bootstrap`: paired over windows, moving blocks of `block`
    windows (gates.bootstrap_block), read at the expanded level for the number of units drawn:
    gate 3 may score only 8 windows). One window, or windows whose interpolation error is all
    zero, give the point value twice."""
    from moola.metrics import window_bootstrap

    a = np.asarray(mae_sq, dtype=np.float64)
    b = np.asarray(interp_sq, dtype=np.float64)
    point = float(a.sum() / b.sum()) if b.sum() > 0 else float("inf")
    if len(a) < 2 or not np.isfinite(point) or (np.all(a == a[0]) and np.all(b == b[0])):
        return point, point

    def ratio(idx: np.ndarray) -> np.ndarray:  # (B, n) resampled window indices -> (B,)
        with np.errstate(divide="ignore", invalid="ignore"):
            return a[idx].sum(axis=-1) / b[idx].sum(axis=-1)

    (lo, hi), _ = window_bootstrap(ratio, len(a), n_bootstrap=n_bootstrap, ci_level=ci_level,
                                   seed=seed, block=block)
    return float(lo), float(hi)


@torch.no_grad()
def encode_windows(encoder: torch.nn.Module, X: Any, device: torch.device | str, batch_size: int = 256) -> np.ndarray:
    """Frozen-encoder features (N, 2 * out_dim): mean over time, then the final state.

    The final state is the last step of each direction's reading order: for a bidirectional
    encoder the forward half is taken at step T-1 and the backward half at step 0 (the backward
    LSTM's state at T-1 has seen a single step). The encoder's mode is restored afterwards.
    """
    xn = _as_numpy(X).astype(np.float32)
    was_training = encoder.training
    encoder.eval()
    bidirectional = bool(getattr(getattr(encoder, "cfg", None), "bidirectional", False))
    feats = []
    try:
        for i in range(0, len(xn), batch_size):
            h = encoder(torch.from_numpy(xn[i : i + batch_size]).to(device)).float()  # (B, T, D)
            if bidirectional:
                half = h.shape[-1] // 2
                last = torch.cat([h[:, -1, :half], h[:, 0, half:]], dim=-1)
            else:
                last = h[:, -1]
            feats.append(torch.cat([h.mean(dim=1), last], dim=-1).cpu().numpy())
    finally:
        encoder.train(was_training)
    return np.concatenate(feats).astype(np.float64)


def _probe_pipeline() -> Pipeline:
    return Pipeline([
        ("scale", StandardScaler()),
        ("logreg", LogisticRegression(class_weight="balanced", max_iter=2000)),
    ])


def probe_baselines(encoder: torch.nn.Module, encoder_cfg: Any, X: Any, y: Any, folds: Any,
                    device: torch.device | str, seed: int) -> dict[str, Any]:
    """The same linear probe on three representations, over the protocol's walk-forward folds.

    Representations: the pretrained encoder's features, the raw normalised windows (flattened)
    and a randomly initialised encoder of the same architecture (seeded). Each fold's probe
    trains on the fold's training rows (fit + stopping slice) and predicts its scored rows; the
    pooled predictions are returned under ``arrays`` (``y``, ``score_idx`` and one prediction
    array per representation) for the gate's paired comparisons, with each representation's
    pooled macro-F1 under ``macro_f1``. A probe that only matches the raw windows or a random
    encoder says the pretraining added nothing a linear model could use.
    """
    from moola.models.encoder import BiLSTMEncoder

    Xn = _as_numpy(X).astype(np.float32)
    yn = _as_numpy(y).astype(np.int64)
    torch.manual_seed(seed)
    random_encoder = BiLSTMEncoder(encoder_cfg).to(device)
    feats = {
        "encoder": encode_windows(encoder, Xn, device),
        "raw": Xn.reshape(len(Xn), -1).astype(np.float64),
        "random_encoder": encode_windows(random_encoder, Xn, device),
    }
    from moola.protocol.folds import pooled_index

    score_idx, _ = pooled_index(folds)
    arrays: dict[str, np.ndarray] = {"y": yn[score_idx], "score_idx": score_idx}
    for name, F in feats.items():
        preds = []
        for f in folds:
            tr = np.concatenate([f.fit_idx, f.stop_idx])
            if len(np.unique(yn[tr])) < 2:  # a one-class training block predicts that class
                preds.append(np.full(len(f.score_idx), yn[tr][0]))
                continue
            preds.append(_probe_pipeline().fit(F[tr], yn[tr]).predict(F[f.score_idx]))
        arrays[name] = np.concatenate(preds).astype(np.int64)
    return {
        "macro_f1": {name: float(f1_score(arrays["y"], arrays[name], average="macro",
                                          zero_division=0)) for name in feats},
        "n_scored": int(len(score_idx)),
        "feature_dims": {name: int(F.shape[1]) for name, F in feats.items()},
        "arrays": arrays,
    }
