"""The training loop: tiers, early stopping, checkpoints, resume, timeouts, hooks."""

import csv
import logging
import threading

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from moola.config import load_config
from moola.report.status import StatusWriter, read_status
from moola.train import LoopSettings, Trainer, seed_everything

CPU = torch.device("cpu")


class TinyModule:
    """40 points in 4-D, label = sign of the first coordinate; a 2-layer MLP with dropout."""

    def __init__(self, val_losses=None, eval_wait=None):
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 2))
        g = torch.Generator().manual_seed(123)
        self.X, self.Xv = torch.randn(40, 4, generator=g), torch.randn(16, 4, generator=g)
        self.y, self.yv = (self.X[:, 0] > 0).long(), (self.Xv[:, 0] > 0).long()
        self.val_losses, self.eval_wait, self.epochs = val_losses, eval_wait, []

    def loader(self):
        return DataLoader(TensorDataset(self.X, self.y), batch_size=8, shuffle=True,
                          generator=torch.Generator().manual_seed(0))

    def configure_optimizer(self):
        return torch.optim.AdamW(self.model.parameters(), lr=0.05)

    def training_step(self, batch, device):
        x, y = batch
        return F.cross_entropy(self.model(x.to(device)), y.to(device))

    def validation_metrics(self, model, device):
        if self.eval_wait is not None:
            self.eval_wait.wait(10)  # hangs until the test releases it
        logits = model(self.Xv)
        loss = F.cross_entropy(logits, self.yv).item()
        if self.val_losses is not None:
            loss = self.val_losses[len(self.epochs) - 1]
        return {"loss": loss, "accuracy": (logits.argmax(1) == self.yv).float().mean().item()}

    def on_epoch_start(self, epoch, optimizer):
        self.epochs.append(epoch)


def fit(run_dir, max_epochs=3, resume=True, module=None, status=None, on_checkpoint=None,
        seed=0, **kw):
    settings = LoopSettings(**{"max_epochs": max_epochs, "early_stop_patience": 50,
                               "log_every_n_steps": 2, **kw})
    seed_everything(seed)
    module = module or TinyModule()
    trainer = Trainer(settings, run_dir, CPU, "gate_x", status=status,
                      on_checkpoint=on_checkpoint)
    return module, trainer.fit(module, module.loader(), resume=resume)


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def last_weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_trains_logs_and_checkpoints(tmp_path):
    status = StatusWriter(tmp_path / "status.json", "r1", "gate_x")
    module, res = fit(tmp_path, max_epochs=3, status=status)
    assert res.epochs_run == 3 and res.steps == 15 and res.stopped_reason == "max_epochs=3 reached"
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert {"val_loss", "val_accuracy", "train_val_gap"} <= set(res.history[0])
    table = rows(tmp_path / "metrics.csv")
    assert list(table[0])[:2] == ["epoch", "step"]
    step_rows = [r for r in table if r["train_loss_step"]]
    assert [int(r["step"]) for r in step_rows] == [2, 4, 6, 8, 10, 12, 14]
    epoch_rows = [r for r in table if r["train_loss_epoch"]]
    assert len(epoch_rows) == 3 and all(r["val_loss"] and r["eval_timed_out"] == "0" for r in epoch_rows)
    assert all(r["val_loss"] == "" for r in step_rows)
    st = read_status(tmp_path / "status.json")
    assert st["phase"] == "done" and st["step"] == 15 and st["total_steps"] == 15
    assert st["last_eval"]["timed_out"] is False and "val_loss" in st["last_eval"]["metrics"]
    assert st["throughput"] > 0 and st["eta_s"] is not None and st["lr"] == 0.05


def test_status_written_every_n_steps(tmp_path):
    calls = []

    class Recorder:
        def update(self, **fields):
            calls.append(fields)

    fit(tmp_path, max_epochs=2, status=Recorder(), log_every_n_steps=3)
    fast = [c["step"] for c in calls if c.get("throughput") is not None]
    assert fast == [3, 6, 9]
    assert [c["phase"] for c in calls].count("eval") == 2


def test_checkpoints_load_weights_only_and_hold_everything(tmp_path):
    fit(tmp_path, max_epochs=3, checkpoint_save_top_k=2)
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert "last.pt" in files and len([f for f in files if f.startswith("best-epoch=")]) <= 2
    for name in files:
        ck = torch.load(tmp_path / "checkpoints" / name, weights_only=True)
        assert {"model", "optimizer", "epoch", "step", "callbacks", "history", "settings", "rng"} <= set(ck)
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_top_k_zero_keeps_only_last(tmp_path):
    module, res = fit(tmp_path, max_epochs=2, checkpoint_save_top_k=0)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.pt"]
    assert res.best_checkpoint is None and res.best_epoch is not None


