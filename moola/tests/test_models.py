"""Unit tests of moola.models on tiny inputs: shapes, parameter names, device placement, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moola.models import (
    BiLSTMEncoder,
    EncoderConfig,
    EnhancedSimpleLSTM,
    MiniRocketControl,
    SimpleLSTM,
    count_parameters,
    encoder_state_keys,
)

B, T, F, K = 4, 12, 4, 3


def tiny_models(dropout: float = 0.1, seed: int = 0) -> dict[str, torch.nn.Module]:
    """One small instance of each network (fresh each call: tests never share a model)."""
    torch.manual_seed(seed)
    return {
        "enhanced": EnhancedSimpleLSTM(EncoderConfig(F, 8, 2, dropout=dropout), K, 2, 8, dropout),
        "simple": SimpleLSTM(F, hidden=8, n_classes=K, dropout=dropout),
    }


MODEL_NAMES = list(tiny_models())


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors: with 2 intra-op threads on a busy 2-core machine each step is ~20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
DEVICES = [
    "cpu",
    "meta",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
    ),
]


# ---------------------------------------------------------------------------------------------
# Encoder and config
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [True, False])
def test_encoder_shape(bidirectional):
    enc = BiLSTMEncoder(EncoderConfig(F, 6, 2, bidirectional=bidirectional))
    assert enc.out_dim == (12 if bidirectional else 6)
    assert enc(torch.randn(B, T, F)).shape == (B, T, enc.out_dim)
    assert all(k.startswith("lstm.") for k in encoder_state_keys(enc))


def test_encoder_config_round_trip_and_errors():
    cfg = EncoderConfig(4, 16, 2, bidirectional=True, dropout=0.2)
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    assert EncoderConfig(np.int64(4), 16, 2).to_dict()["input_features"].__class__ is int
    with pytest.raises(ValueError, match="unknown key.*hiden.*allowed keys"):
        EncoderConfig.from_dict({**cfg.to_dict(), "hiden": 3})
    with pytest.raises(ValueError, match="missing key.*layers"):
        EncoderConfig.from_dict({"input_features": 4, "hidden": 8})
    with pytest.raises(ValueError, match="hidden"):
        EncoderConfig(4, 0, 1)


def test_encoder_rejects_wrong_feature_count():
    enc = BiLSTMEncoder(EncoderConfig(F, 4, 1))
    with pytest.raises(ValueError, match=r"\(batch, time, 4\)"):
        enc(torch.randn(B, T, F + 1))


# ---------------------------------------------------------------------------------------------
# EnhancedSimpleLSTM
# ---------------------------------------------------------------------------------------------


def test_enhanced_has_encoder_tensors_of_its_config():
    m = EnhancedSimpleLSTM(EncoderConfig(F, 8, 2), K)
    names = {n for n, _ in m.named_parameters()}
    for layer in ("l0", "l1", "l0_reverse", "l1_reverse"):
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            assert f"encoder.lstm.{kind}_{layer}" in names
    assert set(encoder_state_keys(m.encoder, "encoder.")) <= set(m.state_dict())
    groups = m.encoder_layer_groups()
    assert [len(g) for g in groups] == [8, 8]  # 4 tensors x 2 directions per layer
    enc_ids = {id(p) for p in m.encoder_parameters()}
    assert {id(p) for g in groups for p in g} == enc_ids
    assert enc_ids.isdisjoint(id(p) for p in m.head_parameters())
    assert len(enc_ids) + len(m.head_parameters()) == len(list(m.parameters()))


def test_enhanced_heads_fall_back_to_a_divisor():
    m = EnhancedSimpleLSTM(EncoderConfig(F, 5, 1), K, attention_heads=4)  # out_dim 10
    assert m.attention_heads == 2 and m.requested_heads == 4
    assert m(torch.randn(B, T, F)).shape == (B, K)


# ---------------------------------------------------------------------------------------------
# All networks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shape(name):
    m = tiny_models()[name].eval()
    assert m(torch.randn(B, T, F)).shape == (B, K)
    assert m(torch.randn(1, 9, F)).shape == (1, K)  # other batch size and length
    assert count_parameters(m) > 0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_no_parameters_appear_in_forward(name):
    m = tiny_models()[name]
    before = {n: (tuple(p.shape), p.device) for n, p in m.named_parameters()}
    buffers = {n for n, _ in m.named_buffers()}
    modules = {n for n, _ in m.named_modules()}
    m(torch.randn(B, T, F)).sum().backward()
    after = {n: (tuple(p.shape), p.device) for n, p in m.named_parameters()}
    assert after == before
    assert {n for n, _ in m.named_buffers()} == buffers
    assert {n for n, _ in m.named_modules()} == modules


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameters_stay_on_device(name, device):
    m = tiny_models()[name].to(device)
    out = m(torch.randn(B, T, F, device=device))
    assert out.device.type == device and out.shape == (B, K)
    misplaced = [n for n, p in m.named_parameters() if p.device.type != device]
    misplaced += [n for n, b in m.named_buffers() if b.device.type != device]
    assert not misplaced, f"{name}: tensors not on {device} after forward: {misplaced}"


def test_simple_lstm_is_unidirectional():
    m = SimpleLSTM(F, hidden=8, n_classes=2)
    assert m.lstm.bidirectional is False and m.lstm.num_layers == 1
    assert not any("reverse" in n for n, _ in m.named_parameters())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_can_overfit_a_tiny_batch(name):
    m = tiny_models(dropout=0.0)[name]  # no dropout: the loss curve is then deterministic
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, T, F, generator=g)
    y = torch.arange(8) % K
    opt = torch.optim.Adam(m.parameters(), lr=2e-2)
    loss_fn = torch.nn.CrossEntropyLoss()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"


# ---------------------------------------------------------------------------------------------
# MiniRocket control (the first call in a fresh environment compiles numba kernels)
# ---------------------------------------------------------------------------------------------


def synthetic_panel(n: int, seed: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Two classes: a sine vs a square wave in noise; (n, 30, channels) windows."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = np.linspace(0, 4 * np.pi, 30)
    phase = rng.uniform(0, np.pi, (n, 1))
    X = rng.normal(0, 0.3, (n, 30, channels))
    X[:, :, 0] += np.where(y[:, None] == 1, np.sin(t + phase), np.sign(np.sin(t + phase)))
    return X, y


@pytest.mark.slow
@pytest.mark.parametrize("channels", [1, 2], ids=["univariate", "multivariate"])
def test_minirocket_predicts_held_out_windows(channels):
    X, y = synthetic_panel(40, 0, channels)
    Xt, yt = synthetic_panel(40, 1, channels)
    m = MiniRocketControl(seed=0, num_kernels=1000).fit(X, y)
    assert np.mean(m.predict(Xt) == yt) >= 0.9
    d = m.decision_function(Xt)
    assert d.shape == (40,)
    proba = m.predict_proba(Xt)
    assert proba.shape == (40, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(m.classes_[proba.argmax(axis=1)], m.predict(Xt))


def test_minirocket_explains_bad_input():
    with pytest.raises(ValueError, match="at least 9"):
        MiniRocketControl().fit(np.zeros((4, 8, 1)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="single class"):
        MiniRocketControl().fit(np.zeros((4, 20, 1)), [0, 0, 0, 0])
    with pytest.raises(RuntimeError, match="fit"):
        MiniRocketControl().predict(np.zeros((4, 20, 1)))
