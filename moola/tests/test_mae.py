"""Masked autoencoder, its training module, pretraining in the Trainer (incl. crash + resume),
and gate 3's quality evidence (interpolation baseline, linear probe)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from moola.config import load_config
from moola.models import EncoderConfig
from moola.pretrain.mae import (MAEModule, MaskedAutoencoder, masked_mse, pretrain_encoder,
                               split_unlabeled, stop_and_score)
from moola.pretrain.masking import make_mask
from moola.pretrain.quality import (
    interpolate_masked,
    ratio_ci,
    interpolate_masked_torch,
    interpolation_baseline_mse,
    reconstruction_report,
    window_mean_mse,
)

REPO = Path(__file__).resolve().parents[2]


def _sines(n: int, T: int = 32, F: int = 2, seed: int = 0) -> np.ndarray:
    """Sine waves with random frequency / phase per window and feature: (n, T, F) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[None, :, None]
    freq = rng.uniform(0.15, 0.6, size=(n, 1, F))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, F))
    return np.sin(freq * t + phase).astype(np.float32)


@pytest.fixture
def one_thread():
    """Small LSTMs run fastest on one thread (and do not fight other jobs); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_cfg(**pretrain):
    over = {"model.hidden": 8, "model.layers": 1, "model.dropout": 0.0, "run.logger": "none"}
    over.update({f"pretrain.{k}": v for k, v in pretrain.items()})
    return load_config("smoke", overrides=over)


# --- interpolation and mean baselines ---------------------------------------------------------


def _interp_loop(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reference implementation, one window and feature at a time."""
    out = x.astype(np.float64).copy()
    for i in range(x.shape[0]):
        vis = np.flatnonzero(~mask[i])
        for f in range(x.shape[2]):
            if len(vis) == 0:
                out[i, :, f] = 0.0
            else:
                out[i, mask[i], f] = np.interp(np.flatnonzero(mask[i]), vis, x[i, vis, f])
    return out


def test_interpolation_matches_reference_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 30, 3))
    mask = rng.random((40, 30)) < 0.4
    mask[0] = True  # nothing visible
    mask[1, :5] = True  # leading span carries the first visible value
    mask[2, -5:] = True  # trailing span
    np.testing.assert_allclose(interpolate_masked(x, mask), _interp_loop(x, mask), atol=1e-12)
    torch_version = interpolate_masked_torch(torch.tensor(x), torch.tensor(mask)).numpy()
    np.testing.assert_allclose(torch_version, _interp_loop(x, mask), atol=1e-12)


def test_interpolation_is_exact_on_a_line_and_carries_edges():
    x = np.tile(np.arange(10.0)[None, :, None], (1, 1, 2))
    mask = np.zeros((1, 10), bool)
    mask[0, 3:7] = True
    assert interpolation_baseline_mse(x, mask) == pytest.approx(0.0)
    mask = np.zeros((1, 10), bool)
    mask[0, :3] = True
    filled = interpolate_masked(x, mask)
    assert filled[0, :3, 0].tolist() == [3.0, 3.0, 3.0]
    assert interpolation_baseline_mse(torch.tensor(x), torch.tensor(mask)) == pytest.approx((9 + 4 + 1) / 3)


def test_window_mean_uses_visible_steps_only():
    x = np.zeros((1, 4, 1))
    x[0, :, 0] = [1.0, 1.0, 1.0, 5.0]
    mask = np.array([[False, False, False, True]])
    assert window_mean_mse(x, mask) == pytest.approx(16.0)  # predicts 1, not the leaky mean 2


# --- model and loss ---------------------------------------------------------------------------


def test_mae_forward_shape_and_masked_loss_ignores_visible_steps():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(EncoderConfig(3, 8, 2))
    x = torch.randn(5, 20, 3)
    mask = make_mask(5, 20, "block", 0.3, 4, torch.Generator().manual_seed(0))
    n_params = len(list(mae.parameters()))
    recon = mae(x, mask)
    assert recon.shape == x.shape
    assert len(list(mae.parameters())) == n_params, "forward creates no parameters"
    wild = recon.detach().clone()
    wild[~mask] = 1e6  # garbage on visible steps must not change the loss
    assert masked_mse(wild, x, mask) == pytest.approx(float(masked_mse(recon.detach(), x, mask)))
    assert float(masked_mse(x, x, mask)) == 0.0