def test_same_seed_same_run_other_seed_differs(tmp_path):
    runs = [fit(tmp_path / name, max_epochs=2, seed=seed)[1] for name, seed in (("a", 1), ("b", 1), ("c", 2))]
    losses = [[h["train_loss"] for h in r.history] for r in runs]
    assert losses[0] == losses[1] and losses[0] != losses[2]
    wa, wb, wc = (last_weights(tmp_path / n) for n in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and not torch.equal(wa["0.weight"], wc["0.weight"])


def test_resume_continues_and_matches_uninterrupted(tmp_path):
    _, straight = fit(tmp_path / "a", max_epochs=6)
    fit(tmp_path / "b", max_epochs=3)
    module, resumed = fit(tmp_path / "b", max_epochs=6, resume=True)
    assert module.epochs == [3, 4, 5] and resumed.resumed_from_epoch == 3
    assert [h["epoch"] for h in resumed.history] == list(range(6))
    for h1, h2 in zip(straight.history, resumed.history):
        assert h1["train_loss"] == pytest.approx(h2["train_loss"], rel=1e-5)
    wa, wb = last_weights(tmp_path / "a"), last_weights(tmp_path / "b")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert [int(r["epoch"]) for r in rows(tmp_path / "b" / "metrics.csv") if r["train_loss_epoch"]] == list(range(6))


def test_resume_false_or_other_settings_start_fresh(tmp_path):
    fit(tmp_path, max_epochs=2)
    module, res = fit(tmp_path, max_epochs=2, resume=False)
    assert module.epochs == [0, 1] and res.resumed_from_epoch is None
    module, res = fit(tmp_path, max_epochs=3, grad_clip=0.5)
    assert module.epochs == [0, 1, 2]


def test_early_stopping_loads_best_weights(tmp_path):
    losses = [0.9, 0.5, 0.6, 0.7, 0.8, 0.9]
    module, res = fit(tmp_path, max_epochs=6, module=TinyModule(val_losses=losses),
                      early_stop_patience=2, min_epochs=1)
    assert res.epochs_run == 4 and res.best_epoch == 1 and res.best_score == 0.5
    assert res.stopped_reason == "val_loss did not improve for 2 epochs (best 0.5 at epoch 1)"
    best = torch.load(res.best_checkpoint, weights_only=True)["model"]
    assert all(torch.equal(v, best[k]) for k, v in module.model.state_dict().items())
    assert not torch.equal(last_weights(tmp_path)["0.weight"], best["0.weight"])


def test_hanging_eval_is_abandoned_and_training_finishes(tmp_path):
    release = threading.Event()
    status = StatusWriter(tmp_path / "status.json", "r1", "gate_x")
    try:
        module, res = fit(tmp_path, max_epochs=2, module=TinyModule(eval_wait=release),
                          eval_timeout=0.2, status=status)
    finally:
        release.set()
    assert res.epochs_run == 2 and res.timed_out_evals == 2 and res.best_epoch is None
    assert res.stopped_reason == "max_epochs=2 reached"
    assert all(h["eval_timed_out"] for h in res.history)
    epoch_rows = [r for r in rows(tmp_path / "metrics.csv") if r["train_loss_epoch"]]
    assert [r["eval_timed_out"] for r in epoch_rows] == ["1", "1"]
    st = read_status(tmp_path / "status.json")
    assert st["last_eval"]["timed_out"] is True and st["phase"] == "done"


def test_mid_epoch_evaluations(tmp_path):
    _, res = fit(tmp_path, max_epochs=1, eval_every_n_steps=2)
    evals = [r for r in rows(tmp_path / "metrics.csv") if r["eval_timed_out"]]
    assert [int(r["step"]) for r in evals] == [2, 4, 5]  # 2 mid-epoch + end of epoch
    assert len(res.history) == 1


def test_hook_errors_are_logged_not_raised(tmp_path, caplog):
    def broken():
        raise RuntimeError("sync failed")

    with caplog.at_level(logging.ERROR):
        _, res = fit(tmp_path, max_epochs=2, on_checkpoint=broken)
    assert res.epochs_run == 2 and "sync failed" in caplog.text


def test_settings_validate_and_come_from_config():
    with pytest.raises(ValueError, match="allowed values: min, max"):
        LoopSettings(mode="low")
    cfg = load_config("smoke")
    tr = LoopSettings.from_config(cfg, "train")
    assert (tr.max_epochs, tr.min_epochs, tr.log_every_n_steps) == (15, 5, 2)
    pre = LoopSettings.from_config(cfg, "pretrain", monitor="val_mse")
    assert (pre.max_epochs, pre.min_epochs, pre.grad_clip, pre.monitor) == (3, 1, 1.0, "val_mse")
    assert pre.checkpoint_save_top_k == cfg.train.checkpoint_save_top_k


def test_shared_status_writer_is_reset_per_fit(tmp_path):
    status = StatusWriter(tmp_path / "status.json", "r1", "")
    status.update(phase="failed", error="old", stopped_reason="old")
    fit(tmp_path / "run", max_epochs=1, status=status)
    st = read_status(tmp_path / "status.json")
    assert st["gate"] == "gate_x" and st["error"] is None and st["phase"] == "done"


def test_eval_final_epoch_only_evaluates_once_and_keeps_the_final_weights(tmp_path):
    calls = []

    class Recorder:
        def update(self, **fields):
            calls.append(fields)

    # val losses that would make epoch 0 "best" if every epoch were evaluated
    module, res = fit(tmp_path, max_epochs=3, status=Recorder(), eval_final_epoch_only=True,
                      module=TinyModule(val_losses=[0.1, 0.9, 0.9]))
    assert [c["phase"] for c in calls].count("eval") == 1
    assert [h.get("evaluated", True) for h in res.history] == [False, False, True]
    assert "val_loss" in res.history[2] and "val_loss" not in res.history[0]
    assert res.best_epoch == 2 and res.epochs_run == 3
    final = last_weights(tmp_path)
    assert all(torch.equal(final[k], v) for k, v in module.model.state_dict().items())
    table = rows(tmp_path / "metrics.csv")
    assert sum(1 for r in table if r.get("train_loss_epoch")) == 3  # the curve keeps every epoch
    assert sum(1 for r in table if r.get("val_loss")) == 1
