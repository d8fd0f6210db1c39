"""What the gates produce, as typed read-only objects: the fixtures' values and the judges' input.

Every built-in gate judges these objects, and the pytest fixtures of the same names hand the
very same objects to user gates and tests (``pytest --fixtures`` lists them): one path, not two.
They are views of the content-keyed cache (:mod:`moola.gates.work` builds an entry when it is
missing), so asking for one is cheap once it exists.

Read-only: arrays are not writeable, per-replica summaries are mappings that refuse
assignment, and models are loaded afresh from their checkpoints on every call, so a test cannot
change what the next test sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import torch

from moola.gates import building, work
from moola.gates.context import GateContext


def _frozen(value: Any) -> Any:
    """Arrays not writeable, dicts as read-only mappings, lists as tuples (recursively)."""
    if isinstance(value, np.ndarray):
        value = value.view()
        value.setflags(write=False)
        return value
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


@dataclass(frozen=True)
class DatasetView:
    """The labeled and unlabeled windows a run uses (normalised as the gates see them).

    X: (n, T, F) labeled windows; y: (n,) class indices into `classes`; X_unlabeled: (m, T, F);
    train_idx / val_idx / test_idx: the split file's rows (test rows are never scored by a
    gate); folds: the protocol's walk-forward folds (moola.protocol.Fold); fingerprint: the
    content hash every cache key includes.
    """

    path: Path
    X: np.ndarray
    y: np.ndarray
    X_unlabeled: np.ndarray
    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    folds: tuple[Any, ...]
    fingerprint: str


@dataclass(frozen=True)
class TrainedModel:
    """A gate's model, trained as replicas (seeds x walk-forward folds) with the shared recipe.

    The pooled out-of-fold predictions of the scored windows: `y` (n,), `proba` (R, n, K) and
    `pred` (R, n) for R seeds, `fold_of` (n,) the fold that scored each window, `score_idx`
    (n,) their rows in the dataset, `seeds` (R,). `test_idx`, `y_test`, `test_proba`
    (R, n_test, K): the held-out rows, predicted by each seed's last-fold model. `replicas`:
    one read-only summary per replica (epochs, stopping, train_acc, ...). `info`: what the gate
    recorded about its recipe (gate 4: the encoder load report; gate 6: the device; gate 2:
    per-fold train_acc). `artifact`: cache key and path. :meth:`load_models` gives the trained
    modules. `recipe`: how the replicas were trained (None for gate 2's control), what
    :func:`refitted` trains once more on every development row.
    """

    name: str
    gate: str
    model: str
    y: np.ndarray
    proba: np.ndarray
    pred: np.ndarray
    fold_of: np.ndarray
    score_idx: np.ndarray
    seeds: np.ndarray
    test_idx: np.ndarray
    y_test: np.ndarray
    test_proba: np.ndarray
    replicas: tuple[Mapping[str, Any], ...]
    info: Mapping[str, Any]
    artifact: Mapping[str, Any]
    model_paths: tuple[Path, ...] = ()
    _factory: Callable[[], torch.nn.Module] | None = field(default=None, repr=False,
                                                           compare=False)
    recipe: Any = field(default=None, repr=False, compare=False)  # moola.gates.work.Recipe

    def load_models(self) -> dict[str, torch.nn.Module]:
        """{replica name: the trained module in eval mode on CPU}, loaded afresh each call."""
        if self._factory is None or not self.model_paths:
            raise ValueError(f"{self.name}: no trained torch modules to load (a {self.model})")
        out = {}
        for path in self.model_paths:
            module = self._factory()
            module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            out[path.stem] = module.eval()
        return out


@dataclass(frozen=True)
class RefittedModel:
    """A gate's recipe trained once more on every development row (train + val rows of the
    split, never test rows), for a fixed budget: what a run exports (moola.export).

    `path`: the state dict (loads with ``weights_only=True``); `architecture`: how to rebuild
    the module (moola.models.architecture; None for a class it does not know); `info`: rows,
    seed, epochs and how they were chosen, training loss and accuracy; `artifact`: cache key and
    path. :meth:`load` gives the module.
    """

    name: str
    gate: str
    path: Path
    architecture: Mapping[str, Any] | None
    info: Mapping[str, Any]
    artifact: Mapping[str, Any]
    _factory: Callable[[], torch.nn.Module] | None = field(default=None, repr=False,
                                                           compare=False)

    def load(self) -> torch.nn.Module:
        """The refitted module in eval mode on CPU, loaded afresh from its weights."""
        if self._factory is None:
            raise ValueError(f"{self.name}: no module factory to load the refitted weights into")
        module = self._factory()
        module.load_state_dict(torch.load(self.path, map_location="cpu", weights_only=True))
        return module.eval()


@dataclass(frozen=True)
class Encoder:
    """Gate 3's pretrained BiLSTM encoder and what pretraining measured.

    `config`: the encoder's architecture; `reconstruction`: masked MSE vs linear interpolation
    on the held-out unlabeled windows that chose no epoch (moola.pretrain.stop_and_score);
    `history`: per-epoch pretraining metrics (on the stopping windows); `probe`: the
    linear probes (encoder / raw windows / random encoder) and `probe_predictions` their
    out-of-fold predictions; `path`: the checkpoint. :meth:`load` gives the module.
    """

    path: Path
    config: Mapping[str, Any]
    reconstruction: Mapping[str, Any]
    history: tuple[Mapping[str, Any], ...]
    epochs_run: int
    stopped_reason: str
    n_unlabeled: int
    probe: Mapping[str, Any]
    probe_predictions: Mapping[str, np.ndarray]
    artifact: Mapping[str, Any]

    def load(self) -> torch.nn.Module:
        """The encoder module (eval mode, CPU), loaded afresh from the checkpoint."""
        from moola.models import BiLSTMEncoder
        from moola.pretrain import load_encoder_checkpoint

        cfg, state, _ = load_encoder_checkpoint(self.path)
        module = BiLSTMEncoder(cfg)
        module.load_state_dict(state)
        return module.eval()


@dataclass(frozen=True)
class Ensemble:
    """Gate 7's members: raw and cross-fitted calibrated probabilities (R, n, K) per member."""

    y: np.ndarray
    fold_of: np.ndarray
    seeds: np.ndarray
    members: Mapping[str, Mapping[str, np.ndarray]]  # name -> {"raw", "calibrated"}
    artifact: Mapping[str, Any]


