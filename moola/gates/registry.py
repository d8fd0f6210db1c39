"""The gate registry: one declaration per gate and one per artifact, built-in or yours.

A gate is declared once, with :func:`gate`, on the function that judges it::

    @gate("gate_8_minority_recall", after="gate_4_finetune_enhanced")
    def test_gate_8_minority_recall(finetuned_model, dataset):
        ...
        return verdict(recall >= 0.5, f"minority recall {recall:.2f}", metrics={...})

The declaration says what the gate needs (`after`: gates that must pass, else this one is
skipped), what else it reads without needing it to pass (`uses`: judged first, e.g. gate 2
compares the control with gate 1's baseline whatever gate 1 found), what it produces
(`produces`: the name of its model, which may then join the ensemble with `ensemble=True`)
and how it is judged (the function). The chain is a graph of these needs: a failed or
skipped gate skips only the gates that need it, and the others run. The chain's order, each
gate's upstream, the ensemble's candidate members and the decision's candidates derive from
it. The built-in gates (:mod:`moola.gates.builtin`) are declared the same way.

An artifact is declared once too (:func:`artifact`, or `produces=NAME`, which declares
``NAME_model``): its name is both the pytest fixture (moola.plugin makes one per artifact) and
the judge parameter, and the declaration names the gate that produces it (judged first) and
its cache kind. A judge's parameters are checked when the gate is declared: each must be a
declared artifact (or ``upstream``: the verdicts of the gates judged before it) whose
producing gate is this gate or one it needs (`after`, transitively).
"""

from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from moola.verdict import Verdict

UPSTREAM = "upstream"  # the judge parameter that receives the verdicts judged before it


class DeclarationError(ValueError):
    """A gate or artifact declared wrongly (names the file and line, and the fix)."""


@dataclass(frozen=True)
class GateSpec:
    """One gate: its name, what runs before it, what it produces and how it is judged."""

    name: str
    judge: Callable[..., Verdict]
    after: tuple[str, ...] = ()  # needed: a failed or skipped one skips this gate
    uses: tuple[str, ...] = ()  # read, judged first, but not needed to pass
    produces: str | None = None  # its model's name, when it trains one (artifact <name>_model)
    producer: Callable[[Any], Any] | None = None  # ctx -> TrainedModel, for `produces`
    ensemble: bool = False  # its model may join the ensemble when the approval rule
    # (moola.approval) approves its verdict
    ensembles: bool = False  # it builds the ensemble: judged after every ensemble candidate
    read_only: bool = False  # writes nothing (no status.json update), like gate 0
    builtin: bool = False
    final: bool = False  # uses every other gate and runs after them (the decision)


@dataclass(frozen=True)
class ArtifactSpec:
    """One artifact: the pytest fixture and the judge parameter of this name.

    `get(ctx)` returns it (built in the content-keyed cache when missing); `gate` is the gate
    that produces it, judged first (None: the session's own, like ``ctx``); `kind` is its cache
    kind (moola.cache: dataset, classifier, encoder, ensemble; None when it is not cached)."""

    name: str
    get: Callable[[Any], Any]
    gate: str | None = None
    kind: str | None = None
    doc: str = ""
    builtin: bool = False


