"""The pretrained-encoder file: what gate 3 writes and gate 4 reads.

Layout (a plain dict of tensors and JSON-like values, loadable with ``weights_only=True``)::

    {"format": "moola-encoder/1",
     "encoder_config": EncoderConfig.to_dict(),     # the downstream model is built from this
     "normalization": "window_zscore",              # what the encoder was trained on
     "state_dict": {"lstm.weight_ih_l0": ..., ...}, # keys relative to the encoder
     "extra": {...}}                                # provenance: config digest, metrics, ...

Reading never unpickles arbitrary objects: a file whose payload is not plain data is refused.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from moola.io_utils import atomic_write_bytes

FORMAT = "moola-encoder/1"
_REQUIRED = ("format", "encoder_config", "normalization", "state_dict")


class CheckpointError(ValueError):
    """A file is missing or is not a valid moola encoder checkpoint."""


def save_encoder(
    path: str | Path,
    encoder: torch.nn.Module,
    encoder_cfg: Any,
    normalization: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the encoder checkpoint atomically (temp file in the same folder + ``os.replace``).

    ``encoder`` is the BiLSTMEncoder itself (its state_dict keys are e.g. ``lstm.weight_ih_l0``);
    ``encoder_cfg`` an EncoderConfig; ``extra`` must be JSON-serialisable (it is stored as plain
    data so that ``weights_only`` loading accepts it). Returns the path written.
    """
    path = Path(path)
    extra = dict(extra or {})
    try:
        extra = json.loads(json.dumps(extra))  # plain data only, or weights_only refuses it later
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save_encoder: 'extra' must be JSON-serialisable: {exc}") from exc
    payload = {
        "format": FORMAT,
        "encoder_config": encoder_cfg.to_dict(),
        "normalization": str(normalization),
        "state_dict": {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()},
        "extra": extra,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    # atomic and durable; a full disk is a DiskFullError naming the file
    return atomic_write_bytes(path, buf.getvalue(), fsync=True)


def _refusal_detail(exc: Exception) -> str:
    """The useful line of torch's weights_only refusal (e.g. 'Unsupported global: GLOBAL io.open')."""
    for line in str(exc).splitlines():
        if "Unsupported" in line or "WeightsUnpickler error" in line:
            return line.strip().split(" was not an allowed global")[0].replace("WeightsUnpickler error: ", "")
    return type(exc).__name__


def load_encoder_checkpoint(path: str | Path) -> tuple[Any, dict[str, torch.Tensor], dict[str, Any]]:
    """Read an encoder checkpoint -> ``(EncoderConfig, state_dict, meta)``.

    Uses ``torch.load(weights_only=True, map_location="cpu")``: nothing in the file is executed.
    ``meta`` holds ``path``, ``format``, ``normalization`` and ``extra``. Raises
    :class:`CheckpointError` naming the file and the fix when the file is missing, unreadable,
    carries a pickled object, or lacks the moola-encoder layout.
    """
    from moola.models import EncoderConfig  # imported here: models need not load for saving tests

    path = Path(path)
    fix = "re-run gate 3 (pretraining) to write it with moola.pretrain.artifact.save_encoder"
    if not path.is_file():
        raise CheckpointError(f"{path}: encoder checkpoint not found; {fix}")
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused, the file holds pickled Python objects ({_refusal_detail(exc)}) that "
            "weights_only loading does not execute. It is not a moola encoder checkpoint, or was "
            "written by other code; do not load it with weights_only=False unless you trust its "
            f"source. Fix: {fix}"
        ) from exc
    except Exception as exc:  # truncated / not a torch file: still name the file and the fix
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc}); {fix}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: format {found!r}, expected {FORMAT!r}; {fix}")
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: moola encoder checkpoint lacks {missing}; {fix}")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping of name -> tensor; {fix}")
    try:
        cfg = EncoderConfig.from_dict(payload["encoder_config"])
    except Exception as exc:
        raise CheckpointError(f"{path}: 'encoder_config' is invalid ({exc}); {fix}") from exc
    meta = {
        "path": str(path),
        "format": payload["format"],
        "normalization": payload["normalization"],
        "extra": payload.get("extra", {}),
    }
    return cfg, state, meta
