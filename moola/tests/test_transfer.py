"""Encoder checkpoint, load report, freeze / progressive unfreeze, discriminative learning rates."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
import torch

from moola.models import BiLSTMEncoder, EncoderConfig, EnhancedSimpleLSTM
from moola.pretrain.artifact import FORMAT, CheckpointError, load_encoder_checkpoint, save_encoder
from moola.transfer import (
    ProgressiveUnfreezer,
    build_from_encoder,
    discriminative_param_groups,
    encoder_layer_groups,
    freeze_encoder,
    load_encoder_into,
)

HEAD = SimpleNamespace(attention_heads=2, head_hidden=8, dropout=0.0)


def _encoder(hidden=8, layers=2, seed=0) -> tuple[BiLSTMEncoder, EncoderConfig]:
    torch.manual_seed(seed)
    cfg = EncoderConfig(input_features=4, hidden=hidden, layers=layers)
    return BiLSTMEncoder(cfg), cfg


def _save(tmp_path, hidden=8, layers=2, name="enc.pt"):
    enc, cfg = _encoder(hidden, layers)
    path = save_encoder(tmp_path / name, enc, cfg, "window_zscore", {"val_loss": 0.5})
    return path, enc, cfg


# --- artifact ---------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    path, enc, cfg = _save(tmp_path)
    cfg2, state, meta = load_encoder_checkpoint(path)
    assert cfg2 == cfg
    assert set(state) == set(enc.state_dict()) and "lstm.weight_ih_l0" in state
    assert all(torch.equal(state[k], v) for k, v in enc.state_dict().items())
    assert meta["format"] == FORMAT and meta["normalization"] == "window_zscore"
    assert meta["extra"] == {"val_loss": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["enc.pt"], "no temp file left behind"


def test_extra_must_be_plain_data(tmp_path):
    enc, cfg = _encoder()
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_encoder(tmp_path / "e.pt", enc, cfg, "window_zscore", {"obj": object()})
    assert not list(tmp_path.iterdir())


def test_wrong_format_is_refused_with_file_and_fix(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "something/2", "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"other\.pt.*format 'something/2'.*re-run gate 3"):
        load_encoder_checkpoint(path)
    bare = tmp_path / "bare.pt"
    torch.save(_encoder()[0].state_dict(), bare)  # a bare state dict, no config
    with pytest.raises(CheckpointError, match="bare.pt"):
        load_encoder_checkpoint(bare)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_encoder_checkpoint(junk)


class _Payload:
    """Unpickling this object would create the marker file (stands in for arbitrary code)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch_save", "raw_pickle"])
def test_pickle_payload_is_refused_and_never_executed(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    obj = {"format": FORMAT, "encoder_config": {}, "normalization": "x", "state_dict": {}, "x": _Payload(str(marker))}
    if writer == "torch_save":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"evil\.pt") as err:
        load_encoder_checkpoint(path)
    assert not marker.exists(), "loading must not execute code from the file"
    assert "weights_only" in str(err.value) or "not a readable" in str(err.value)


# --- load report ------------------------------------------------------------------------------


def test_build_from_encoder_loads_every_encoder_tensor(tmp_path):
    path, enc, cfg = _save(tmp_path, hidden=8, layers=2)
    model, report = build_from_encoder(path, n_classes=2, model_settings=HEAD)
    assert isinstance(model, EnhancedSimpleLSTM)
    assert model.encoder.cfg.layers == 2 and model.encoder.cfg.hidden == 8
    assert report.ok and report.applied and report.ratio == 1.0
    assert report.checkpoint_tensors == len(enc.state_dict()) == 16  # 2 layers x 2 dirs x 4
    for k, v in enc.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[k], v)
    assert report.head_new and not any(k.startswith("encoder.") for k in report.head_new)
    assert report.meta["normalization"] == "window_zscore"
    text = report.format()
    assert "16/16 (100%)" in text and "OK" in text
    d = report.to_dict()
    assert d["ok"] is True and d["ratio"] == 1.0


