"""Device resolution and seeding."""

import random

import numpy as np
import pytest
import torch

from moola.train import device as dev
from moola.train.device import DeviceError, get_rng_state, resolve_device, seed_everything


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)


def test_auto_is_cpu_without_accelerators(no_accelerators):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(dev, "_mps_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "mps"


@pytest.mark.parametrize("asked", ["cuda", "mps"])
def test_missing_accelerator_says_what_and_how_to_fix(no_accelerators, asked):
    with pytest.raises(DeviceError) as err:
        resolve_device(asked)
    msg = str(err.value)
    assert f"'{asked}'" in msg and "available: cpu" in msg
    assert "--accelerator cpu" in msg and "auto" in msg


def test_unknown_name_lists_allowed():
    with pytest.raises(DeviceError, match="allowed values: auto, cpu, cuda, mps"):
        resolve_device("tpu")


def _draws():
    return random.random(), float(np.random.rand()), torch.nn.Linear(3, 2).weight.detach().clone()


def test_seed_everything_reproducible():
    seed_everything(5)
    a = _draws()
    seed_everything(5)
    b = _draws()
    seed_everything(6)
    c = _draws()
    assert a[:2] == b[:2] and torch.equal(a[2], b[2])
    assert a[:2] != c[:2] and not torch.equal(a[2], c[2])


def test_seed_everything_deterministic_toggles():
    try:
        seed_everything(1, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        seed_everything(1, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_rng_state_roundtrip_and_weights_only(tmp_path):
    gen = torch.Generator().manual_seed(3)
    seed_everything(9)
    state = get_rng_state(gen)
    torch.save(state, tmp_path / "rng.pt")
    first = (_draws(), torch.randperm(10, generator=gen))
    dev.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), gen)
    second = (_draws(), torch.randperm(10, generator=gen))
    assert first[0][:2] == second[0][:2] and torch.equal(first[0][2], second[0][2])
    assert torch.equal(first[1], second[1])
