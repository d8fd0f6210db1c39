"""gate_8_view_<c>: one member per channel, each a SimpleLSTM that reads that channel alone
(user gates; gate 7's must-pass known answer, docs/JUDGING.md "Known answers").

On `moola.testing.write_split_views` data each channel shows the label flipped on a quarter of
the windows, independently per channel: each member can be right on at most about 0.75 of the
windows, and they err on different ones, so the majority of seven is right on about 0.93 and
gate 7's ensemble must beat its best member. `bench/known_answers.py` copies this file beside
the built-in gates (`moola panel --gates`); the file declares the gates through moola's public
API, as a user's own would.
"""

import torch

from moola.gates import gate, verdict
from moola.gates.artifacts import train_model
from moola.gates.criteria import replicated_metrics, skill_shown
from moola.models import SimpleLSTM

VIEWS = 7  # moola.testing.write_split_views' default
HIDDEN = 16


class OneView(torch.nn.Module):
    """A SimpleLSTM on channel `view` of (batch, time, features) windows."""

    def __init__(self, view: int, n_classes: int) -> None:
        super().__init__()
        self.view = view
        self.inner = SimpleLSTM(1, hidden=HIDDEN, n_classes=n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x[..., self.view:self.view + 1])


def _declare(view: int):
    name = f"gate_8_view_{view}"

    def member(ctx):
        """A SimpleLSTM that reads one channel, trained with moola's protocol (cached)."""
        k = len(ctx.dataset.classes)
        # the key names the architecture: this file's code is not in moola's cache key
        return train_model(ctx, name, f"view{view}", lambda seed: OneView(view, k),
                           key_extra={"arch": "OneView(SimpleLSTM)", "view": view,
                                      "hidden": HIDDEN})

    def judge(ctx):
        m = replicated_metrics(ctx, member(ctx))  # the cached member: trained once
        shown = skill_shown(m, ctx.cfg.gates.skill_alpha)
        return verdict(shown and not m["degenerate"],
                       f"the channel-{view} member: macro-F1 {m['macro_f1']:.3f} on "
                       f"{m['n']} scored windows, skill shown: {shown}",
                       metrics={**m, "skill_shown": shown})

    judge.__name__ = judge.__qualname__ = f"test_{name}"
    return gate(name, after="gate_0_env", produces=f"view{view}", producer=member,
                ensemble=True)(judge)


for _view in range(VIEWS):
    globals()[f"test_gate_8_view_{_view}"] = _declare(_view)
