"""The session's life: configure (one validated Config, the run id, report.json's hooks),
collection (gate tests checked against the registry and put in chain order), the helper
processes (plots, numba warm-up) and the end of the session."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from moola.config import ConfigError
from moola.gates import gc_freeze
from moola.plugin.keys import (CTX_KEY, DISK_FULL_KEY, EXPORT_ERRORS_KEY, JSON_REPORT_PATH_KEY,
                               PLOTS_KEY, RECORDS_KEY, WARMUP_KEY, WRITTEN_KEY, MoolaGateWarning,
                               gate_name)
from moola.plugin.options import info_only, resolve_config
from moola.plugin.records import JsonReportHooks

GATE_TIMEOUTS = {"smoke": 600, "standard": 3600, "full": 6 * 3600}  # seconds per gate test


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    from moola.gates.context import GateContext, new_run_id

    workerinput = getattr(config, "workerinput", None)
    run_id = workerinput["moola_run_id"] if workerinput else new_run_id()
    try:
        cfg = resolve_config(config)
        ctx = GateContext(cfg=cfg, run_id=run_id, root=Path(config.rootpath))
        ctx.check_paths()  # reports / cache outside the project: a usage error, nothing written
    except ConfigError as exc:
        raise pytest.UsageError(f"moola configuration: {exc}") from None
    config.stash[CTX_KEY] = ctx
    _serve_user_artifacts(config)
    if config.pluginmanager.hasplugin("xdist") and \
            not config.pluginmanager.hasplugin("moola-xdist-hooks"):
        config.pluginmanager.register(_XdistHooks(), "moola-xdist-hooks")
    config.stash[RECORDS_KEY] = []
    config.stash[WRITTEN_KEY] = set()
    if info_only(config):  # --co, --fixtures, --markers, --help, ...: look, touch nothing
        if getattr(config.option, "json_report_file", None) in (None, ".report.json"):
            config.option.json_report = False  # (its default path would be ./.report.json)
        config.addinivalue_line("markers", "gate(name): this test runs the named moola gate")
        return
    if cfg.run.torch_threads:
        import torch

        torch.set_num_threads(cfg.run.torch_threads)
    # pytest-json-report on by default, into the reports directory
    if hasattr(config.option, "json_report"):
        try:
            reports = ctx.reports
        except ConfigError as exc:
            raise pytest.UsageError(f"moola configuration: {exc}") from None
        config.option.json_report = True
        if config.option.json_report_file in (None, ".report.json"):
            config.option.json_report_file = str(reports / "report.json")
        config.option.json_report_indent = 1
        config.pluginmanager.register(JsonReportHooks(config), "moola-json-report-hooks")
    config.addinivalue_line("markers", "gate(name): this test runs the named moola gate")
    gc_freeze.session_configured()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    _close_plots(session.config)  # every figure is on disk before the session (and a sync) ends
    _correct_json_report_message(session.config)
    gc_freeze.session_finished()
    lost = session.config.stash.get(DISK_FULL_KEY, None) or \
        session.config.stash.get(EXPORT_ERRORS_KEY, None)
    if lost and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # outputs were lost: not a clean run



def _correct_json_report_message(config: pytest.Config) -> None:
    """pytest-json-report says "auto-save skipped" (at -v) once its own save is off: say where
    the report went instead. Its message is a plain attribute of the plugin object, set in its
    (tryfirst) sessionfinish."""
    path = config.stash.get(JSON_REPORT_PATH_KEY, None)
    plugin = getattr(config, "_json_report", None)
    if path and plugin is not None and hasattr(plugin, "_terminal_summary"):
        plugin._terminal_summary = f"report saved to: {path}"


def _close_plots(config: pytest.Config) -> None:
    plots = config.stash.get(PLOTS_KEY, None)
    if plots is not None:
        config.stash[PLOTS_KEY] = None
        plots.close()


LISTENER_KEY = pytest.StashKey["Any"]()


def _serve_user_artifacts(config: pytest.Config) -> None:
    """Each artifact declared from now on (a user's gate with produces=, or artifact(...) in a
    test module or conftest) gets its fixture at once: pytest's plugin manager hands a newly
    registered plugin's fixtures to every test collected after it."""
    from moola.gates.registry import REGISTRY
    from moola.plugin.fixtures import BUILTIN_FIXTURES, fixture_plugin

    def serve(spec) -> None:
        name = f"moola-artifact-{spec.name}"
        if spec.name in BUILTIN_FIXTURES or config.pluginmanager.has_plugin(name):
            return
        config.pluginmanager.register(fixture_plugin(spec), name)

    for spec in REGISTRY.artifacts().values():  # declared before this session configured
        serve(spec)
    REGISTRY.listeners.append(serve)
    config.stash[LISTENER_KEY] = serve