def test_untrained_mae_reproduces_interpolation_exactly():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(EncoderConfig(2, 8, 1))
    X = _sines(6)
    masks = make_mask(6, 32, "patch", 0.15, 7, torch.Generator().manual_seed(0))
    rep = reconstruction_report(mae, X, masks, "cpu")
    assert rep["mae_mse"] == pytest.approx(rep["interp_mse"], rel=1e-5)
    assert rep["ratio"] == pytest.approx(1.0, rel=1e-5), "learning nothing cannot beat the baseline"


def test_mask_token_replaces_masked_inputs():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(EncoderConfig(2, 4, 1))
    torch.nn.init.normal_(mae.decoder.weight)  # the decoder starts at 0, which blocks gradients
    x = torch.randn(2, 10, 2)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, 4:6] = True
    x2 = x.clone()
    x2[mask] = 123.0  # the masked values must not reach the encoder
    assert torch.equal(mae(x, mask), mae(x2, mask))
    # the decoder starts at zero (pure interpolation); give it weights so gradients flow back
    torch.nn.init.normal_(mae.decoder.weight, std=0.1)
    masked_mse(mae(x, mask), x, mask).backward()
    assert mae.mask_token.grad is not None and mae.mask_token.grad.abs().sum() > 0
    mae.zero_grad()
    masked_mse(mae(x, torch.zeros_like(mask)), x, mask).backward()
    assert mae.mask_token.grad is None or mae.mask_token.grad.abs().sum() == 0


def test_mae_module_masks_fresh_per_batch_fixed_for_validation():
    cfg = _tiny_cfg()
    torch.manual_seed(0)
    mae = MaskedAutoencoder(EncoderConfig(2, 8, 1))
    X = _sines(40)
    module = MAEModule(mae, cfg, X[:10], seed=3)
    g_masks = []
    module.on_epoch_start(0, None)
    for _ in range(2):
        g_masks.append(make_mask(8, 32, "patch", 0.15, 7, module._gen))
    assert not torch.equal(g_masks[0], g_masks[1]), "a fresh mask per batch"
    module.on_epoch_start(0, None)
    assert torch.equal(make_mask(8, 32, "patch", 0.15, 7, module._gen), g_masks[0]), "epoch re-seed"
    loss = module.training_step([torch.from_numpy(X[:8])], torch.device("cpu"))
    assert loss.ndim == 0 and loss.requires_grad
    a = module.validation_metrics(mae, torch.device("cpu"))
    b = module.validation_metrics(mae, torch.device("cpu"))
    assert a == b and set(a) == {"val_loss", "val_ratio"}
    assert MAEModule(mae, cfg, X[:10], seed=3).val_masks.equal(module.val_masks)
    assert isinstance(module.configure_optimizer(), torch.optim.AdamW)


def _grads_of_a_step(module: MAEModule, X: np.ndarray, sharded: bool):
    """(loss, {name: grad}) of one step on X under the epoch-0 masks."""
    module.model.zero_grad(set_to_none=True)
    module.on_epoch_start(0, None)
    batch = [torch.from_numpy(X)]
    if sharded:
        loss = module.forward_backward(batch, torch.device("cpu"))
    else:
        loss = module.training_step(batch, torch.device("cpu"))
        loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in module.model.named_parameters()
                         if p.grad is not None}


def _mae_module(cfg, X_val, shards: int, threads: int, layers: int = 1, dropout: float = 0.0):
    torch.manual_seed(0)
    mae = MaskedAutoencoder(EncoderConfig(2, 8, layers, dropout=dropout))
    # the decoder starts at zero, which would zero every gradient behind it: a trained one
    torch.nn.init.normal_(mae.decoder.weight, std=0.3)
    return MAEModule(mae, cfg, X_val, seed=3, threads=threads, shards=shards)


