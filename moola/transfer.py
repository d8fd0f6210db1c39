"""Transfer of a pretrained encoder into the downstream classifier (gate 4).

- :func:`build_from_encoder` builds EnhancedSimpleLSTM FROM the checkpoint's encoder config, so
  the layer count and sizes cannot disagree, then loads the encoder tensors.
- :func:`load_encoder_into` counts what it loads against the ENCODER tensors in the checkpoint
  (the earlier tool counted against the whole model: "8/18 = 44%"). Loading is all-or-nothing:
  unless every encoder tensor matches by name and shape, nothing is copied and the report says
  why; the head (attention, norm, classifier) is always listed as newly initialised.
- :func:`freeze_encoder`, :class:`ProgressiveUnfreezer` and :func:`discriminative_param_groups`
  implement the finetuning schedule of ``cfg.finetune``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

_LAYER_RE = re.compile(r"_l(\d+)(?:_reverse)?$")


@dataclass
class LoadReport:
    """What loading pretrained encoder tensors into a model did.

    ``ratio`` = matched / encoder tensors in the checkpoint; ``ok`` only when every checkpoint
    encoder tensor found a model tensor of the same name and shape, and the model's encoder has
    no tensor the checkpoint lacks (then, and only then, ``applied`` is True).
    """

    checkpoint_tensors: int
    matched: list[str] = field(default_factory=list)
    shape_mismatches: list[dict[str, Any]] = field(default_factory=list)
    missing_in_model: list[str] = field(default_factory=list)  # in checkpoint, not in model encoder
    missing_in_checkpoint: list[str] = field(default_factory=list)  # in model encoder, not in checkpoint
    head_new: list[str] = field(default_factory=list)  # model tensors outside `encoder.`: fresh init
    applied: bool = False
    checkpoint: str | None = None
    hints: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return len(self.matched) / self.checkpoint_tensors if self.checkpoint_tensors else 0.0

    @property
    def ok(self) -> bool:
        return (
            self.checkpoint_tensors > 0
            and len(self.matched) == self.checkpoint_tensors
            and not self.shape_mismatches
            and not self.missing_in_model
            and not self.missing_in_checkpoint
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["ok"] = self.ok
        d["loaded"] = len(self.matched)
        d["total"] = self.checkpoint_tensors
        d["message"] = "" if self.ok else self.format()
        return d

    def format(self) -> str:
        """A readable multi-line report (what gate 4 prints and stores)."""
        verdict = "OK" if self.ok else "NOT OK"
        lines = [
            f"Pretrained encoder load report: {verdict}",
            f"  checkpoint: {self.checkpoint or '(state dict in memory)'}",
            f"  encoder tensors loaded: {len(self.matched)}/{self.checkpoint_tensors} "
            f"({self.ratio:.0%}) -- counted against the checkpoint's encoder, must be 100%",
            f"  weights copied into the model: {'yes' if self.applied else 'no (all-or-nothing)'}",
        ]
        if self.shape_mismatches:
            lines.append(f"  shape mismatches ({len(self.shape_mismatches)}):")
            lines += [
                f"    {m['key']}: checkpoint {tuple(m['checkpoint'])} vs model {tuple(m['model'])}"
                for m in self.shape_mismatches
            ]
        if self.missing_in_model:
            lines.append(f"  in checkpoint but not in the model's encoder ({len(self.missing_in_model)}): "
                         + ", ".join(self.missing_in_model))
        if self.missing_in_checkpoint:
            lines.append(f"  in the model's encoder but not in the checkpoint ({len(self.missing_in_checkpoint)}): "
                         + ", ".join(self.missing_in_checkpoint))
        lines.append(f"  head tensors newly initialised ({len(self.head_new)}): "
                     + (", ".join(self.head_new) if self.head_new else "none"))
        lines += [f"  hint: {h}" for h in self.hints]
        return "\n".join(lines)


def _layers_in(keys: Any) -> set[int]:
    """LSTM layer indices present among state-dict keys (``*_l{i}`` / ``*_l{i}_reverse``)."""
    out = set()
    for k in keys:
        m = _LAYER_RE.search(k)
        if m:
            out.add(int(m.group(1)))
    return out


def load_encoder_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> LoadReport:
    """Load encoder tensors (keys relative to the encoder, e.g. ``lstm.weight_ih_l0``) into
    ``model.encoder`` and report. Keys already prefixed ``encoder.`` are accepted too.

    Nothing is copied unless the report is ok (every checkpoint encoder tensor has a model
    tensor of the same name and shape, and vice versa).
    """
    if not hasattr(model, "encoder"):
        raise TypeError(f"load_encoder_into: {type(model).__name__} has no `.encoder` to load into")
    ckpt = {(k[len("encoder."):] if k.startswith("encoder.") else k): v for k, v in state_dict.items()}
    target = model.encoder.state_dict()
    report = LoadReport(checkpoint_tensors=len(ckpt))
    for key, tensor in ckpt.items():
        if key not in target:
            report.missing_in_model.append(key)
        elif tuple(target[key].shape) != tuple(tensor.shape):
            report.shape_mismatches.append(
                {"key": key, "checkpoint": list(tensor.shape), "model": list(target[key].shape)}
            )
        else:
            report.matched.append(key)
    report.missing_in_checkpoint = [k for k in target if k not in ckpt]
    report.head_new = [k for k in model.state_dict() if not k.startswith("encoder.")]
    ck_layers, md_layers = _layers_in(ckpt), _layers_in(target)
    if ck_layers != md_layers:
        report.hints.append(
            f"layer-count mismatch: the checkpoint's encoder has {len(ck_layers)} LSTM layer(s), the "
            f"model's has {len(md_layers)}; build the model from the checkpoint's encoder config "
            "(moola.transfer.build_from_encoder) instead of from the run's model settings"
        )
    if report.shape_mismatches:
        report.hints.append(
            "shape mismatch: hidden size or input features differ between checkpoint and model; "
            "build the model from the checkpoint's encoder config (build_from_encoder)"
        )
    if report.checkpoint_tensors == 0:
        report.hints.append("the checkpoint holds no encoder tensors; re-run pretraining (gate 3)")
    elif not report.ok and not report.hints:
        report.hints.append(
            "the checkpoint's encoder and the model's encoder differ (e.g. bidirectional vs not); "
            "build the model from the checkpoint's encoder config (build_from_encoder)"
        )
    if report.ok:
        with torch.no_grad():
            for key in report.matched:
                target[key].copy_(ckpt[key])  # state_dict tensors share storage with the params
        report.applied = True
    return report


def build_from_encoder(
    checkpoint_path: str | Path, n_classes: int, model_settings: Any
) -> tuple[nn.Module, LoadReport]:
    """EnhancedSimpleLSTM built from the checkpoint's EncoderConfig, encoder tensors loaded.

    ``model_settings`` (cfg.model) supplies only the head: attention_heads, head_hidden, dropout.
    The report's ``meta`` carries the checkpoint's normalisation and extra provenance; raises
    :class:`moola.pretrain.artifact.CheckpointError` for a file that is not an encoder checkpoint.
    """
    from moola.models import EnhancedSimpleLSTM
    from moola.pretrain.artifact import load_encoder_checkpoint

    enc_cfg, state, meta = load_encoder_checkpoint(checkpoint_path)
    model = EnhancedSimpleLSTM(
        enc_cfg,
        n_classes,
        attention_heads=model_settings.attention_heads,
        head_hidden=model_settings.head_hidden,
        dropout=model_settings.dropout,
    )
    report = load_encoder_into(model, state)
    report.checkpoint = str(checkpoint_path)
    report.meta = {**meta, "encoder_config": enc_cfg.to_dict()}
    return model, report


def encoder_layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Encoder parameters per LSTM layer, index 0 = bottom layer.

    Uses ``model.encoder_layer_groups()`` when the model provides it, else groups
    ``model.encoder``'s parameters by their ``*_l{i}`` / ``*_l{i}_reverse`` name suffix
    (a parameter without a layer suffix sits below the LSTM and joins layer 0).
    """
    if hasattr(model, "encoder_layer_groups"):
        return [list(g) for g in model.encoder_layer_groups()]
    by_layer: dict[int, list[nn.Parameter]] = {}
    loose: list[nn.Parameter] = []
    for name, p in model.encoder.named_parameters():
        m = _LAYER_RE.search(name)
        (by_layer.setdefault(int(m.group(1)), []) if m else loose).append(p)
    n = max(by_layer) + 1 if by_layer else 1
    groups = [by_layer.get(i, []) for i in range(n)]
    groups[0] = loose + groups[0]
    return groups