class Registry:
    """Gate and artifact declarations in registration order, and the chain they make."""

    def __init__(self) -> None:
        self._specs: dict[str, GateSpec] = {}
        self._artifacts: dict[str, ArtifactSpec] = {}
        self.errors: list[str] = []  # users' declarations refused (a usage error at collection)
        self.listeners: list[Callable[[ArtifactSpec], None]] = []  # told of each new artifact

    # ----------------------------------------------------------------------- declaring
    def add(self, spec: GateSpec) -> GateSpec:
        """Declare a gate. Re-declaring the same gate from the same function is a no-op (a
        test module imported twice); a different gate of the same name is an error."""
        old = self._specs.get(spec.name)
        if old is not None and _same_function(old.judge, spec.judge):
            del self._specs[spec.name]  # the same declaration imported again: the latest wins
            old = None
        where = _where(spec.judge)
        if old is not None:
            raise DeclarationError(f"gate {spec.name!r} is declared twice ({_where(old.judge)} "
                                   f"and {where}); give one of them another name")
        for up in spec.after + spec.uses:
            if up not in self._specs:
                raise DeclarationError(
                    f"{where}: gate {spec.name!r} runs after {up!r}, which is not declared "
                    f"(yet); declared gates: {', '.join(self._specs)}")
        if spec.produces and spec.producer is None:
            raise DeclarationError(f"{where}: gate {spec.name!r}: produces={spec.produces!r} "
                                   f"needs producer=(ctx -> TrainedModel), e.g. "
                                   f"moola.gates.artifacts.train_model")
        if spec.ensemble and not spec.produces:
            raise DeclarationError(f"{where}: gate {spec.name!r}: ensemble=True needs "
                                   f"produces=NAME and a producer (the model that joins the "
                                   f"ensemble)")
        model = None
        if spec.produces:
            said = (inspect.getdoc(spec.producer) or "").split("\n")[0]
            model = ArtifactSpec(f"{spec.produces}_model", spec.producer, gate=spec.name,
                                 kind=spec.produces, builtin=spec.builtin,
                                 doc=f"{said or spec.name + ' model ' + repr(spec.produces)} "
                                     f"(moola.gates.artifacts.TrainedModel: out-of-fold "
                                     f"predictions, replicas, load_models()).")
            self._check_artifact(model, where)
        self._check_parameters(spec, where, model)
        self._specs[spec.name] = spec
        if model is not None:
            self._add_artifact(model)
        return spec

    def add_artifact(self, spec: ArtifactSpec, where: str = "") -> ArtifactSpec:
        """Declare an artifact (see :func:`artifact`)."""
        self._check_artifact(spec, where)
        self._add_artifact(spec)
        return spec

    def _add_artifact(self, spec: ArtifactSpec) -> None:
        self._artifacts[spec.name] = spec
        for tell in list(self.listeners):
            tell(spec)

    def _check_artifact(self, spec: ArtifactSpec, where: str) -> None:
        old = self._artifacts.get(spec.name)
        # the same declaration imported again (a test module imported twice) replaces itself
        if old is not None and not (old.gate == spec.gate and _same_function(old.get, spec.get)):
            raise DeclarationError(
                f"{where}: artifact {spec.name!r} is already declared (produced by "
                f"{old.gate or 'the session'}); give yours another name")
        if spec.name == UPSTREAM:
            raise DeclarationError(f"{where}: {UPSTREAM!r} is reserved (the verdicts judged "
                                   f"before a gate)")

    def _check_parameters(self, spec: GateSpec, where: str,
                          own: ArtifactSpec | None = None) -> None:
        """Each judge parameter is a declared artifact whose producing gate is this gate or one
        it needs (its `after`, transitively): a gate it only `uses` may have failed or been
        left out, and the judge would build an artifact no verdict vouched for."""
        needed = self._needed(spec.after)
        for p in inspect.signature(spec.judge).parameters.values():
            if p.name == UPSTREAM:
                continue
            art = own if own is not None and own.name == p.name else self._artifacts.get(p.name)
            if art is None:
                raise DeclarationError(
                    f"{where}: gate {spec.name!r} takes a parameter {p.name!r}, which is no "
                    f"declared artifact; the artifacts: {', '.join(self._artifacts)}, "
                    f"{UPSTREAM} (and <model>_model of a gate declared with produces=); "
                    f"declare your own with moola.gates.artifact(...)")
            if art.gate is not None and art.gate != spec.name and art.gate not in self._specs:
                raise DeclarationError(
                    f"{where}: gate {spec.name!r} takes {p.name!r}, whose producing gate "
                    f"{art.gate!r} is not declared; declared gates: {', '.join(self._specs)}")
            if art.gate is not None and art.gate != spec.name and art.gate not in needed:
                raise DeclarationError(
                    f"{where}: gate {spec.name!r} takes {p.name!r}, which {art.gate} produces, "
                    f"but {spec.name!r} does not need {art.gate}; add after={art.gate!r} to its "
                    f"declaration (a gate it only uses may fail or be left out: read such an "
                    f"artifact in the judge from ctx, as gate 2 reads gate 1's baseline)")

    def forget_user_gates(self) -> None:
        """Drop every gate and artifact not built in (at the end of a pytest session: the next
        session, perhaps in the same process, declares its own when it imports its modules)."""
        self._specs = {n: s for n, s in self._specs.items() if s.builtin}
        self._artifacts = {n: a for n, a in self._artifacts.items() if a.builtin}
        self.errors = []

    # ------------------------------------------------------------------------- reading
    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def __getitem__(self, name: str) -> GateSpec:
        if name not in self._specs:
            raise KeyError(f"unknown gate {name!r}; declared gates: {', '.join(self.chain())}")
        return self._specs[name]

    def artifacts(self) -> dict[str, ArtifactSpec]:
        """{name: declaration} of every artifact, in declaration order."""
        return dict(self._artifacts)

    def artifact(self, name: str) -> ArtifactSpec:
        if name not in self._artifacts:
            raise KeyError(f"no artifact named {name!r}; the artifacts: "
                           f"{', '.join(self._artifacts)}")
        return self._artifacts[name]

    def _direct(self, spec: GateSpec) -> tuple[str, ...]:
        ups = list(spec.after) + [u for u in spec.uses if u not in spec.after]
        if spec.ensembles:
            ups += [s.name for s in self._specs.values()
                    if s.ensemble and s.name not in ups and s.name != spec.name]
        if spec.final:
            ups += [s.name for s in self._specs.values()
                    if not s.final and s.name not in ups and s.name != spec.name]
        return tuple(ups)

    def direct_upstream(self, name: str) -> tuple[str, ...]:
        """The gates `name` waits for: its `after` and `uses`, for the gate that builds the
        ensemble every ensemble candidate, and for a final gate every gate that is not final."""
        return self._direct(self[name])

    def _upstream_of(self, spec: GateSpec) -> set[str]:
        seen: set[str] = set()
        todo = list(self._direct(spec))
        while todo:
            up = todo.pop()
            if up not in seen and up in self._specs:
                seen.add(up)
                todo += self._direct(self._specs[up])
        return seen

    def needs(self, name: str) -> tuple[str, ...]:
        """Every gate that must pass before `name` runs (its `after`, transitively), in chain
        order: a failed or skipped one skips `name`."""
        seen = self._needed(self[name].after)
        return tuple(g for g in self.chain() if g in seen)

    def _needed(self, after: tuple[str, ...]) -> set[str]:
        """`after` and the gates they need, transitively (declared gates only)."""
        seen: set[str] = set()
        todo = list(after)
        while todo:
            up = todo.pop()
            if up not in seen and up in self._specs:
                seen.add(up)
                todo += self._specs[up].after
        return seen

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
        seen = self._upstream_of(self[name])
        return tuple(g for g in self.chain() if g in seen)

    def ensemble_candidates(self) -> dict[str, GateSpec]:
        """{model name: gate} of every gate whose model may join the ensemble."""
        return {s.produces: s for s in self._specs.values() if s.ensemble and s.produces}

    def ensemble_gate(self) -> GateSpec | None:
        """The gate that builds the ensemble (declared with ensembles=True), if any."""
        return next((s for s in self._specs.values() if s.ensembles), None)

    def producers(self) -> dict[str, GateSpec]:
        """{model name: gate} of every gate that produces a model."""
        return {s.produces: s for s in self._specs.values() if s.produces}