def test_sharded_step_equals_one_pass_over_the_batch(one_thread):
    cfg = _tiny_cfg(mask_strategy="random", mask_ratio=0.3)
    X = _sines(40)
    whole = _mae_module(cfg, X[:8], shards=1, threads=1)
    loss_a, a = _grads_of_a_step(whole, X, sharded=False)
    assert all(float(a[k].abs().max()) > 0 for k in a), "every tensor's gradient is compared"
    for shards in (1, 4, 7):  # 7 does not divide 40: shards of 6 and 5 rows
        mod = _mae_module(cfg, X[:8], shards=shards, threads=2)
        loss_b, b = _grads_of_a_step(mod, X, sharded=True)
        mod.close()
        assert loss_b == pytest.approx(loss_a, rel=1e-6)
        assert a.keys() == b.keys() and len(a) == len(list(whole.model.parameters()))
        for k in a:  # the shards' gradients add up to the batch's (float rounding apart)
            torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-7)
    # a last batch shorter than the shard count: a shard per row, none empty
    loss_a, a = _grads_of_a_step(_mae_module(cfg, X[:8], shards=1, threads=1), X[:3],
                                 sharded=False)
    mod = _mae_module(cfg, X[:8], shards=7, threads=2)
    loss_b, b = _grads_of_a_step(mod, X[:3], sharded=True)
    mod.close()
    assert loss_b == pytest.approx(loss_a, rel=1e-6)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-7)


def test_shard_threads_change_no_step(one_thread):
    cfg = _tiny_cfg()
    X = _sines(40)
    runs = []
    for threads in (1, 2, 3):
        mod = _mae_module(cfg, X[:8], shards=3, threads=threads)
        assert mod.shard_threads == threads
        runs.append(_grads_of_a_step(mod, X, sharded=True))
        mod.close()
    for loss, grads in runs[1:]:  # summed in shard order on one thread: bit for bit
        assert loss == runs[0][0]
        assert all(torch.equal(grads[k], runs[0][1][k]) for k in grads)


def test_dropout_between_layers_keeps_shards_on_one_thread(one_thread):
    cfg = _tiny_cfg()
    X = _sines(40)
    mod = _mae_module(cfg, X[:8], shards=4, threads=2, layers=2, dropout=0.3)
    assert mod.shard_threads == 1, "dropout draws from the default generator: no racing threads"
    torch.manual_seed(5)
    first = _grads_of_a_step(mod, X, sharded=True)
    torch.manual_seed(5)
    again = _grads_of_a_step(mod, X, sharded=True)
    assert first[0] == again[0] and all(torch.equal(first[1][k], again[1][k]) for k in first[1])
    assert _mae_module(cfg, X[:8], shards=4, threads=2, layers=2).shard_threads == 2