# ---------------------------------------------------------------------------------------------
# getters: the one way to an artifact (fixtures and built-in judges alike)
# ---------------------------------------------------------------------------------------------


def dataset(ctx: GateContext) -> DatasetView:
    """The run's dataset and the protocol's folds."""
    ds = ctx.dataset
    return DatasetView(
        path=Path(ds.path), X=_frozen(ds.X), y=_frozen(ds.y),
        X_unlabeled=_frozen(ds.X_unlabeled), classes=tuple(ds.classes),
        feature_names=tuple(ds.feature_names), train_idx=_frozen(ds.train_idx),
        val_idx=_frozen(ds.val_idx), test_idx=_frozen(ds.test_idx), folds=tuple(work.folds(ctx)),
        fingerprint=ds.fingerprint)


_POOLED = ("y", "proba", "pred", "fold_of", "score_idx", "seeds", "test_idx", "y_test",
           "test_proba")
_EMPTY = {"test_idx": np.zeros(0, np.int64), "y_test": np.zeros(0, np.int64)}


def trained_model(name: str, gate: str, w: Mapping[str, Any],
                  factory: Callable[[], torch.nn.Module] | None = None) -> TrainedModel:
    """A TrainedModel from what a replicated work function returned (see moola.gates.work)."""
    arrays = {k: np.asarray(w[k]) if k in w else _EMPTY.get(k) for k in _POOLED}
    if arrays["test_proba"] is None:
        arrays["test_proba"] = np.zeros((len(w["seeds"]), 0, np.asarray(w["proba"]).shape[-1]))
    info = {k: v for k, v in w.items()
            if k not in _POOLED and k not in ("replicas", "artifact", "model", "model_paths",
                                              "recipe")}
    return TrainedModel(
        name=name, gate=gate, model=str(w.get("model", name)),
        **{k: _frozen(v) for k, v in arrays.items()},
        replicas=_frozen(list(w.get("replicas") or [])), info=_frozen(info),
        artifact=_frozen(dict(w.get("artifact") or {})),
        model_paths=tuple(Path(p) for p in w.get("model_paths") or ()), _factory=factory,
        recipe=w.get("recipe"))


def baseline(ctx: GateContext) -> TrainedModel:
    """Gate 1's EnhancedSimpleLSTM trained from scratch."""
    ds = ctx.dataset
    return trained_model("baseline", "gate_1_smoke_enhanced", work.baseline(ctx),
                         lambda: work.build_enhanced(ctx, len(ds.classes), ds.X.shape[2]))


def control(ctx: GateContext) -> TrainedModel:
    """Gate 2's MiniRocket + RidgeClassifierCV control (one replica per fold; no torch module)."""
    return trained_model("control", "gate_2_control_minirocket", work.control(ctx))


def encoder(ctx: GateContext) -> Encoder:
    """Gate 3's pretrained encoder."""
    e = work.encoder(ctx)
    return Encoder(
        path=Path(e["encoder_path"]), config=_frozen(e["encoder_config"]),
        reconstruction=_frozen(e["reconstruction"]), history=_frozen(e["history"]),
        epochs_run=int(e["epochs_run"]), stopped_reason=str(e["stopped_reason"]),
        n_unlabeled=int(e["n_unlabeled"]), probe=_frozen(e["probe"]),
        probe_predictions=_frozen(dict(e["probe_predictions"])),
        artifact=_frozen(e["artifact"]))


