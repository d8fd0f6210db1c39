"""How to rebuild an exported module from plain JSON: its class and constructor arguments.

A state dict holds weights, not the network that uses them, and ``weights_only`` loading
(the only way moola loads a file) cannot bring classes along. The model card therefore names
the class and its arguments, read off the trained module: ``{"class": "EnhancedSimpleLSTM",
"args": {...}}``. moola's own classifiers are known here; a module of another class is
exported with its weights and ``{"class": "mypkg.MyNet", "args": null}``, which
:func:`build` refuses with the way to load the weights yourself.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn


def describe(module: nn.Module) -> dict[str, Any]:
    """{"class", "args"} of a trained module; args None for a class not known here."""
    from moola.models import EnhancedSimpleLSTM, SimpleLSTM

    if isinstance(module, EnhancedSimpleLSTM):
        return {"class": "EnhancedSimpleLSTM", "args": {
            "encoder_cfg": module.encoder_cfg.to_dict(), "n_classes": int(module.n_classes),
            "attention_heads": int(module.requested_heads),
            "head_hidden": int(module.head[0].out_features),
            "dropout": float(module.attn_dropout.p)}}
    if isinstance(module, SimpleLSTM):
        return {"class": "SimpleLSTM", "args": {
            "input_features": int(module.input_features), "hidden": int(module.lstm.hidden_size),
            "n_classes": int(module.n_classes), "dropout": float(module.dropout.p)}}
    cls = type(module)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "args": None}


def build(arch: Mapping[str, Any], where: str = "card.json") -> nn.Module:
    """The untrained module `arch` (from :func:`describe`) describes; `where` names the file
    in errors."""
    from moola.models import EncoderConfig, EnhancedSimpleLSTM, SimpleLSTM

    name, args = arch.get("class"), arch.get("args")
    if name == "EnhancedSimpleLSTM" and isinstance(args, Mapping):
        a = dict(args)
        return EnhancedSimpleLSTM(EncoderConfig.from_dict(a.pop("encoder_cfg")), **a)
    if name == "SimpleLSTM" and isinstance(args, Mapping):
        return SimpleLSTM(**args)
    raise ValueError(
        f"{where}: architecture {name!r} is not one moola can rebuild (it knows "
        f"EnhancedSimpleLSTM and SimpleLSTM); build the module with your own code and load the "
        f"weights into it: module.load_state_dict(torch.load('model.pt', weights_only=True))")
