"""Masks for MAE pretraining: share, shape of the masked region, determinism."""

from __future__ import annotations

import pytest
import torch

from moola.pretrain.masking import STRATEGIES, make_mask, target_count


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("T,ratio,expected", [(105, 0.15, 16), (10, 0.25, 3), (10, 0.01, 1), (10, 0.99, 9), (20, 0.125, 3)])
def test_target_count_rounds_half_up_and_clips(T, ratio, expected):
    assert target_count(T, ratio) == expected


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_mask_shape_dtype_and_at_least_one(strategy):
    m = make_mask(32, 105, strategy, 0.15, 7, _gen())
    assert m.shape == (32, 105) and m.dtype == torch.bool
    assert (m.sum(dim=1) >= 1).all()
    assert (m.sum(dim=1) < 105).all(), "every window keeps visible steps"


@pytest.mark.parametrize("strategy", ["random", "block"])
@pytest.mark.parametrize("T,ratio", [(105, 0.15), (50, 0.3), (7, 0.5)])
def test_random_and_block_mask_exact_share(strategy, T, ratio):
    m = make_mask(64, T, strategy, ratio, 7, _gen(1))
    assert (m.sum(dim=1) == target_count(T, ratio)).all()


def test_block_is_one_contiguous_span():
    m = make_mask(200, 60, "block", 0.2, 7, _gen(2))
    for row in m:
        idx = row.nonzero().flatten()
        assert (idx[-1] - idx[0] + 1) == len(idx) == 12
    starts = {int(row.nonzero()[0]) for row in m}
    assert len(starts) > 10, "block start varies between windows"


@pytest.mark.parametrize("T,ratio,p", [(105, 0.15, 7), (100, 0.15, 7), (50, 0.4, 6), (23, 0.3, 5)])
def test_patch_share_within_one_patch_and_aligned(T, ratio, p):
    n = target_count(T, ratio)
    m = make_mask(128, T, "patch", ratio, p, _gen(3))
    counts = m.sum(dim=1)
    assert ((counts - n).abs() < p).all(), f"counts {counts.unique().tolist()} vs target {n}"
    patch_of = torch.arange(T) // p
    for row in m:
        for k in patch_of.unique():
            in_patch = row[patch_of == k]
            assert in_patch.all() or not in_patch.any(), "a patch is masked whole or not at all"


def test_patch_reaches_target_when_no_edge_case():
    # T=105, p=7, ratio .15: target 16 -> three whole patches (21 steps) in every window
    m = make_mask(16, 105, "patch", 0.15, 7, _gen(4))
    assert (m.sum(dim=1) == 21).all()


def test_patch_last_partial_patch_can_be_masked():
    # T=23, p=5: the last patch is steps 20..22 (3 steps); it must take part
    m = make_mask(500, 23, "patch", 0.1, 5, _gen(5))
    assert m[:, 20:].all(dim=1).any()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_seeded_generator_is_deterministic(strategy):
    a = make_mask(8, 105, strategy, 0.15, 7, _gen(42))
    b = make_mask(8, 105, strategy, 0.15, 7, _gen(42))
    c = make_mask(8, 105, strategy, 0.15, 7, _gen(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("kwargs,match", [
    ({"strategy": "spans"}, "allowed: random, block, patch"),
    ({"ratio": 0.0}, "strictly between 0 and 1"),
    ({"ratio": 1.0}, "strictly between 0 and 1"),
    ({"patch_size": 0}, "patch_size"),
])
def test_bad_arguments_say_what_is_allowed(kwargs, match):
    args = {"batch": 2, "T": 10, "strategy": "patch", "ratio": 0.2, "patch_size": 3, "generator": _gen()}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_mask(**args)
