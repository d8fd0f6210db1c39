"""SimpleLSTM: the small unidirectional baseline of gate 6, trained from scratch.

Every layer is built in ``__init__``. The original crashed on CUDA because a layer was created
inside a method on the CPU while the model had already been moved to the GPU.
"""

from __future__ import annotations

import torch
from torch import nn


class SimpleLSTM(nn.Module):
    """One unidirectional LSTM layer; its last hidden state -> linear logits (B, K)."""

    def __init__(
        self, input_features: int, hidden: int = 32, n_classes: int = 2, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if input_features < 1 or hidden < 1 or n_classes < 2:
            raise ValueError(
                f"SimpleLSTM needs input_features >= 1, hidden >= 1, n_classes >= 2; got "
                f"{input_features}, {hidden}, {n_classes}"
            )
        self.input_features = input_features
        self.n_classes = n_classes
        self.lstm = nn.LSTM(input_features, hidden, num_layers=1, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, time, features) -> logits (batch, n_classes)."""
        if x.ndim != 3 or x.shape[-1] != self.input_features:
            raise ValueError(
                f"SimpleLSTM expects (batch, time, {self.input_features}), got {tuple(x.shape)}"
            )
        _, (h_n, _) = self.lstm(x)  # h_n: (1, batch, hidden)
        return self.classifier(self.dropout(h_n[-1]))
