"""Security: nothing moola reads can run code, and configured paths cannot leave the project.

* checkpoints are plain tensors and values: ``torch.load(p, weights_only=True)`` reads a
  training checkpoint (``last.pt`` and the best ones) and an encoder checkpoint;
* a checkpoint carrying a pickle payload (an object whose ``__reduce__`` would create a marker
  file) is refused by ``load_encoder_checkpoint`` and not resumed from by the Trainer, with a
  message naming the file; the marker is never created;
* the cache never unpickles: a cached ``preds.npz`` replaced by an object-array npz is refused;
* ``--reports`` and ``[run] reports / cache`` in a gates-config that point outside the project
  (``..``, an absolute path, a symlink) are usage errors naming the key, and nothing is written.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

# Inline pytester sessions restore sys.modules afterwards; C extensions such as torch cannot be
# imported twice in one process, so everything the gates import is loaded here first.
import moola.data  # noqa: F401
import moola.gates  # noqa: F401
import moola.report.plots  # noqa: F401
import moola.train  # noqa: F401
from moola.testing import write_gate_suite
from moola.cache import ArtifactCache
from moola.config import load_config
from moola.gates.building import load_npz as _load_npz
from moola.models import BiLSTMEncoder, EncoderConfig, SimpleLSTM
from moola.pretrain.artifact import CheckpointError, load_encoder_checkpoint, save_encoder
from moola.train import fit_classifier
from moola.train.loop import CHECKPOINT_FORMAT

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "fixtures" / "smoke"


class Payload:
    """Unpickling this calls open(marker, 'w'): the marker file proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_payload_is_live(tmp_path):
    """Control: plain unpickling does run it, so the refusals below mean something."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()


# -- checkpoints ---------------------------------------------------------------------------------


def _tiny_problem(seed: int = 0):
    """x: (24, 12, 4) float32 windows, two classes separable by their mean."""
    rng = np.random.default_rng(seed)
    y = np.arange(24) % 2
    X = (rng.normal(size=(24, 12, 4)) + y[:, None, None]).astype(np.float32)
    return X[:16], y[:16], X[16:], y[16:]


def _fit(run_dir: Path, resume: bool = True):
    cfg = load_config("smoke", overrides={"train.max_epochs": 2, "train.min_epochs": 1,
                                          "run.logger": "none"})
    torch.manual_seed(0)
    model = SimpleLSTM(4, hidden=4, n_classes=2)
    X_tr, y_tr, X_va, y_va = _tiny_problem()
    return fit_classifier(model, X_tr, y_tr, X_va, y_va, cfg, run_dir, torch.device("cpu"),
                          "gate_sec", resume=resume)


def test_training_checkpoints_load_weights_only(tmp_path):
    _fit(tmp_path)
    ckpts = sorted((tmp_path / "checkpoints").glob("*.pt"))
    assert "last.pt" in [p.name for p in ckpts] and len(ckpts) >= 2, ckpts
    for p in ckpts:
        ck = torch.load(p, weights_only=True, map_location="cpu")
        assert ck["format"] == CHECKPOINT_FORMAT
        assert all(isinstance(v, torch.Tensor) for v in ck["model"].values())


def test_encoder_checkpoint_loads_weights_only(tmp_path):
    cfg = EncoderConfig(input_features=4, hidden=4, layers=1)
    path = save_encoder(tmp_path / "encoder.pt", BiLSTMEncoder(cfg), cfg, "window_zscore",
                        {"val_loss": 0.5})
    payload = torch.load(path, weights_only=True, map_location="cpu")
    assert payload["format"] == "moola-encoder/1" and payload["extra"] == {"val_loss": 0.5}


def test_encoder_checkpoint_with_pickle_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "encoder.pt"
    cfg = EncoderConfig(input_features=4, hidden=4, layers=1)
    torch.save({"format": "moola-encoder/1", "encoder_config": cfg.to_dict(),
                "normalization": "window_zscore",
                "state_dict": BiLSTMEncoder(cfg).state_dict(), "extra": Payload(marker)}, path)
    with pytest.raises(CheckpointError) as err:
        load_encoder_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "refused" in msg and "pickled Python objects" in msg
    assert "builtins.open" in msg or "io.open" in msg, msg  # names what it would have run
    assert "re-run gate 3" in msg  # the fix
    assert not marker.exists(), "loading must not execute code from the file"


def test_trainer_does_not_resume_from_a_checkpoint_with_a_pickle_payload(tmp_path, caplog):
    marker = tmp_path / "pwned"
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    # shaped like a real checkpoint, with one poisoned value
    torch.save({"format": CHECKPOINT_FORMAT, "epoch": 0, "step": 1, "model": {},
                "settings": {}, "history": [], "rng": Payload(marker)}, last)
    with caplog.at_level(logging.WARNING, logger="moola.train.loop"):
        result = _fit(tmp_path / "run", resume=True)
    assert not marker.exists(), "resume must not execute code from last.pt"
    assert result.fit.resumed_from_epoch is None, "the poisoned checkpoint must not be resumed"
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert str(last) in warning and "not resuming" in warning and "starting fresh" in warning
    assert "pickled Python objects" in warning, warning
    # the fresh run replaced it with a plain checkpoint
    assert torch.load(last, weights_only=True)["format"] == CHECKPOINT_FORMAT


# -- cache ---------------------------------------------------------------------------------------


def test_cache_refuses_an_object_array_npz_it_did_not_write(tmp_path):
    cache = ArtifactCache(tmp_path / "cache", run_id="r1")

    def build(tmp: Path, workdir: Path) -> None:
        np.savez(tmp / "preds.npz", val_proba=np.full((3, 2), 0.5), val_pred=np.zeros(3, np.int64))

    entry = cache.get_or_build("classifier", "k1", build)
    assert _load_npz(entry.path / "preds.npz")["val_pred"].tolist() == [0, 0, 0]
    # someone swaps the cached file for one that carries a pickle payload
    marker = tmp_path / "pwned"
    np.savez(entry.path / "preds.npz", val_pred=np.array([Payload(marker)], dtype=object))
    hit = cache.lookup("classifier", "k1")
    with pytest.raises(ValueError) as err:
        _load_npz(hit.path / "preds.npz")
    msg = str(err.value)
    assert str(hit.path / "preds.npz") in msg and "pickled" in msg and "--rebuild" in msg, msg
    assert not marker.exists(), "the cache must never unpickle"


# -- paths from configuration --------------------------------------------------------------------


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """The repo's layout: a conftest registering the plugin and the real gates_tests files."""
    write_gate_suite(pytester.path)
    return pytester


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _escape_cases(outside: Path) -> dict[str, tuple[list[str], str, str]]:
    """{id: (extra args, gates-config text or '', key named in the error)}."""
    return {
        "cli_reports_dotdot": (["--reports=../elsewhere"], "", "run.reports"),
        "cli_reports_absolute": ([f"--reports={outside}"], "", "run.reports"),
        "config_cache_absolute": ([], f'[run]\ncache = "{outside}"\n', "run.cache"),
        "config_reports_dotdot": ([], '[run]\nreports = "../../x"\n', "run.reports"),
        "config_cache_dotdot": ([], '[run]\ncache = "../cache"\n', "run.cache"),
        "cli_reports_symlink_out": (["--reports=link"], "", "run.reports"),
    }


@pytest.mark.parametrize("case", list(_escape_cases(Path("/x"))))
def test_output_paths_outside_the_project_are_usage_errors(project, tmp_path, case):
    outside = tmp_path / "outside"
    args, toml, key = _escape_cases(outside)[case]
    (project.path / "link").symlink_to(outside, target_is_directory=True)
    if toml:
        cfg = project.path / "gates.toml"
        cfg.write_text(toml)
        args = args + [f"--gates-config={cfg}"]
    project_before = _files(project.path)
    parent_before = {p.name for p in project.path.parent.iterdir()}
    r = project.runpytest("--profile", "smoke", "-k", "gate_0", f"--data={SMOKE}", *args)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    err = "\n".join(r.errlines)
    assert f"'{key}'" in err and "outside the project directory" in err, err
    assert "use a path inside it" in err
    assert not outside.exists(), "nothing may be written outside the project"
    assert {p.name for p in project.path.parent.iterdir()} == parent_before
    assert not (project.path.parent.parent / "x").exists()  # "../../x"
    assert _files(project.path) == project_before, "a usage error writes nothing"