REGISTRY = Registry()

# the modules whose declarations are moola's own (kept across sessions, not made into tests)
BUILTIN_MODULES = ("moola.gates.builtin", "moola.gates.decision_gate")


def _builtin(fn: Callable) -> bool:
    return getattr(fn, "__module__", None) in BUILTIN_MODULES


def artifact(name: str, get: Callable[[Any], Any], *, gate: str | None = None,
             kind: str | None = None, doc: str = "") -> ArtifactSpec:
    """Declare an artifact: `get(ctx)` returns it; `gate` produces it (judged first when a
    fixture or a judge asks for it; None: the session's own); `kind`: its cache kind. The one
    declaration gives the pytest fixture and the judge parameter of this name."""
    declaring = sys._getframe(1).f_globals.get("__name__")
    spec = ArtifactSpec(name=name, get=get, gate=gate, kind=kind,
                        doc=doc or (inspect.getdoc(get) or "").split("\n")[0],
                        builtin=declaring in BUILTIN_MODULES)
    return REGISTRY.add_artifact(spec, _caller())


def gate(name: str, *, after: str | tuple[str, ...] | list[str] = (),
         uses: str | tuple[str, ...] | list[str] = (), produces: str | None = None,
         producer: Callable[[Any], Any] | None = None, ensemble: bool = False,
         ensembles: bool = False, read_only: bool = False, final: bool = False):
    """Declare a gate judged by the decorated function (see the module docstring).

    In a test module, the decorated name becomes a pytest test (marked with the gate) that
    asserts the verdict passed; in moola's own modules the function is returned unchanged.
    `after`: the gate(s) that must pass first (a user gate normally names one); a failed or
    skipped one skips this gate. `uses`: gates judged first whose verdicts or artifacts this
    one reads without needing them to pass. `produces` + `producer(ctx) -> TrainedModel`
    (e.g. :func:`moola.gates.artifacts.train_model`): the gate's model, the artifact
    ``<produces>_model``; `ensemble=True` lets it join the ensemble. A user's declaration that
    is refused is a usage error of the pytest session (moola.plugin), naming file and line.
    """
    ups = (after,) if isinstance(after, str) else tuple(after)
    used = (uses,) if isinstance(uses, str) else tuple(uses)

    def declare(fn: Callable[..., Verdict]):
        builtin = _builtin(fn)
        spec = GateSpec(name=name, judge=fn, after=ups, uses=used, produces=produces,
                        producer=producer, ensemble=ensemble, ensembles=ensembles,
                        read_only=read_only, builtin=builtin, final=final)
        if builtin:
            REGISTRY.add(spec)
            return fn
        try:
            REGISTRY.add(spec)
        except DeclarationError as exc:
            REGISTRY.errors.append(str(exc))
        return _as_test(name, fn)

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
    """Run `spec`'s judge with its parameters resolved (declared artifacts, built when
    missing; ``upstream``: the verdicts judged before it); fill in the gate name."""
    kwargs = {}
    for p in inspect.signature(spec.judge).parameters.values():
        kwargs[p.name] = upstream if p.name == UPSTREAM else REGISTRY.artifact(p.name).get(ctx)
    try:
        v = spec.judge(**kwargs)
    except AssertionError as exc:  # a user's assert: a failed verdict that says why
        return Verdict(gate=spec.name, status="failed",
                       reason=str(exc) or f"an assertion in {_where(spec.judge)} failed",
                       config=ctx.cfg.to_dict())
    if not isinstance(v, Verdict):
        raise TypeError(f"gate {spec.name!r} ({_where(spec.judge)}) returned "
                        f"{type(v).__name__}; a judge returns a Verdict (see "
                        f"moola.gates.verdict)")
    v.gate = spec.name
    if not v.config:
        v.config = ctx.cfg.to_dict()
    return v


def verdict(ok: bool, reason: str, *, metrics: Mapping[str, Any] | None = None,
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


def _caller() -> str:
    """file:line of the declaration that called artifact()."""
    frame = sys._getframe(2)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"
