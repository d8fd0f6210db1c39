"""One training step of many replicas of one architecture at once (see moola.train.together).

A replica's model splits into a *trunk*, the LSTM, which runs once per replica on its own
``nn.LSTM`` kernels (its own weights, its own batch), and a *head*: attention, norm, pooling and
the classifier, computed for all replicas together on their weights stacked along a replica
axis, so that its dozens of small operations are paid once per step instead of once per replica.

Each replica draws its dropout masks from its own generator, in the order and shapes its model's
own ``forward`` draws them from torch's default generator: on the CPU a replica trained together
with others takes the steps it takes alone (to float rounding), whichever replicas it shares a
step with (CUDA's fused dropout kernel draws other masks). Written by hand rather than with ``torch.func.vmap``: vmap's random operations draw one
stream for the whole replica axis (``randomness="different"``), so a replica's masks would
depend on which others it was trained with; and ``nn.LSTM`` has no batching rule over weights.

Only the exact classes below are supported (a subclass may change ``forward``); others train
one replica at a time. Training mode only: evaluation runs each replica's own ``forward``.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .enhanced import EnhancedSimpleLSTM
from .simple import SimpleLSTM

__all__ = ["BatchedSplit", "split_for", "stacked_dropout"]


class BatchedSplit(Protocol):
    """How one architecture splits into a per-replica trunk and a batched head.

    `shards_pay`: whether one model's batch cut into shards on a thread per core trains faster
    than one pass (moola.train.shards; measured per architecture)."""

    shards_pay: bool

    def trunk(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, F) -> what the head reads, for one replica (its own kernels)."""
        ...

    def head(self, models: Sequence[nn.Module], h: torch.Tensor, sizes: Sequence[int],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        """h (A, B, ...) stacked trunk outputs, padded to B rows -> logits (A, B, K)."""
        ...

    def trunk_draws_random(self, model: nn.Module) -> bool:
        """Whether the trunk draws random numbers in training, whatever its mode now (then it
        cannot share a thread pool: torch's default generator would be shared)."""
        ...


def stacked_dropout(x: torch.Tensor, p: float, sizes: Sequence[int],
                    generators: Sequence[torch.Generator], *, time_major: bool = False
                    ) -> torch.Tensor:
    """Dropout on x (A, B, ...) with replica a's mask drawn from generators[a] over its first
    sizes[a] rows, exactly as ``F.dropout`` draws it on a (sizes[a], ...) tensor (CPU:
    bernoulli(1 - p) in memory order, divided by 1 - p). `time_major`: x (A, B, T, D) whose
    single-replica tensor lies in memory as (T, B, D) (nn.MultiheadAttention's batch_first
    output is a transposed view), so the mask is drawn in that order. p = 0 draws nothing, as
    F.dropout does."""
    if p == 0:
        return x
    masks = []
    for a, (b, gen) in enumerate(zip(sizes, generators)):
        shape = (b, *x.shape[2:])
        if time_major:
            shape = (shape[1], b, *shape[2:])
        noise = torch.empty(shape, device=x.device, dtype=x.dtype)
        noise.bernoulli_(1 - p, generator=gen).div_(1 - p)
        if time_major:
            noise = noise.transpose(0, 1)
        if b < x.shape[1]:  # padding rows: any value, the loss ignores them
            noise = torch.cat([noise, noise.new_ones((x.shape[1] - b, *x.shape[2:]))])
        masks.append(noise)
    return x * torch.stack(masks)


def _stack(models: Sequence[nn.Module], get) -> torch.Tensor:
    return torch.stack([get(m) for m in models])


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per-replica Linear: x (A, N, in), weight (A, out, in), bias (A, out) -> (A, N, out)."""
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _lstm_draws_random(lstm: nn.LSTM) -> bool:
    """Whether the LSTM draws dropout masks between its layers when it trains (whatever mode
    it is in now: callers decide before training starts)."""
    return lstm.num_layers > 1 and lstm.dropout > 0


class EnhancedSplit:
    """EnhancedSimpleLSTM: trunk = the BiLSTM encoder; head = self-attention, residual
    LayerNorm, mean/max pooling, MLP (see moola.models.enhanced)."""

    # a batch of 16 (T 105, hidden 64) forward + backward: one pass on one thread 36.7 ms,
    # 2 shards of 8 on two threads 18.0 ms
    shards_pay = True

    def trunk(self, model: EnhancedSimpleLSTM, x: torch.Tensor) -> torch.Tensor:
        return model.encoder(x)

    def trunk_draws_random(self, model: EnhancedSimpleLSTM) -> bool:
        return _lstm_draws_random(model.encoder.lstm)

    def head(self, models: Sequence[EnhancedSimpleLSTM], h: torch.Tensor, sizes: Sequence[int],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        A, B, T, D = h.shape
        first = models[0]
        heads = first.attention_heads
        # nn.MultiheadAttention (batch_first, need_weights=False): in-projection, scaled
        # dot-product attention per head, out-projection
        attn = [m.attention for m in models]
        qkv = _linear(h.reshape(A, B * T, D), _stack(attn, lambda a: a.in_proj_weight),
                      _stack(attn, lambda a: a.in_proj_bias))
        q, k, v = (t.reshape(A * B, heads, T, D // heads) for t in
                   qkv.view(A, B, T, 3, heads, D // heads).permute(3, 0, 1, 4, 2, 5))
        # 4-D, as nn.MultiheadAttention calls it: the same fused (flash) CPU kernel as a
        # replica alone; a 5-D call takes the unfused path (bmm, softmax, -inf checks): 9.6 vs
        # 7.0 ms per replica forward + backward on one thread (within noise on two)
        o = F.scaled_dot_product_attention(q, k, v)  # (A B, heads, T, D/heads)
        o = o.view(A, B, heads, T, D // heads).permute(0, 1, 3, 2, 4).reshape(A, B * T, D)
        a = _linear(o, _stack(attn, lambda a: a.out_proj.weight),
                    _stack(attn, lambda a: a.out_proj.bias)).view(A, B, T, D)
        a = stacked_dropout(a, first.attn_dropout.p, sizes, generators, time_major=True)
        z = F.layer_norm(h + a, (D,), eps=first.norm.eps)
        z = (z * _stack(models, lambda m: m.norm.weight)[:, None, None]
             + _stack(models, lambda m: m.norm.bias)[:, None, None])
        pooled = torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=-1)  # (A, B, 2D)
        lin1, act, drop, lin2 = first.head
        hid = _linear(pooled, _stack(models, lambda m: m.head[0].weight),
                      _stack(models, lambda m: m.head[0].bias))
        hid = stacked_dropout(F.gelu(hid, approximate=act.approximate), drop.p, sizes,
                              generators)
        return _linear(hid, _stack(models, lambda m: m.head[3].weight),
                       _stack(models, lambda m: m.head[3].bias))


class SimpleSplit:
    """SimpleLSTM: trunk = the LSTM's last hidden state; head = dropout + linear."""

    # its step is 1.9 ms on one thread; 2 shards on two threads 2.3 ms
    shards_pay = False

    def trunk(self, model: SimpleLSTM, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != model.input_features:
            raise ValueError(f"SimpleLSTM expects (batch, time, {model.input_features}), "
                             f"got {tuple(x.shape)}")
        _, (h_n, _) = model.lstm(x)
        return h_n[-1]

    def trunk_draws_random(self, model: SimpleLSTM) -> bool:
        return _lstm_draws_random(model.lstm)

    def head(self, models: Sequence[SimpleLSTM], h: torch.Tensor, sizes: Sequence[int],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        h = stacked_dropout(h, models[0].dropout.p, sizes, generators)
        return _linear(h, _stack(models, lambda m: m.classifier.weight),
                       _stack(models, lambda m: m.classifier.bias))


_SPLITS = {EnhancedSimpleLSTM: EnhancedSplit(), SimpleLSTM: SimpleSplit()}


def split_for(models: Sequence[nn.Module]) -> BatchedSplit | None:
    """The split for these replicas, or None when they cannot train together: another class
    (subclasses included), or replicas whose shapes or dropout rates differ."""
    if not models:
        return None
    kind = type(models[0])
    split = _SPLITS.get(kind)
    if split is None or any(type(m) is not kind for m in models):
        return None
    shapes = [[(n, tuple(p.shape)) for n, p in m.named_parameters()] for m in models]
    rates = [[mod.p for mod in m.modules() if isinstance(mod, nn.Dropout)] for m in models]
    if any(s != shapes[0] for s in shapes) or any(r != rates[0] for r in rates):
        return None
    if kind is EnhancedSimpleLSTM and any(m.attention_heads != models[0].attention_heads
                                          for m in models):
        return None
    return split
