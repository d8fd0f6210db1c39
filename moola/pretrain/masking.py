"""Timestep masks for masked-autoencoder pretraining.

A mask is a boolean tensor ``(batch, T)``; ``True`` marks a masked timestep, and every feature of
a masked timestep is hidden from the encoder. Three strategies:

- ``random``: exactly ``n`` timesteps per window, chosen uniformly without replacement.
- ``block``: one contiguous block of exactly ``n`` timesteps at a uniformly random start.
- ``patch``: the window is cut into consecutive patches of ``patch_size`` steps (patch ``k``
  covers steps ``[k*patch_size, (k+1)*patch_size)``; when ``T`` is not a multiple of
  ``patch_size`` the last patch is the shorter remainder and takes part like any other). Patches
  are visited in a random order and masked whole while fewer than ``n`` steps are masked, so a
  window normally ends with between ``n`` and ``n + patch_size - 1`` masked steps (never a
  partial patch). A patch that would hide the whole window is skipped (the first patch is always
  taken), so with a patch that is large relative to ``T`` a window can end up to one patch short
  of ``n``; with ``T=105, patch_size=7, ratio=0.15`` the target is 16 and each window gets 21.

The target count is ``n = floor(ratio * T + 0.5)`` (round half up, not Python's banker's
rounding), clipped to ``[1, T - 1]``: at least one step is always masked, and at least one step
stays visible (except for ``patch`` when ``T <= patch_size``: a single patch is the whole window).

Masks are drawn on the CPU from the given ``torch.Generator`` (same generator state -> same
mask); move them to the model's device with ``.to(device)``.
"""

from __future__ import annotations

import math

import torch

STRATEGIES = ("random", "block", "patch")


def target_count(T: int, ratio: float) -> int:
    """Number of timesteps to mask in a window of length ``T`` (see the module docstring)."""
    if T < 1:
        raise ValueError(f"make_mask: window length T={T}; must be at least 1")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"make_mask: mask ratio {ratio!r}; must lie strictly between 0 and 1")
    n = int(math.floor(ratio * T + 0.5))
    return max(1, min(n, T - 1)) if T > 1 else 1


def make_mask(
    batch: int,
    T: int,
    strategy: str,
    ratio: float,
    patch_size: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw a mask ``(batch, T)`` of dtype bool (True = masked) with the given strategy.

    ``patch_size`` is only used by ``patch``. Deterministic for a seeded ``generator``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"make_mask: unknown strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    if batch < 0:
        raise ValueError(f"make_mask: batch={batch}; must not be negative")
    n = target_count(T, ratio)
    steps = torch.arange(T)
    if strategy == "random":
        # the n smallest of T uniform scores per row are a uniform n-subset
        scores = torch.rand(batch, T, generator=generator)
        picked = scores.argsort(dim=1)[:, :n]
        mask = torch.zeros(batch, T, dtype=torch.bool)
        mask.scatter_(1, picked, True)
        return mask
    if strategy == "block":
        start = torch.randint(0, T - n + 1, (batch, 1), generator=generator)
        return (steps >= start) & (steps < start + n)
    # patch
    if patch_size < 1:
        raise ValueError(f"make_mask: patch_size={patch_size}; must be at least 1")
    n_patches = math.ceil(T / patch_size)
    lengths = torch.full((n_patches,), patch_size, dtype=torch.long)
    lengths[-1] = T - (n_patches - 1) * patch_size  # the (possibly shorter) remainder patch
    order = torch.rand(batch, n_patches, generator=generator).argsort(dim=1)
    covered_before = lengths[order].cumsum(dim=1) - lengths[order]  # masked steps before adding
    covered_after = covered_before + lengths[order]
    # add patches while the target is not reached, never hiding the whole window (first always)
    take = (covered_before < n) & ((covered_after < T) | (covered_before == 0))
    patch_mask = torch.zeros(batch, n_patches, dtype=torch.bool)
    patch_mask.scatter_(1, order, take)
    return patch_mask[:, steps // patch_size]
