"""The fixtures: one per declared artifact (moola.gates.registry: the same declaration gives
the judge parameter), ``moola_ctx``, and ``gate``, which runs this test's gate through the
runner.

The built-in artifacts' fixtures are made when the plugin loads; an artifact a user declares
while pytest collects (``produces="tiny"`` gives ``tiny_model``) gets its fixture at once
(:func:`fixture_plugin`, registered with pytest's plugin manager, whose fixtures are global).
"""

from __future__ import annotations

import types
import warnings

import pytest

import moola.gates  # noqa: F401  (declares the built-in gates and artifacts)
from moola.gates.registry import REGISTRY, ArtifactSpec
from moola.plugin.keys import CTX_KEY, VERDICT_KEY, MoolaGateWarning, gate_name
from moola.plugin.outputs import export_model, write_plots


@pytest.fixture(scope="session")
def moola_ctx(pytestconfig: pytest.Config):
    """The session's GateContext (config, data, cache, run id); the artifact ``ctx`` too."""
    return pytestconfig.stash[CTX_KEY]


def artifact_fixture(spec: ArtifactSpec):
    """The session fixture of an artifact: judges the gate that produces it first (and skips,
    with that gate's reason, when it did not pass), then hands out ``spec.get(ctx)``."""

    def fixture(request: pytest.FixtureRequest):
        from moola.gates.runner import judge, skip_reason

        ctx = request.config.stash[CTX_KEY]
        if spec.gate is not None:
            v = judge(ctx, spec.gate)
            if not v.passed:
                pytest.skip(skip_reason(v))
        return spec.get(ctx)

    fixture.__name__ = spec.name
    fixture.__doc__ = (spec.doc + (f" Produced by {spec.gate}." if spec.gate else "")
                       + (f" Cached as '{spec.kind}' (run.cache/{spec.kind}/)." if spec.kind else ""))
    return pytest.fixture(scope="session", name=spec.name)(fixture)


def fixture_plugin(spec: ArtifactSpec) -> types.ModuleType:
    """A plugin object holding the fixture of `spec` (for pluginmanager.register)."""
    holder = types.ModuleType(f"moola_artifact_{spec.name}")
    setattr(holder, spec.name, artifact_fixture(spec))
    return holder


# the built-in artifacts' fixtures: attributes of this module, which moola.plugin re-exports
BUILTIN_FIXTURES = {name: artifact_fixture(spec) for name, spec in REGISTRY.artifacts().items()
                    if spec.builtin}
globals().update(BUILTIN_FIXTURES)


@pytest.fixture
def gate(request: pytest.FixtureRequest, moola_ctx):
    """Run this test's gate (named by its ``@pytest.mark.gate(NAME)`` marker) -> Verdict.

    Skips with the upstream verdict's reason when an upstream gate did not pass.
    """
    from moola.gates.runner import judge

    name = gate_name(request.node)
    if name is None:
        raise pytest.UsageError(f"{request.node.nodeid}: the 'gate' fixture needs "
                                f"@pytest.mark.gate('<gate name>')")
    verdict = judge(moola_ctx, name)
    export_model(request.config, moola_ctx, verdict)
    request.node.stash[VERDICT_KEY] = verdict
    # travels with the test's report (xdist too): pytest's footer counts it by status
    request.node.user_properties.append(("moola_status", verdict.status))
    if verdict.artifacts.get("disk_full"):  # the gates after it would only hit the same wall
        request.session.shouldstop = verdict.reason
    write_plots(request.config, moola_ctx, verdict)
    if verdict.status == "skipped":
        pytest.skip(verdict.reason)
    if verdict.status in ("warning", "inconclusive"):
        warnings.warn(MoolaGateWarning(f"{name}: {verdict.reason}"))
    return verdict
