"""The BiLSTM encoder shared by masked-autoencoder pretraining and the downstream classifier.

The encoder's config is saved with its weights and the classifier is built *from that config*:
the earlier tool loaded a 2-layer encoder into a 1-layer model and counted the mismatch as a
partial "match". Parameter names are those of ``nn.LSTM`` under ``lstm.`` (``lstm.weight_ih_l0``,
``lstm.weight_hh_l1_reverse``, ...), so a load report can count encoder tensors exactly.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of a :class:`BiLSTMEncoder`; stored next to its weights."""

    input_features: int  # F: values per timestep (4 for OHLC)
    hidden: int  # LSTM hidden size per direction
    layers: int  # stacked LSTM layers
    bidirectional: bool = True
    dropout: float = 0.0  # between stacked layers (ignored when layers == 1)

    def __post_init__(self) -> None:
        for name in ("input_features", "hidden", "layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"EncoderConfig.{name} must be a positive integer, got {v!r}")
            object.__setattr__(self, name, int(v))  # numpy ints -> int, so to_dict stays JSON-safe
        object.__setattr__(self, "bidirectional", bool(self.bidirectional))
        object.__setattr__(self, "dropout", float(self.dropout))
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"EncoderConfig.dropout must lie in [0, 1), got {self.dropout!r}")

    @property
    def out_dim(self) -> int:
        """Features per timestep that the encoder emits."""
        return self.hidden * (2 if self.bidirectional else 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EncoderConfig":
        """Inverse of :meth:`to_dict`; unknown or missing keys are errors that list the schema."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(
                f"EncoderConfig.from_dict: unknown key(s) {', '.join(unknown)}; "
                f"allowed keys: {', '.join(known)}"
            )
        required = [f.name for f in fields(cls) if f.default is dataclasses.MISSING]
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(
                f"EncoderConfig.from_dict: missing key(s) {', '.join(missing)}; "
                f"required keys: {', '.join(required)}"
            )
        return cls(**dict(d))


class BiLSTMEncoder(nn.Module):
    """Stacked (by default bidirectional) LSTM: x (B, T, F) -> states (B, T, out_dim)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.out_dim = cfg.out_dim
        self.lstm = nn.LSTM(
            input_size=cfg.input_features,
            hidden_size=cfg.hidden,
            num_layers=cfg.layers,
            batch_first=True,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,  # torch warns on dropout with 1 layer
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, features) -> (batch, time, out_dim)."""
        if x.ndim != 3 or x.shape[-1] != self.cfg.input_features:
            raise ValueError(
                f"BiLSTMEncoder expects (batch, time, {self.cfg.input_features}), "
                f"got {tuple(x.shape)}"
            )
        states, _ = self.lstm(x)
        return states


def encoder_state_keys(encoder: BiLSTMEncoder, prefix: str = "") -> list[str]:
    """Names of the encoder's tensors in a state dict (what a load report must find, all of them)."""
    return [prefix + k for k in encoder.state_dict().keys()]


def lstm_layer_of(param_name: str) -> int | None:
    """Layer index of an nn.LSTM parameter name (``weight_ih_l1_reverse`` -> 1), else None."""
    tail = param_name.rsplit(".", 1)[-1]
    if "_l" not in tail:
        return None
    part = tail.rsplit("_l", 1)[-1]
    if part.endswith("_reverse"):
        part = part[: -len("_reverse")]
    return int(part) if part.isdigit() else None