def freeze_encoder(model: nn.Module) -> int:
    """Set requires_grad=False on every encoder parameter; returns how many were frozen."""
    params = list(model.encoder.parameters())
    for p in params:
        p.requires_grad_(False)
    return len(params)


class ProgressiveUnfreezer:
    """Encoder frozen for ``freeze_epochs`` epochs, then one LSTM layer more (top first) every
    ``unfreeze_every`` epochs (``unfreeze_every=0``: all layers at once after the freeze).

    Epochs are 0-based. The state is a pure function of the epoch, so a resumed run lands in the
    same phase. Use ``on_epoch_start`` as a TrainModule hook or as fit_classifier's epoch_hook.
    Parameters only toggle ``requires_grad``: they stay in the optimizer (see
    :func:`discriminative_param_groups`), where AdamW skips tensors without a gradient.
    """

    def __init__(self, model: nn.Module, freeze_epochs: int, unfreeze_every: int) -> None:
        if freeze_epochs < 0 or unfreeze_every < 0:
            raise ValueError(
                f"ProgressiveUnfreezer: freeze_epochs={freeze_epochs}, unfreeze_every={unfreeze_every}; "
                "both must be >= 0"
            )
        self.model = model
        self.freeze_epochs = int(freeze_epochs)
        self.unfreeze_every = int(unfreeze_every)
        self.groups = encoder_layer_groups(model)
        self.history: list[tuple[int, int]] = []  # (epoch, trainable layers) at each change

    def trainable_layers(self, epoch: int) -> int:
        """How many encoder layers (counted from the top) train in ``epoch``."""
        n = len(self.groups)
        if epoch < self.freeze_epochs:
            return 0
        if self.unfreeze_every == 0:
            return n
        return min(n, 1 + (epoch - self.freeze_epochs) // self.unfreeze_every)

    def on_epoch_start(self, epoch: int, optimizer: torch.optim.Optimizer | None = None) -> int:
        """Apply the schedule for ``epoch``; returns the number of trainable encoder layers."""
        k = self.trainable_layers(epoch)
        n = len(self.groups)
        for i, group in enumerate(self.groups):
            for p in group:
                p.requires_grad_(i >= n - k)
        if not self.history or self.history[-1][1] != k:
            self.history.append((int(epoch), k))
        return k

    __call__ = on_epoch_start


def discriminative_param_groups(model: nn.Module, lr: float, mult: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: head at ``lr``; encoder layer at depth d from the top at
    ``lr * mult**(d+1)`` (top layer lr*mult, next lr*mult**2, ...).

    Frozen parameters are included (requires_grad False) so that unfreezing later needs no new
    optimizer. Each group has a ``name`` ("head", "encoder.layer{i}") for logs.
    """
    groups_by_layer = encoder_layer_groups(model)
    enc_ids = {id(p) for g in groups_by_layer for p in g}
    enc_all = {id(p) for p in model.encoder.parameters()}
    if enc_ids != enc_all:
        raise RuntimeError("discriminative_param_groups: encoder_layer_groups() does not cover the encoder exactly")
    head = [p for p in model.parameters() if id(p) not in enc_ids]
    out: list[dict[str, Any]] = [{"params": head, "lr": lr, "name": "head"}]
    n = len(groups_by_layer)
    for depth, i in enumerate(range(n - 1, -1, -1)):
        if groups_by_layer[i]:
            out.append({"params": groups_by_layer[i], "lr": lr * mult ** (depth + 1), "name": f"encoder.layer{i}"})
    return out