def _pretrained_factory(ctx: GateContext):
    def build():  # the encoder is looked up only when a module is loaded
        enc_path = work.encoder(ctx)["encoder_path"]
        return work.build_pretrained(ctx, enc_path, len(ctx.dataset.classes))[0]

    return build


def finetuned(ctx: GateContext) -> TrainedModel:
    """Gate 4's EnhancedSimpleLSTM started from the pretrained encoder (info: load_report)."""
    return trained_model("finetuned", "gate_4_finetune_enhanced", work.finetuned(ctx),
                         _pretrained_factory(ctx))


def random_init(ctx: GateContext) -> TrainedModel:
    """Gate 4's control: its recipe from a randomly initialised encoder (isolates pretraining)."""
    from moola.models import EncoderConfig, EnhancedSimpleLSTM

    def build():
        ds, m = ctx.dataset, ctx.cfg.model
        enc_cfg = EncoderConfig.from_dict(work.encoder(ctx)["encoder_config"])
        return EnhancedSimpleLSTM(enc_cfg, len(ds.classes), attention_heads=m.attention_heads,
                                  head_hidden=m.head_hidden, dropout=m.dropout)

    return trained_model("random_init", "gate_4_finetune_enhanced", work.random_init(ctx), build)


def augmented(ctx: GateContext) -> TrainedModel:
    """Gate 5's finetuned recipe trained on real + accepted pseudo-samples."""
    return trained_model("augmented", "gate_5_augment", work.augmented(ctx),
                         _pretrained_factory(ctx))


def simple(ctx: GateContext) -> TrainedModel:
    """Gate 6's unidirectional SimpleLSTM (info: device)."""
    ds = ctx.dataset
    return trained_model("simple", "gate_6_baseline_simplelstm", work.simple(ctx),
                         lambda: work.build_simple(ctx, len(ds.classes), ds.X.shape[2]))


def ensemble(ctx: GateContext, approved: Mapping[str, Any]) -> Ensemble:
    """Gate 7's calibrated members: {model name: GateSpec} of the approved gates (their
    producers give the models; cached, keyed by the members' artifacts)."""
    from moola.gates import ensemble_work

    from moola.gates.registry import REGISTRY

    spec = REGISTRY.ensemble_gate()
    e = ensemble_work.calibrated_members(ctx, approved, spec.name if spec else "ensemble")
    return Ensemble(y=_frozen(e["y"]), fold_of=_frozen(e["fold_of"]), seeds=_frozen(e["seeds"]),
                    members=_frozen(e["members"]), artifact=_frozen(e["artifact"]))


def approved_ensemble(ctx: GateContext) -> Ensemble:
    """The ensemble gate's members as its verdict approved them (the `ensemble_model`
    artifact): the ensemble gate must have been judged in this session."""
    from moola.gates.registry import REGISTRY

    spec = REGISTRY.ensemble_gate()
    v = ctx.verdicts.get(spec.name) if spec is not None else None
    if v is None or "approved" not in (v.metrics or {}):
        raise LookupError(f"the ensemble is built by its gate; judge it first (declare your gate "
                          f"with after={spec.name if spec else 'the ensemble gate'!r})")
    candidates = REGISTRY.ensemble_candidates()
    return ensemble(ctx, {n: candidates[n] for n in v.metrics["approved"]})


def refitted(ctx: GateContext, model: TrainedModel) -> RefittedModel:
    """`model`'s recipe refitted on every development row (cached; see moola.gates.refit)."""
    from moola.gates import refit

    if model.recipe is None:
        raise ValueError(f"{model.name} ({model.gate}): no recipe to refit (a {model.model}, "
                         f"not a torch module trained by moola's protocol)")
    r = refit.refit(ctx, model.recipe, model.replicas)
    recipe = model.recipe
    return RefittedModel(
        name=model.name, gate=model.gate, path=Path(r["model_path"]),
        architecture=_frozen(r["architecture"]), info=_frozen(r["info"]),
        artifact=_frozen(r["artifact"]),
        _factory=lambda: recipe.make_model(int(r["info"]["seed"])).cpu())


def train_model(ctx: GateContext, gate: str, name: str,
                make_model: Callable[[int], torch.nn.Module], *,
                sections: tuple[str, ...] = work.CLASSIFIER_SECTIONS,
                key_extra: Mapping[str, Any] | None = None) -> TrainedModel:
    """Train (or load from the cache) a model of your own with moola's protocol and recipe.

    `make_model(seed)` builds the untrained module; the artifact is cached under the kind
    `name`, keyed by the configuration `sections`, the data, moola's training code and
    `key_extra` (put anything that changes your model in it, e.g. its hyper-parameters).
    A user gate declared with ``produces=`` returns this to add its model to the ensemble.
    """
    key = building.cache_key(ctx, name, tuple(sections), user=dict(key_extra or {}))
    w = work.replicated(ctx, gate, name, key, make_model, {"model": name})
    n_seeds = len(w["seeds"])
    return trained_model(name, gate, w, lambda: make_model(int(w["seeds"][0]) if n_seeds else 0))