def test_hidden_size_mismatch_is_not_ok_and_copies_nothing(tmp_path):
    _, enc, _ = _save(tmp_path, hidden=8, layers=1)
    model = EnhancedSimpleLSTM(EncoderConfig(4, 6, 1), 2, 2, 8, 0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_encoder_into(model, enc.state_dict())
    assert not report.ok and not report.applied
    assert len(report.shape_mismatches) == 8 and report.ratio == 0.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert "shape mismatch" in report.format() and "build_from_encoder" in report.format()


def test_two_layer_checkpoint_into_one_layer_model_is_refused(tmp_path):
    path, enc, _ = _save(tmp_path, hidden=8, layers=2)
    _, state, _ = load_encoder_checkpoint(path)
    model = EnhancedSimpleLSTM(EncoderConfig(4, 8, 1), 2, 2, 8, 0.0)  # built by hand: the old bug
    report = load_encoder_into(model, state)
    assert not report.ok and not report.applied
    assert report.ratio == 0.5  # 8/16: counted against the checkpoint's encoder, not the model
    assert sorted(report.missing_in_model) == sorted(k for k in state if "_l1" in k)
    text = report.format()
    assert "8/16 (50%)" in text and "NOT OK" in text
    assert "layer-count mismatch" in text and "2 LSTM layer(s)" in text and "has 1" in text


def test_prefixed_keys_are_accepted():
    enc, cfg = _encoder(layers=1)
    model = EnhancedSimpleLSTM(cfg, 3, 2, 8, 0.0)
    report = load_encoder_into(model, {"encoder." + k: v for k, v in enc.state_dict().items()})
    assert report.ok


# --- freezing and learning rates --------------------------------------------------------------


def _model(layers=3):
    torch.manual_seed(0)
    return EnhancedSimpleLSTM(EncoderConfig(4, 4, layers), 2, 2, 8, 0.0)


def _trainable(groups):
    return [all(p.requires_grad for p in g) for g in groups]


def test_freeze_encoder_leaves_head_trainable():
    model = _model(2)
    n = freeze_encoder(model)
    assert n == len(list(model.encoder.parameters()))
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


def test_layer_groups_fallback_matches_model_method():
    model = _model(3)
    by_method = encoder_layer_groups(model)

    class NoMethod(torch.nn.Module):  # a model without encoder_layer_groups(): derived from names
        def __init__(self, enc):
            super().__init__()
            self.encoder = enc

    by_names = encoder_layer_groups(NoMethod(model.encoder))
    assert [[id(p) for p in g] for g in by_method] == [[id(p) for p in g] for g in by_names]
    assert [len(g) for g in by_names] == [8, 8, 8]


def test_progressive_unfreeze_schedule_top_first():
    model = _model(3)
    opt = torch.optim.AdamW(discriminative_param_groups(model, 1e-3, 0.5))
    unf = ProgressiveUnfreezer(model, freeze_epochs=2, unfreeze_every=2)
    seen = []
    for epoch in range(10):
        unf.on_epoch_start(epoch, opt)
        seen.append(_trainable(unf.groups))
        assert all(p.requires_grad for p in model.head.parameters())
    F, T = False, True
    assert seen == [
        [F, F, F], [F, F, F],  # frozen for 2 epochs
        [F, F, T], [F, F, T],  # top layer
        [F, T, T], [F, T, T],
        [T, T, T], [T, T, T], [T, T, T], [T, T, T],
    ]
    assert unf.history == [(0, 0), (2, 1), (4, 2), (6, 3)]
    # resuming at epoch 5 lands in the same phase without replaying earlier epochs
    model2 = _model(3)
    unf2 = ProgressiveUnfreezer(model2, 2, 2)
    unf2.on_epoch_start(5, None)
    assert _trainable(unf2.groups) == [F, T, T]


def test_unfreeze_every_zero_unfreezes_all_at_once():
    unf = ProgressiveUnfreezer(_model(2), freeze_epochs=1, unfreeze_every=0)
    assert [unf.trainable_layers(e) for e in range(3)] == [0, 2, 2]
    with pytest.raises(ValueError, match=">= 0"):
        ProgressiveUnfreezer(_model(1), -1, 1)


def test_discriminative_param_groups_lrs_and_coverage():
    model = _model(3)
    groups = discriminative_param_groups(model, lr=1e-2, mult=0.5)
    assert [g["name"] for g in groups] == ["head", "encoder.layer2", "encoder.layer1", "encoder.layer0"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-2, 5e-3, 2.5e-3, 1.25e-3])
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_frozen_params_stay_in_optimizer_and_train_after_unfreezing():
    model = _model(2)
    freeze_encoder(model)
    opt = torch.optim.AdamW(discriminative_param_groups(model, 1e-2, 0.5))
    unf = ProgressiveUnfreezer(model, freeze_epochs=1, unfreeze_every=1)
    x, y = torch.randn(6, 10, 4), torch.tensor([0, 1, 0, 1, 0, 1])
    bottom = unf.groups[0][0]
    top = unf.groups[1][0]
    snapshots = []
    for epoch in range(3):
        unf.on_epoch_start(epoch, opt)
        b0, t0 = bottom.detach().clone(), top.detach().clone()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        snapshots.append((not torch.equal(b0, bottom), not torch.equal(t0, top)))
    assert snapshots == [(False, False), (False, True), (True, True)]
