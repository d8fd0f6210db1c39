"""The gate registry: one declaration per gate, built-in or yours.

A gate is declared once, with :func:`gate`, on the function that judges it::

    @gate("gate_8_minority_recall", after="gate_4_finetune_enhanced")
    def test_gate_8_minority_recall(finetuned_model, dataset):
        ...
        return passed(recall >= 0.5, f"minority recall {recall:.2f}", metrics={...})

The declaration says what the gate needs (`after`: gates that must pass, else this one is
skipped), what else it reads without needing it to pass (`uses`: judged first, e.g. gate 2
compares the control with gate 1's baseline whatever gate 1 found), what it produces
(`produces`: the name of its model, which may then join gate 7's ensemble with
`ensemble=True`) and how it is judged (the function). The chain is a graph of these needs: a
failed or skipped gate skips only the gates that need it, and the others run. Everything else
derives from it: the chain's order, each gate's upstream, the ensemble's candidate members,
the decision's candidates. The built-in gates are declared the same way
(:mod:`moola.gates.builtin`).

Judges take their inputs by parameter name, the names of the artifact fixtures
(:data:`ARTIFACT_PARAMETERS`, also ``ctx`` for the whole :class:`GateContext`), and return a
:class:`~moola.gates.verdict.Verdict` (for instance from :func:`passed`); an ``assert`` that
fails inside a judge is a failed verdict with the assertion's message.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from moola.gates.verdict import Verdict

ENSEMBLE_GATE = "gate_7_ensemble"


@dataclass(frozen=True)
class GateSpec:
    """One gate: its name, what runs before it, what it produces and how it is judged."""

    name: str
    judge: Callable[..., Verdict]
    after: tuple[str, ...] = ()  # needed: a failed or skipped one skips this gate
    uses: tuple[str, ...] = ()  # read, judged first, but not needed to pass
    produces: str | None = None  # its model's name, when it trains one (an artifact fixture)
    producer: Callable[[Any], Any] | None = None  # ctx -> TrainedModel, for `produces`
    ensemble: bool = False  # its model may join gate 7's ensemble when the approval rule
    # (moola.approval) approves its verdict
    read_only: bool = False  # writes nothing (no status.json update), like gate 0
    summary: str = ""
    builtin: bool = False
    final: bool = False  # uses every other gate and runs after them (the decision)


class Registry:
    """Gate declarations in registration order, and the chain they make."""

    def __init__(self) -> None:
        self._specs: dict[str, GateSpec] = {}

    def add(self, spec: GateSpec) -> GateSpec:
        """Declare a gate. Re-declaring the same gate from the same function is a no-op (a
        test module imported twice); a different gate of the same name is an error."""
        old = self._specs.get(spec.name)
        if old is not None and _same_function(old.judge, spec.judge):
            del self._specs[spec.name]  # the same declaration imported again: the latest wins
            old = None
        if old is not None:
            raise ValueError(f"gate {spec.name!r} is declared twice ({_where(old.judge)} and "
                             f"{_where(spec.judge)}); give one of them another name")
        for up in spec.after + spec.uses:
            if up not in self._specs:
                raise ValueError(
                    f"gate {spec.name!r} ({_where(spec.judge)}) runs after {up!r}, which is not "
                    f"declared (yet); declared gates: {', '.join(self._specs)}")
        if spec.ensemble and not spec.produces:
            raise ValueError(f"gate {spec.name!r}: ensemble=True needs produces=NAME and a "
                             f"producer (the model that joins the ensemble)")
        self._specs[spec.name] = spec
        return spec

    def forget_user_gates(self) -> None:
        """Drop every gate not built in (at the end of a pytest session: the next session,
        perhaps in the same process, declares its own when it imports its test modules)."""
        self._specs = {n: s for n, s in self._specs.items() if s.builtin}

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def __getitem__(self, name: str) -> GateSpec:
        if name not in self._specs:
            raise KeyError(f"unknown gate {name!r}; declared gates: {', '.join(self.chain())}")
        return self._specs[name]

    def direct_upstream(self, name: str) -> tuple[str, ...]:
        """The gates `name` waits for: its `after` and `uses`, for gate 7 every ensemble
        candidate, and for a final gate every gate that is not final."""
        spec = self[name]
        ups = list(spec.after) + [u for u in spec.uses if u not in spec.after]
        if name == ENSEMBLE_GATE:
            ups += [s.name for s in self._specs.values() if s.ensemble and s.name not in ups]
        if spec.final:
            ups += [s.name for s in self._specs.values() if not s.final and s.name not in ups]
        return tuple(ups)

    def needs(self, name: str) -> tuple[str, ...]:
        """Every gate that must pass before `name` runs (its `after`, transitively), in chain
        order: a failed or skipped one skips `name`."""
        seen: set[str] = set()
        todo = list(self[name].after)
        while todo:
            up = todo.pop()
            if up not in seen:
                seen.add(up)
                todo += self[up].after
        return tuple(g for g in self.chain() if g in seen)

    def chain(self) -> tuple[str, ...]:
        """Every gate in run order: each after its upstream, ties in declaration order."""
        order: list[str] = []
        pending = list(self._specs)
        while pending:
            for name in pending:
                if all(up in order for up in self.direct_upstream(name)):
                    order.append(name)
                    pending.remove(name)
                    break
            else:  # cannot happen with `after` checked at add(); ensemble edges could cycle
                raise ValueError(f"the gates {pending} wait for each other")
        return tuple(order)

    def upstream(self, name: str) -> tuple[str, ...]:
        """Every gate judged before `name` (needed or used, transitively), in chain order."""
        seen: set[str] = set()
        todo = list(self.direct_upstream(name))
        while todo:
            up = todo.pop()
            if up not in seen:
                seen.add(up)
                todo += self.direct_upstream(up)
        return tuple(g for g in self.chain() if g in seen)

    def ensemble_candidates(self) -> dict[str, GateSpec]:
        """{model name: gate} of every gate whose model may join the ensemble."""
        return {s.produces: s for s in self._specs.values() if s.ensemble and s.produces}

    def producers(self) -> dict[str, GateSpec]:
        """{model name: gate} of every gate that produces a model."""
        return {s.produces: s for s in self._specs.values() if s.produces}


REGISTRY = Registry()

# parameter name -> (ctx -> value): what a judge (and a fixture of the same name) receives
ARTIFACT_PARAMETERS: dict[str, Callable[[Any], Any]] = {}


def _artifact_parameters() -> dict[str, Callable[[Any], Any]]:
    if not ARTIFACT_PARAMETERS:
        from moola.gates import artifacts

        ARTIFACT_PARAMETERS.update({
            "ctx": lambda ctx: ctx,
            "moola_config": lambda ctx: ctx.cfg,
            "dataset": artifacts.dataset,
            "encoder": artifacts.encoder,
            "baseline_model": artifacts.baseline,
            "control_model": artifacts.control,
            "finetuned_model": artifacts.finetuned,
            "augmented_model": artifacts.augmented,
            "simple_model": artifacts.simple,
        })
    return ARTIFACT_PARAMETERS


def parameter_value(ctx, name: str) -> Any:
    """The value of a judge parameter: an artifact, a user gate's model (`<produces>_model`),
    or ``ctx``."""
    params = _artifact_parameters()
    if name in params:
        return params[name](ctx)
    for model, spec in REGISTRY.producers().items():
        if name == f"{model}_model" and spec.producer is not None:
            return spec.producer(ctx)
    raise TypeError(f"no artifact named {name!r}; a judge's parameters are artifact names: "
                    f"{', '.join(sorted(params))} (and <model>_model of gates declared with "
                    f"produces=)")


def gate(name: str, *, after: str | tuple[str, ...] | list[str] = (),
         uses: str | tuple[str, ...] | list[str] = (), produces: str | None = None,
         producer: Callable[[Any], Any] | None = None, ensemble: bool = False,
         summary: str = "", read_only: bool = False, final: bool = False,
         _builtin: bool = False):
    """Declare a gate judged by the decorated function (see the module docstring).

    In a test module, the decorated name becomes a pytest test (marked with the gate) that
    asserts the verdict passed; elsewhere (moola's built-in gates) the function is returned
    unchanged. `after`: the gate(s) that must pass first (default: none; a user gate normally
    names one); a failed or skipped one skips this gate. `uses`: gates judged first whose
    verdicts or artifacts this one reads without needing them to pass. `produces` + `producer(ctx) -> TrainedModel` (e.g.
    :func:`moola.gates.artifacts.train_model`): the gate's model, available to later judges as
    the parameter ``<produces>_model``; `ensemble=True` lets it join gate 7's ensemble.
    """
    ups = (after,) if isinstance(after, str) else tuple(after)
    used = (uses,) if isinstance(uses, str) else tuple(uses)

    def declare(fn: Callable[..., Verdict]):
        if not _builtin:  # a user gate names built-in ones in `after`: declare those first
            import moola.gates.builtin  # noqa: F401
        REGISTRY.add(GateSpec(name=name, judge=fn, after=ups, uses=used, produces=produces,
                              producer=producer, ensemble=ensemble, read_only=read_only,
                              summary=summary or (inspect.getdoc(fn) or "").split("\n")[0],
                              builtin=_builtin, final=final))
        return fn if _builtin else _as_test(name, fn)

    return declare


def _as_test(name: str, fn: Callable[..., Verdict]):
    """The pytest test of a user gate: runs the gate through the chain, asserts it passed."""
    import pytest

    @functools.wraps(fn)
    def test(gate):  # the plugin's `gate` fixture: the verdict, upstream judged first
        assert gate.passed, gate.reason

    test.__signature__ = inspect.Signature(  # pytest must see `gate`, not the judge's params
        [inspect.Parameter("gate", inspect.Parameter.POSITIONAL_OR_KEYWORD)])
    test.__wrapped_judge__ = fn
    del test.__wrapped__  # pytest follows __wrapped__ to find fixtures: hide the judge's
    return pytest.mark.gate(name)(test)


def call_judge(ctx, spec: GateSpec, upstream: Mapping[str, Verdict]) -> Verdict:
    """Run `spec`'s judge with its parameters resolved; fill in the gate name."""
    sig = inspect.signature(spec.judge)
    kwargs = {}
    for p in sig.parameters.values():
        if p.name == "upstream":
            kwargs[p.name] = upstream
        else:
            kwargs[p.name] = parameter_value(ctx, p.name)
    try:
        v = spec.judge(**kwargs)
    except AssertionError as exc:  # a user's assert: a failed verdict that says why
        return Verdict(gate=spec.name, status="failed",
                       reason=str(exc) or f"an assertion in {_where(spec.judge)} failed",
                       config=ctx.cfg.to_dict())
    if not isinstance(v, Verdict):
        raise TypeError(f"gate {spec.name!r} ({_where(spec.judge)}) returned "
                        f"{type(v).__name__}; a judge returns a Verdict (see "
                        f"moola.gates.registry.passed)")
    v.gate = spec.name
    if not v.config:
        v.config = ctx.cfg.to_dict()
    return v


def passed(ok: bool, reason: str, *, metrics: Mapping[str, Any] | None = None,
           model: str | None = None, key_metric: Mapping[str, Any] | None = None,
           status: str | None = None) -> Verdict:
    """A verdict for a judge to return: passed when `ok`, failed otherwise (or `status`)."""
    return Verdict(gate="", status=status or ("passed" if ok else "failed"), reason=reason,
                   model=model, metrics=dict(metrics or {}),
                   key_metric=dict(key_metric) if key_metric else None)


def _same_function(a: Callable, b: Callable) -> bool:
    return (getattr(a, "__module__", None), getattr(a, "__qualname__", None)) == \
        (getattr(b, "__module__", None), getattr(b, "__qualname__", None))


def _where(fn: Callable) -> str:
    try:
        return f"{inspect.getsourcefile(fn)}:{inspect.getsourcelines(fn)[1]}"
    except (OSError, TypeError):
        return getattr(fn, "__qualname__", repr(fn))