class _XdistHooks:
    """pytest-xdist's hooks, registered only where xdist is loaded (a module-level xdist hook
    makes pytest refuse the plugin under ``-p no:xdist``: "unknown hook")."""

    @staticmethod
    def pytest_configure_node(node) -> None:
        """xdist controller -> worker: every worker shares the controller's run id."""
        node.workerinput["moola_run_id"] = node.config.stash[CTX_KEY].run_id



def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Gate tests, wherever they were declared (built in or a user's): checked against the
    registry (and gates.skip against it), run in chain order, given the profile's timeout."""
    from moola.gates.registry import REGISTRY

    ctx = config.stash[CTX_KEY]
    limit = GATE_TIMEOUTS[ctx.cfg.run.profile]
    if REGISTRY.errors:  # users' gate declarations refused while their modules were imported
        raise pytest.UsageError("moola: " + "\n".join(REGISTRY.errors))
    chain = REGISTRY.chain()
    unknown = [g for g in ctx.cfg.gates.skip if g not in REGISTRY]
    if unknown:
        raise pytest.UsageError(
            f"moola configuration: gates.skip names {', '.join(map(repr, unknown))}, which is "
            f"not a declared gate; declared gates: {', '.join(chain)}")
    models = [*REGISTRY.producers(), "ensemble"]
    unknown = [n for n in ctx.cfg.gates.parsimony_order if n not in models]
    if unknown:
        raise pytest.UsageError(
            f"moola configuration: gates.parsimony_order names {', '.join(map(repr, unknown))}, "
            f"which no declared gate produces; the models: {', '.join(models)}")
    slots = [i for i, item in enumerate(items) if gate_name(item)]
    for i in slots:
        name = gate_name(items[i])
        if name not in REGISTRY:
            raise pytest.UsageError(
                f"{items[i].nodeid}: gate {name!r} is not declared; declare it with "
                f"@moola.gates.gate({name!r}, after=...) (docs/WRITE_YOUR_OWN_GATE.md) or use "
                f"one of: {', '.join(chain)}")
    # gate tests in chain order, in the positions gate tests held (other tests stay put)
    ordered = sorted((items[i] for i in slots), key=lambda it: chain.index(gate_name(it)))
    for i, item in zip(slots, ordered):
        items[i] = item
    # no pytest-dependency markers: the runner skips a gate whose needed gate did not pass, in
    # one wording, even when that gate ran on another xdist worker or was deselected
    for i in slots:
        item = items[i]
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))


def pytest_collection_finish(session: pytest.Session) -> None:
    """The selected gates (after -k / deselection) run their own work afresh; when there are
    any, the plot process starts now, so matplotlib loads while the first gate works."""
    ctx = session.config.stash[CTX_KEY]
    ctx.selected = {g for g in map(gate_name, session.items) if g}
    if ctx.selected and not info_only(session.config):
        from moola.report.plot_worker import PlotWorker

        session.config.stash[PLOTS_KEY] = PlotWorker.start(ctx.reports / "plots.log")
        if "gate_2_control_minirocket" in ctx.selected:
            session.config.stash[WARMUP_KEY] = _start_numba_warmup(ctx)


def _start_numba_warmup(ctx):
    """Compile MiniRocket's kernels in the background when numba's cache is cold (gate 2
    waits for it rather than compiling again). Needs the feature count from meta.json; without
    it, gate 2 compiles in-process as it always could. Returns the process, or None."""
    import json

    from moola import numba_warmup
    from moola.data.schema import META_FILE

    try:
        names = json.loads((ctx.data_dir / META_FILE).read_text(encoding="utf-8"))["feature_names"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # gate 0 reports a bad dataset; the warm-up is only an optimisation
    return numba_warmup.start(len(names)) if isinstance(names, list) and names else None


def pytest_unconfigure(config: pytest.Config) -> None:
    """One last --sync-cmd run once everything is written (controller or plain session)."""
    from moola.gates.registry import REGISTRY

    REGISTRY.forget_user_gates()  # the next session (same process?) declares its own
    listener = config.stash.get(LISTENER_KEY, None)
    if listener in REGISTRY.listeners:
        REGISTRY.listeners.remove(listener)
    ctx = config.stash.get(CTX_KEY, None)
    if ctx is not None:
        _close_plots(config)  # a session that ended before sessionfinish
        warmup = config.stash.get(WARMUP_KEY, None)
        if warmup is not None:
            from moola import numba_warmup

            numba_warmup.stop(warmup)
        gc_freeze.session_unconfigured()
    if ctx is None or not ctx.cfg.run.sync_cmd.strip() or hasattr(config, "workerinput"):
        return
    if not ctx.sync.close(timeout=120):
        warnings.warn(MoolaGateWarning("the final --sync-cmd run did not finish within 120 s; "
                                       f"see {ctx.reports / 'sync.log'}"))
