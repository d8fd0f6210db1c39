"""Networks and the non-deep control: BiLSTM encoder, EnhancedSimpleLSTM, SimpleLSTM, MiniRocket.

No model creates a parameter or module outside ``__init__`` (see DESIGN.md, device bug).
"""

from __future__ import annotations

from torch import nn

from .encoder import BiLSTMEncoder, EncoderConfig, encoder_state_keys, lstm_layer_of
from .enhanced import EnhancedSimpleLSTM
from .minirocket import MiniRocketControl
from .simple import SimpleLSTM


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (only those with requires_grad when trainable_only)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "BiLSTMEncoder",
    "EncoderConfig",
    "EnhancedSimpleLSTM",
    "MiniRocketControl",
    "SimpleLSTM",
    "count_parameters",
    "encoder_state_keys",
    "lstm_layer_of",
]
