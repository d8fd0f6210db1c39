"""Model out, the parts that need no session: rebuilding a module from its card, the refit's
budget, atomic publication on a full disk, loading and checking an exported directory.
(Real sessions, `moola predict` processes and the ensemble: test_model_out.py.)"""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import torch

from moola.data.normalize import window_zscore
from moola.diskspace import DiskFullError
from moola.export import ModelDirError, load_model
from moola.models.architecture import build, describe
from moola.export.bundle import FORMAT, check_windows, publish, write_model_files
from moola.gates.refit import budget_epochs
from moola.models import EncoderConfig, EnhancedSimpleLSTM, SimpleLSTM
from moola.testing import random_ohlc


def _modules() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    enc = EncoderConfig(input_features=4, hidden=6, layers=2, dropout=0.2)
    return {"enhanced": EnhancedSimpleLSTM(enc, 3, attention_heads=4, head_hidden=5, dropout=0.3),
            "simple": SimpleLSTM(4, hidden=7, n_classes=3, dropout=0.1)}


@pytest.mark.parametrize("name", ["enhanced", "simple"])
def test_a_module_rebuilt_from_its_card_takes_its_weights_and_predicts_the_same(name):
    module = _modules()[name].eval()
    arch = json.loads(json.dumps(describe(module)))  # the card is JSON
    rebuilt = build(arch)
    rebuilt.load_state_dict(module.state_dict())  # strict: every tensor, every shape
    x = torch.as_tensor(random_ohlc(5, 12, seed=1))
    with torch.no_grad():
        assert torch.equal(module(x), rebuilt.eval()(x))


def test_a_class_moola_does_not_know_is_described_but_not_rebuilt():
    class MyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

    arch = describe(MyNet())
    assert arch["class"].endswith("MyNet") and arch["args"] is None
    with pytest.raises(ValueError, match=r"models/x/card.json: architecture .*MyNet.*"
                                         r"load_state_dict\(torch.load\('model.pt', "
                                         r"weights_only=True\)\)"):
        build(arch, "models/x/card.json")


def test_the_refit_budget_is_the_median_of_the_replicas_kept_epochs():
    reps = [{"best_epoch": 0, "epochs_run": 9}, {"best_epoch": 4, "epochs_run": 13},
            {"best_epoch": 9, "epochs_run": 18}, {"best_epoch": None, "epochs_run": 6}]
    # best_epoch is 0-based: 1, 5, 10 epochs; a fixed-budget replica kept all its 6
    assert budget_epochs(reps) == (6, [1, 5, 10, 6])  # median 5.5, rounded up
    with pytest.raises(ValueError, match="no replicas"):
        budget_epochs([])


def test_the_refit_s_key_holds_its_shards(tmp_path, monkeypatch):
    from moola.config import load_config
    from moola.gates import building, refit, work
    from moola.gates.context import GateContext
    from moola.testing import SMOKE_DATA

    keys = []

    def record(ctx, gate, kind, key, build):  # the key the refit would be cached under
        keys.append(key)
        raise LookupError("not built in this test")

    monkeypatch.setattr(building, "build_entry", record)
    recipe = work.Recipe("gate_1_smoke_enhanced", "baseline", "replicas-key", lambda seed: None)
    for shards in (1, 2, 2):
        cfg = load_config("smoke", overrides={"run.data": str(SMOKE_DATA),
                                              "train.refit_shards": shards})
        with pytest.raises(LookupError):
            refit.refit(GateContext(cfg=cfg, run_id="t", root=tmp_path), recipe,
                        [{"best_epoch": 3, "epochs_run": 9}])
    assert keys[0] != keys[1] == keys[2]


def test_publication_on_a_full_disk_leaves_the_old_model_and_no_temporary_directory(tmp_path):
    final = tmp_path / "models" / "baseline"
    publish(final, lambda tmp: (tmp / "card.json").write_text("old"))

    def fill(tmp):
        (tmp / "model.pt").write_bytes(b"x" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(DiskFullError, match=f"no space left on device writing {final}"):
        publish(final, fill)
    assert (final / "card.json").read_text() == "old"
    assert sorted(p.name for p in final.parent.iterdir()) == ["baseline"]


def _export(tmp_path, module) -> "os.PathLike":
    torch.save(module.state_dict(), tmp_path / "weights.pt")
    card = {"format": FORMAT, "kind": "model", "name": "m", "classes": ["a", "b", "c"],
            "feature_names": ["open", "high", "low", "close"], "window_length": 12,
            "normalization": {"method": "window_zscore"}, "architecture": describe(module)}
    out = tmp_path / "m"
    publish(out, lambda tmp: write_model_files(tmp, tmp_path / "weights.pt", card,
                                               lambda c: "card\n"))
    return out


def test_an_exported_model_loads_with_weights_only_and_normalises_raw_windows(tmp_path):
    module = _modules()["simple"].eval()
    out = _export(tmp_path, module)
    state = torch.load(out / "model.pt", weights_only=True)
    assert state.keys() == module.state_dict().keys()
    raw = random_ohlc(6, 12, seed=3, zscore=False) * 50 + 20_000  # prices, not z-scores
    with torch.no_grad():
        want = torch.softmax(module(torch.as_tensor(window_zscore(raw))), -1).double().numpy()
    np.testing.assert_allclose(load_model(out).predict_proba(raw), want, atol=1e-6)


def test_altered_weights_or_a_missing_card_name_the_file(tmp_path):
    out = _export(tmp_path, _modules()["simple"])
    with open(out / "model.pt", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelDirError, match=f"{out / 'model.pt'}: its SHA-256 differs"):
        load_model(out)
    (out / "card.json").unlink()
    with pytest.raises(ModelDirError, match=f"{out / 'card.json'}: missing .*found card.md"):
        load_model(out)
    with pytest.raises(ModelDirError, match="model directory not found"):
        load_model(tmp_path / "nowhere")


def test_windows_of_the_wrong_shape_are_refused_with_the_fix():
    card = {"window_length": 105, "feature_names": ["open", "high", "low", "close"]}
    with pytest.raises(ValueError, match=r"data.csv: windows have 5 features, the model was "
                                         r"trained on 4 \(open, high, low, close\)"):
        check_windows(np.zeros((3, 105, 5)), card, "data.csv")
    with pytest.raises(ValueError, match=r"ds/labeled.parquet: windows have 64 timesteps, the "
                                         r"model was trained on 105-step windows .*--window 105"):
        check_windows(np.zeros((3, 64, 4)), card, "ds/labeled.parquet")