def test_pretraining_restores_the_intra_op_thread_count(tmp_path):
    before = torch.get_num_threads()
    cfg = _tiny_cfg(max_epochs=1, batch_size=16, val_fraction=0.25, shards=2)
    try:
        torch.set_num_threads(2)
        pretrain_encoder(_sines(48, T=16), cfg, tmp_path / "run", "cpu", resume=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_held_out_tail_splits_into_stopping_and_scored_halves():
    stop, score = stop_and_score(np.arange(90, 101))
    assert stop.tolist() == list(range(90, 95)) and score.tolist() == list(range(95, 101))
    assert stop_and_score(np.array([7, 8]))[1].tolist() == [8]
    with pytest.raises(ValueError, match="at least 2.*pretrain.val_fraction"):
        stop_and_score(np.array([7]))


def test_pretraining_needs_two_held_out_windows(tmp_path):
    cfg = _tiny_cfg(max_epochs=1, batch_size=16, val_fraction=0.01)
    with pytest.raises(ValueError, match="holds out 1 unlabeled window"):
        pretrain_encoder(_sines(2, T=16), cfg, tmp_path / "run", "cpu", resume=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_split_unlabeled_is_a_deterministic_tail():
    tr, ho = split_unlabeled(100, 0.1)
    assert ho.tolist() == list(range(90, 100)) and tr.tolist() == list(range(90))
    assert len(split_unlabeled(5, 0.01)[1]) == 2  # one to stop on, one to score
    assert len(split_unlabeled(2, 0.01)[1]) == 1
    with pytest.raises(ValueError, match="val_fraction"):
        split_unlabeled(100, 0.0)


def test_reconstruction_report_keys_and_ratio():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(EncoderConfig(2, 8, 1))
    torch.nn.init.normal_(mae.decoder.weight, std=0.1)
    X = _sines(12)
    masks = make_mask(12, 32, "random", 0.2, 4, torch.Generator().manual_seed(1))
    rep = reconstruction_report(mae, X, masks, "cpu")
    assert set(rep) >= {"mae_mse", "interp_mse", "mean_mse", "ratio"}
    assert rep["ratio"] == pytest.approx(rep["mae_mse"] / rep["interp_mse"])
    assert rep["interp_mse"] < rep["mean_mse"], "interpolation beats the mean on smooth sines"
    assert mae.training, "mode restored"
    assert "per_window" not in rep
    per = reconstruction_report(mae, X, masks, "cpu", per_window=True)["per_window"]
    assert len(per["mae_sq"]) == len(per["interp_sq"]) == 12
    # the windows' sums give back the ratio: what the bootstrap resamples is the statistic
    assert sum(per["mae_sq"]) / sum(per["interp_sq"]) == pytest.approx(rep["ratio"])
    lo, hi = ratio_ci(per["mae_sq"], per["interp_sq"], n_bootstrap=500, ci_level=0.95, seed=0)
    assert lo < rep["ratio"] < hi
    assert (lo, hi) == ratio_ci(per["mae_sq"], per["interp_sq"], n_bootstrap=500,
                                ci_level=0.95, seed=0), "seeded"


def test_ratio_ci_degenerate_cases():
    assert ratio_ci([2.0], [4.0], n_bootstrap=100, ci_level=0.95, seed=0) == (0.5, 0.5)
    assert ratio_ci([1.0, 1.0], [1.0, 1.0], n_bootstrap=100, ci_level=0.95, seed=0) == (1.0, 1.0)
    assert ratio_ci([1.0, 2.0], [0.0, 0.0], n_bootstrap=100, ci_level=0.95, seed=0) == (
        float("inf"), float("inf"))


# --- pretraining in the Trainer ---------------------------------------------------------------


def test_pretraining_learns_sines(tmp_path, one_thread):
    X = _sines(192, T=32, F=2)
    cfg = _tiny_cfg(max_epochs=6, batch_size=32, lr=1e-2, early_stop_patience=6, val_fraction=0.25,
                    mask_strategy="random", mask_ratio=0.2)
    res = pretrain_encoder(X, cfg, tmp_path / "run", "cpu")
    losses = [h["val_loss"] for h in res.fit.history]
    assert len(losses) >= 4
    # the decoder starts at linear interpolation; learning must take it below that baseline
    assert min(losses[1:]) < losses[0], f"masked MSE did not fall: {losses}"
    assert min(losses) < 0.9 * res.interp_mse, f"no gain over interpolation: {losses} vs {res.interp_mse}"
    assert res.heldout_idx.tolist() == list(range(144, 192))
    # the epoch was chosen on the first half of the tail; gate 3 scores the second, untouched
    assert res.stop_idx.tolist() == list(range(144, 168))
    assert res.score_idx.tolist() == list(range(168, 192))
    assert res.score_masks.shape == (24, 32) and res.val_masks.shape == (24, 32)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    rep = reconstruction_report(res.mae, X[res.stop_idx], res.val_masks, "cpu")
    assert rep["mae_mse"] == pytest.approx(res.fit.best_score, rel=1e-4)


def test_pretraining_is_reproducible(tmp_path, one_thread):
    X = _sines(48, T=16, F=2)
    cfg = _tiny_cfg(max_epochs=2, batch_size=16, val_fraction=0.25)
    a = pretrain_encoder(X, cfg, tmp_path / "a", "cpu", resume=False)
    b = pretrain_encoder(X, cfg, tmp_path / "b", "cpu", resume=False)
    assert [h["val_loss"] for h in a.fit.history] == [h["val_loss"] for h in b.fit.history]
    assert all(torch.equal(v, b.mae.state_dict()[k]) for k, v in a.mae.state_dict().items())


_SCRIPT = """
import sys, numpy as np, torch
torch.set_num_threads(1)
from moola.config import load_config
from moola.pretrain.mae import pretrain_encoder
X = np.random.default_rng(0).normal(size=(96, 16, 2)).astype(np.float32)
cfg = load_config("smoke", overrides={{
    "model.hidden": 8, "model.layers": 1, "run.logger": "none",
    "pretrain.max_epochs": {epochs}, "pretrain.batch_size": 16, "pretrain.early_stop_patience": 1000,
    "pretrain.val_fraction": 0.25, "pretrain.lr": 1e-3}})
res = pretrain_encoder(X, cfg, sys.argv[1], "cpu", resume=True)
print("EPOCHS_RUN", res.fit.epochs_run, "HISTORY", len(res.fit.history),
      "RESUMED", res.fit.resumed_from_epoch, flush=True)
"""


def _last_epoch(ckpt: Path) -> int | None:
    try:
        state = torch.load(ckpt, weights_only=True, map_location="cpu")
    except Exception:  # being written right now (atomic replace makes this rare)
        return None
    return int(state.get("epoch", -1))


@pytest.mark.slow
def test_pretraining_resumes_after_sigkill(tmp_path):
    script = tmp_path / "pretrain.py"
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    epochs = 400  # far more than can run before the kill
    script.write_text(textwrap.dedent(_SCRIPT.format(epochs=epochs)))
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    last = run_dir / "checkpoints" / "last.pt"
    killed_at = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if last.exists() and (_last_epoch(last) or -1) >= 1:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                killed_at = _last_epoch(last)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert killed_at is not None and killed_at >= 1, (
        f"no last.pt with epoch >= 1 before the kill; stderr: {proc.stderr.read().decode()[-2000:]}"
    )
    assert killed_at < epochs - 1, "the run finished before it could be killed"
    # resume with a budget a few epochs past the checkpoint: it must continue, not restart
    target = killed_at + 3
    script.write_text(textwrap.dedent(_SCRIPT.format(epochs=target)))
    out = subprocess.run([sys.executable, str(script), str(run_dir)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("EPOCHS_RUN")][-1].split()
    epochs_run, n_history, resumed = int(line[1]), int(line[3]), line[5]
    assert resumed == str(killed_at + 1), f"resumed at {resumed}, expected epoch {killed_at + 1}: {out.stderr[-2000:]}"
    assert epochs_run == target, f"expected {target} epochs in total, got {epochs_run}: {out.stdout}"
    assert n_history == target, "history restored from the checkpoint plus the new epochs"
    assert _last_epoch(last) == target - 1  # 0-based epoch of the final checkpoint


def test_torch_interpolation_matches_numpy_and_mae_starts_at_it():
    from moola.models import EncoderConfig
    from moola.pretrain.mae import MaskedAutoencoder, interpolate_masked_torch
    from moola.pretrain.quality import interpolate_masked

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 30, 4, generator=g)
    for strategy in ("random", "block", "patch"):
        mask = make_mask(6, 30, strategy, 0.3, 5, generator=g)
        mask[0, :3] = True  # a span touching the left edge
        mask[1, -4:] = True  # and the right edge
        ours = interpolate_masked_torch(x, mask).numpy()
        np.testing.assert_allclose(ours, interpolate_masked(x.numpy(), mask.numpy()), atol=1e-5)
    mae = MaskedAutoencoder(EncoderConfig(input_features=4, hidden=8, layers=1))
    with torch.no_grad():
        np.testing.assert_allclose(mae(x, mask).numpy(), interpolate_masked_torch(x, mask).numpy(),
                                   atol=1e-6)


def test_ratio_ci_is_read_at_the_expanded_level(monkeypatch):
    """8 scored windows (GunPoint's case): the interval is wider than a plain 95% percentile
    interval of the same resamples and contains it; it is the windows' bootstrap of every
    verdict (moola.metrics.window_bootstrap), moving blocks included."""
    import moola.metrics

    rng = np.random.default_rng(4)
    a, b = rng.exponential(1.0, 8), rng.exponential(1.0, 8)
    lo, hi = ratio_ci(a, b, n_bootstrap=1000, ci_level=0.95, seed=0)
    monkeypatch.setattr(moola.metrics, "expanded_level", lambda level, n: level)
    plain = ratio_ci(a, b, n_bootstrap=1000, ci_level=0.95, seed=0)
    assert lo < plain[0] and hi > plain[1]
    monkeypatch.undo()
    blocks = ratio_ci(a, b, n_bootstrap=1000, ci_level=0.95, seed=0, block=4)
    assert blocks != (lo, hi)  # gates.bootstrap_block reaches gate 3's interval
