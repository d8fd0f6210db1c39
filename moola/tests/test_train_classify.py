"""fit_classifier / predict_proba / class weights on tiny problems."""

import numpy as np
import pytest
import torch

from moola.config import load_config
from moola.train import ClassifierModule, fit_classifier, inverse_frequency_weights, predict_proba

CPU = torch.device("cpu")


class MeanLinear(torch.nn.Module):
    """x: (B, T, F) -> logits (B, K): mean over time, then a linear layer."""

    def __init__(self, features=2, classes=2):
        super().__init__()
        self.fc = torch.nn.Linear(features, classes)

    def forward(self, x):
        return self.fc(x.mean(dim=1))


def separable(n, seed, n_pos):
    rng = np.random.default_rng(seed)
    y = np.array([1] * n_pos + [0] * (n - n_pos), dtype=np.int64)
    X = rng.normal(0, 0.3, size=(n, 6, 2)).astype(np.float32)
    X[:, :, 0] += np.where(y == 1, 1.0, -1.0)[:, None]
    return X, y


@pytest.fixture
def cfg():
    return load_config("smoke", overrides={"train.max_epochs": 8, "train.min_epochs": 1,
                                            "train.lr": 0.05, "run.log_every_n_steps": 5})


def test_inverse_frequency_weights():
    y = np.array([0] * 48 + [1] * 30)
    assert inverse_frequency_weights(y, 2).tolist() == pytest.approx([0.8125, 1.3])
    assert inverse_frequency_weights(np.array([0, 0, 2]), 3).tolist() == pytest.approx([0.5, 1.0, 1.0])


def test_fit_classifier_learns_separable_problem(tmp_path, cfg):
    X, y = separable(78, 0, 30)
    Xv, yv = separable(20, 1, 8)
    torch.manual_seed(0)
    out = fit_classifier(MeanLinear(), X, y, Xv, yv, cfg, tmp_path, CPU, "gate_t")
    per_epoch = -(-78 // cfg.train.batch_size)  # 78 windows, drop_last=False: a partial batch
    assert out.fit.steps == per_epoch * out.fit.epochs_run
    assert out.val_proba.shape == (20, 2) and np.allclose(out.val_proba.sum(1), 1)
    assert (out.val_pred == yv).mean() >= 0.9
    assert out.train_loss_last < out.train_loss_first
    best = out.fit.history[out.fit.best_epoch]
    assert best["val_accuracy"] >= 0.9 and {"val_loss", "val_macro_f1"} <= set(best)
    assert out.model is not None and (tmp_path / "metrics.csv").is_file()


def test_fit_classifier_epoch_hook_and_param_groups(tmp_path, cfg):
    X, y = separable(32, 2, 16)
    model = MeanLinear()
    seen = []
    groups = [{"params": [model.fc.weight], "lr": 0.01}, {"params": [model.fc.bias], "lr": 0.02}]
    out = fit_classifier(model, X, y, X, y, cfg.replace("train", max_epochs=2), tmp_path, CPU, "g",
                         epoch_hook=lambda e, opt, m: seen.append((e, len(opt.param_groups), m is model)),
                         param_groups=groups)
    assert seen == [(0, 2, True), (1, 2, True)] and out.fit.epochs_run == 2


def test_labels_out_of_range_are_rejected(tmp_path, cfg):
    X, y = separable(8, 0, 4)
    with pytest.raises(ValueError, match="outside 0..1"):
        fit_classifier(MeanLinear(), X, y + 1, X, y, cfg, tmp_path, CPU, "g")


def test_validation_metrics_and_predict_proba_keep_mode():
    X, y = separable(10, 3, 5)
    model = MeanLinear()
    module = ClassifierModule(model, X, y, lr=0.01, weight_decay=0.0,
                              class_weights=inverse_frequency_weights(y, 2))
    with torch.no_grad():
        metrics = module.validation_metrics(model, CPU)
    assert set(metrics) == {"val_loss", "val_macro_f1", "val_accuracy"}
    model.train()
    proba = predict_proba(model, X, CPU, batch_size=3)
    assert proba.shape == (10, 2) and model.training


def test_epoch_budget_is_one_rule_for_both_kinds_of_fit():
    """Early stopping: --max-epochs is a floor raised so that min_steps and a full patience
    fit; a fixed budget (no stopping slice): exactly that many epochs, raised to min_steps,
    nothing to stop on. The number is what a replica records as max_epochs."""
    from moola.train import LoopSettings
    from moola.train.classify import epoch_budget

    s = LoopSettings(max_epochs=40, min_epochs=1, early_stop_patience=8)
    es = epoch_budget(s, steps_per_epoch=2, min_steps=200)
    assert (es.min_epochs, es.max_epochs) == (100, 108)  # 200 steps / 2 per epoch + patience
    assert epoch_budget(s, steps_per_epoch=50, min_steps=200).max_epochs == 40  # floor holds
    assert epoch_budget(s, steps_per_epoch=2, min_steps=0) == s
    fixed = epoch_budget(s, steps_per_epoch=2, min_steps=200, fixed=True)
    assert (fixed.min_epochs, fixed.max_epochs) == (100, 100) and fixed.eval_final_epoch_only
    assert fixed.early_stop_patience > fixed.max_epochs and fixed.checkpoint_save_top_k == 0
    assert epoch_budget(s, steps_per_epoch=50, min_steps=200, fixed=True).max_epochs == 40
