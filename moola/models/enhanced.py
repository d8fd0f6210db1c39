"""EnhancedSimpleLSTM: BiLSTM encoder + self-attention + mean/max pooling + MLP head.

Built from an :class:`EncoderConfig` (the pretrained encoder's saved config, in gate 4), so the
encoder's tensors are exactly those of the checkpoint. Every module is created in ``__init__``;
``forward`` only computes.

    x (B, T, F) -> encoder (B, T, D) -> LayerNorm(h + MHA(h, h, h)) (B, T, D)
                -> [mean_t, max_t] (B, 2D) -> Linear, GELU, Dropout, Linear -> logits (B, K)
"""

from __future__ import annotations

import torch
from torch import nn

from .encoder import BiLSTMEncoder, EncoderConfig, lstm_layer_of


def _divisible_heads(dim: int, wanted: int) -> int:
    """Largest head count <= wanted that divides dim (nn.MultiheadAttention needs dim % heads == 0)."""
    for h in range(max(1, min(wanted, dim)), 0, -1):
        if dim % h == 0:
            return h
    return 1


class EnhancedSimpleLSTM(nn.Module):
    """The main classifier. `attention_heads` falls back to a divisor of the encoder width."""

    def __init__(
        self,
        encoder_cfg: EncoderConfig,
        n_classes: int,
        attention_heads: int = 2,
        head_hidden: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"EnhancedSimpleLSTM needs n_classes >= 2, got {n_classes}")
        if attention_heads < 1 or head_hidden < 1:
            raise ValueError(
                f"attention_heads and head_hidden must be >= 1, got {attention_heads}, {head_hidden}"
            )
        self.encoder_cfg = encoder_cfg
        self.n_classes = n_classes
        self.requested_heads = attention_heads
        d = encoder_cfg.out_dim
        # decided once here: forward never changes the architecture
        self.attention_heads = _divisible_heads(d, attention_heads)
        self.encoder = BiLSTMEncoder(encoder_cfg)
        # no dropout on the (B, heads, T, T) attention weights: on CPU it draws a mask per
        # weight (~5 ms of an ~8 ms smoke step, measured); attn_dropout on the output regularises
        self.attention = nn.MultiheadAttention(d, self.attention_heads, batch_first=True)
        self.attn_dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Sequential(
            nn.Linear(2 * d, head_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, features) -> logits (batch, n_classes)."""
        h = self.encoder(x)  # (B, T, D)
        a, _ = self.attention(h, h, h, need_weights=False)
        h = self.norm(h + self.attn_dropout(a))  # residual keeps the encoder signal intact
        pooled = torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=-1)  # (B, 2D)
        return self.head(pooled)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the (possibly pretrained) encoder."""
        return list(self.encoder.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Everything that is not the encoder: attention, norm, classifier (always trained)."""
        enc = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in enc]

    def encoder_layer_groups(self) -> list[list[nn.Parameter]]:
        """Encoder parameters per LSTM layer, bottom (0) to top, both directions together.

        Layer i holds the tensors whose name ends in ``_l{i}`` or ``_l{i}_reverse``; used for
        progressive unfreezing (top layer first) and discriminative learning rates.
        """
        groups: list[list[nn.Parameter]] = [[] for _ in range(self.encoder_cfg.layers)]
        for name, p in self.encoder.lstm.named_parameters():
            layer = lstm_layer_of(name)
            if layer is None:  # nn.LSTM has only *_l{i}[_reverse] tensors; anything else is a bug
                raise RuntimeError(f"encoder parameter {name!r} belongs to no LSTM layer")
            groups[layer].append(p)
        return groups
