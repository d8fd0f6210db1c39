"""The pytest plugin that turns ``gates_tests/`` into moola's gated workflow.

Registered by the project's ``conftest.py``. It

* adds the ``moola`` option group (execution knobs named as in PyTorch Lightning) with ini
  equivalents ``moola_<name>``; precedence is command line > ini > --gates-config > profile;
* builds one validated :class:`~moola.config.Config` and shows it in the report header;
* provides the ``gate`` fixture that runs a gate through :mod:`moola.gates.runner` (upstream
  verdicts from the cache; a failed upstream skips the gate with its reason);
* attaches every verdict to the pytest-json-report entry of its test (``metadata.verdict``);
  in the controller process, appends each gate's results-log record as soon as its test is
  over (once per gate per session), refreshes report.json, and prints the summary table;
* leaves pytest's information commands (``--co``, ``--fixtures``, ``--help``, ...) alone: they
  train nothing, start no helper process and write nothing under ``reports/``;
* turns a full disk met while writing outputs into a clear message and a non-zero exit;
* after each gate's verdict, exports the gate's model when the approval rule approves it
  (:mod:`moola.approval`, :mod:`moola.export.exporter`: ``reports/runs/<run_id>/models/<name>/``,
  named in the gate's record under ``artifacts.model_export``);
* makes the decision (:mod:`moola.gates.decision_gate`) at the end of a session that judged
  gates but not the decision (``-x`` stopped it, or ``-k`` left it out), from the gates it
  recorded and without training, and puts it under report.json's top-level ``"decision"``;
* counts gates that passed on an inconclusive or warning verdict apart in pytest's footer.

Mid-run, the records come from pytest-json-report's per-test entries (its ``_json_tests``, the
same entries its final report lists), so a record written early equals the one the end of the
session would have derived.
"""

from __future__ import annotations

import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from moola.config import (CHOICES, PROFILES, SECTIONS, ConfigError, apply_overrides,
                          load_config, parse_dotted)
from moola.gates import gc_freeze

# (option name, config key, metavar, help). The type, the choices and the default of each come
# from moola.config, so --help and the ini types cannot drift from the schema.
KNOBS = [
    ("accelerator", "run.accelerator", None, "device to train on; auto: CUDA, else MPS, else CPU"),
    ("deterministic", "run.deterministic", None, "deterministic algorithms (slower)"),
    ("seed", "run.seed", "N", "base seed; replicas train at N, N + 1000, ..."),
    ("fold", "run.fold", "N", "split file splits/fold_<N>.json: its train + val rows are "
                              "folded, its test rows held out"),
    ("max-epochs", "train.max_epochs", "N", "epochs of the shared supervised recipe"),
    ("batch-size", "train.batch_size", "N", "batch size of the shared supervised recipe"),
    ("num-workers", "run.num_workers", "N", "DataLoader workers"),
    ("torch-threads", "run.torch_threads", "N", "torch intra-op threads (0 = torch's default)"),
    ("early-stop-patience", "train.early_stop_patience", "EPOCHS",
     "epochs without improvement before early stopping"),
    ("checkpoint-save-top-k", "train.checkpoint_save_top_k", "K", "best checkpoints kept"),
    ("logger", "run.logger", None, "metrics.csv in Lightning's CSVLogger layout, or none"),
    ("log-every-n-steps", "run.log_every_n_steps", "N", "fast tier: status.json every N steps"),
    ("eval-every-n-steps", "run.eval_every_n_steps", "N", "full tier: evaluation every N steps "
                                                          "(0 = each epoch)"),
    ("eval-timeout", "run.eval_timeout", "SECONDS", "time before an evaluation is abandoned"),
    ("data", "run.data", "DIR", "dataset directory"),
    ("reports", "run.reports", "DIR", "output directory"),
    ("sync-cmd", "run.sync_cmd", "CMD", "command run in the background after checkpoints/evals"),
    ("rebuild", "run.rebuild", None, "ignore cached artifacts and rebuild them"),
    ("export-models", "run.export_models", None,
     "refit and export each approved model to reports/runs/<run_id>/models/"),
]
INI_TYPES = {"str": "string", "bool": "bool", "int": "int", "float": "float"}


def _schema_type(key: str) -> str:
    """'int', 'float', 'bool' or 'str': the type of a config key in moola.config's schema."""
    section, name = key.split(".")
    typ = {f.name: f.type for f in fields(SECTIONS[section])}[name]
    return typ if isinstance(typ, str) else typ.__name__


def _defaults_text(key: str, profiles: dict) -> str:
    """'default 17', or 'default 40; smoke 25, full 60' where the `profiles` ({name: Config})
    differ."""
    section, name = key.split(".")
    values = {p: getattr(getattr(cfg, section), name) for p, cfg in profiles.items()}

    def show(v: object) -> str:
        if isinstance(v, bool):
            return "on" if v else "off"
        return "none" if v == "" else str(v)

    default = values.pop("standard")  # the profile when none is given
    others = ", ".join(f"{p} {show(v)}" for p, v in values.items() if v != default)
    return f"default {show(default)}" + (f"; {others}" if others else "")


def _metavar(key: str, metavar: str | None) -> str | None:
    """{a,b,c} for a key with a fixed set of values, else `metavar`."""
    choices = CHOICES.get(key)
    return "{" + ",".join(choices) + "}" if choices else metavar


CTX_KEY = pytest.StashKey["Any"]()
RECORDS_KEY = pytest.StashKey["list"]()
PLOTS_KEY = pytest.StashKey["Any"]()  # the session's PlotWorker, or None
JSON_REPORT_PATH_KEY = pytest.StashKey[str]()  # where report.json was written atomically
WARMUP_KEY = pytest.StashKey["Any"]()  # the numba warm-up process this session started, or None
WRITTEN_KEY = pytest.StashKey[set]()  # gates whose record this session appended to the log
SESSION_KEY = pytest.StashKey["Any"]()  # the running session (to stop it on a full disk)
DISK_FULL_KEY = pytest.StashKey[list]()  # DiskFullErrors met writing records / report.json
NO_DECISION_KEY = pytest.StashKey["Any"]()  # a session-end decision without candidates
EXPORT_ERRORS_KEY = pytest.StashKey[list]()  # controller: records whose model export failed
# pytest's information commands: they show something and must not train, start helper
# processes or write under reports/ (option dests of --co, --fixtures, --fixtures-per-test,
# --markers, --cache-show, --help, --version)
DECISION = "decision"  # the chain's last gate (moola.gates.decision_gate)


def decision_summary(record: dict[str, Any]) -> dict[str, Any]:
    """report.json's top-level "decision": the recommended model (a name or null), why, and
    the evidence (the decision record's metrics)."""
    m = record.get("metrics") or {}
    export = (record.get("artifacts") or {}).get("model_export") or {}
    return {"recommended": m.get("recommended"), "reason": record.get("reason"),
            "status": record.get("status"), "expected": m.get("expected"),
            "indistinguishable": m.get("indistinguishable"), "steps": m.get("steps"),
            "candidates": m.get("candidates"), "model_path": export.get("path"),
            "run_id": record.get("run_id")}


INFO_OPTIONS = ("collectonly", "showfixtures", "show_fixtures_per_test", "markers", "cacheshow",
                "help", "version")
GATE_TIMEOUTS = {"smoke": 600, "standard": 3600, "full": 6 * 3600}  # seconds per gate test


class MoolaGateWarning(UserWarning):
    """A gate passed with a warning (the chain continues)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("moola", "moola gated workflow")
    group.addoption("--profile", dest="moola_profile", default=None,
                    metavar="{smoke,standard,full,auto}",
                    help="model sizes, epochs and data of a run; auto: full on CUDA, standard "
                         "otherwise (default: ini moola_profile, else standard)")
    group.addoption("--gates-config", dest="moola_gates_config", default=None, metavar="FILE",
                    help="TOML or JSON file of thresholds and settings ([gates], [train], ...; "
                         "every key: examples/gates.toml)")
    parser.addini("moola_profile", "default profile: smoke, standard, full or auto",
                  type="string", default="standard")
    parser.addini("moola_gates_config", "default --gates-config file", type="string", default="")
    profiles = {p: load_config(p) for p in PROFILES}
    for name, key, metavar, help_ in KNOBS:
        dest = "moola_" + name.replace("-", "_")
        typ = _schema_type(key)
        help_ = f"{help_} ({_defaults_text(key, profiles)})"
        if typ == "bool":
            group.addoption(f"--{name}", dest=dest, action="store_const", const="true",
                            default=None, help=help_)
        else:
            group.addoption(f"--{name}", dest=dest, default=None,
                            metavar=_metavar(key, metavar), help=help_)
        # default None: an unset ini key must not override --gates-config or the profile
        parser.addini(dest, f"{key}: {help_}", type=INI_TYPES[typ], default=None)


def resolve_config(config: pytest.Config):
    """Config from profile, --gates-config, ini and command line (later wins)."""
    profile = config.getoption("moola_profile") or config.getini("moola_profile") or "standard"
    if profile == "auto":
        import torch

        profile = "full" if torch.cuda.is_available() else "standard"
    cfg_file = config.getoption("moola_gates_config") or config.getini("moola_gates_config")
    cfg = load_config(profile, cfg_file or None)
    ini, cli = {}, {}
    for name, key, _metavar, _help in KNOBS:
        dest = "moola_" + name.replace("-", "_")
        try:
            value = config.getini(dest)
        except pytest.UsageError as exc:  # pytest's message does not name the key
            raise ConfigError(f"ini (moola_*): '{key}' ({dest}): {exc}") from None
        if value not in (None, ""):
            ini[key] = value
        if config.getoption(dest) is not None:
            cli[key] = config.getoption(dest)
    cfg = apply_overrides(cfg, parse_dotted(ini), source="ini (moola_*)")
    return apply_overrides(cfg, parse_dotted(cli), source="command line")


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
        config.pluginmanager.register(_JsonReportHooks(config), "moola-json-report-hooks")
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


def info_only(config: pytest.Config) -> bool:
    """True for collection-only and information commands (see INFO_OPTIONS)."""
    return any(getattr(config.option, name, False) for name in INFO_OPTIONS)


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


class _XdistHooks:
    """pytest-xdist's hooks, registered only where xdist is loaded (a module-level xdist hook
    makes pytest refuse the plugin under ``-p no:xdist``: "unknown hook")."""

    @staticmethod
    def pytest_configure_node(node) -> None:
        """xdist controller -> worker: every worker shares the controller's run id."""
        node.workerinput["moola_run_id"] = node.config.stash[CTX_KEY].run_id


def pytest_report_header(config: pytest.Config) -> list[str]:
    ctx = config.stash.get(CTX_KEY, None)
    if ctx is None:
        return []
    c = ctx.cfg
    return [
        f"moola: run {ctx.run_id} profile={c.run.profile} data={c.run.data} "
        f"accelerator={c.run.accelerator} seed={c.run.seed} deterministic={c.run.deterministic}",
        f"moola: train max_epochs={c.train.max_epochs} batch_size={c.train.batch_size} "
        f"lr={c.train.lr} patience={c.train.early_stop_patience} top_k="
        f"{c.train.checkpoint_save_top_k} min_steps={c.train.min_steps}; model hidden="
        f"{c.model.hidden} layers={c.model.layers}",
        f"moola: protocol {c.protocol.seeds} seeds x {c.protocol.folds} folds "
        f"({c.protocol.fold_source}, purge {c.protocol.purge}, stopping slice "
        f"{c.protocol.inner_fraction:.0%} of each fold's training rows); docs/JUDGING.md",
        f"moola: logger={c.run.logger} log_every_n_steps={c.run.log_every_n_steps} "
        f"eval_every_n_steps={c.run.eval_every_n_steps} eval_timeout={c.run.eval_timeout}s "
        f"reports={c.run.reports} cache={c.run.cache} rebuild={c.run.rebuild}",
    ]


def _gate_name(item: pytest.Item) -> str | None:
    m = item.get_closest_marker("gate")
    return m.args[0] if m and m.args else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Gate tests, wherever they were declared (built in or a user's): checked against the
    registry (and gates.skip against it), run in chain order, given the profile's timeout."""
    from moola.gates.registry import REGISTRY
    from moola.gates.runner import upstream_of

    ctx = config.stash[CTX_KEY]
    limit = GATE_TIMEOUTS[ctx.cfg.run.profile]
    upstream_of("gate_0_env")  # the built-in gates are declared
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
    slots = [i for i, item in enumerate(items) if _gate_name(item)]
    for i in slots:
        name = _gate_name(items[i])
        if name not in REGISTRY:
            raise pytest.UsageError(
                f"{items[i].nodeid}: gate {name!r} is not declared; declare it with "
                f"@moola.gates.gate({name!r}, after=...) (docs/WRITE_YOUR_OWN_GATE.md) or use "
                f"one of: {', '.join(chain)}")
    # gate tests in chain order, in the positions gate tests held (other tests stay put)
    ordered = sorted((items[i] for i in slots), key=lambda it: chain.index(_gate_name(it)))
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
    ctx.selected = {g for g in map(_gate_name, session.items) if g}
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


@pytest.fixture(scope="session")
def moola_ctx(pytestconfig: pytest.Config):
    """The session's GateContext (config, data, cache, run id)."""
    return pytestconfig.stash[CTX_KEY]


def _artifact(request: pytest.FixtureRequest, producer_gate: str | None, get):
    """The artifact `get(ctx)`, after judging the gate that produces it (skip if it failed)."""
    ctx = request.config.stash[CTX_KEY]
    if producer_gate is not None:
        from moola.gates.runner import run_gate, skip_reason

        v = run_gate(ctx, producer_gate)
        if not v.passed:
            pytest.skip(skip_reason(v))
    return get(ctx)


@pytest.fixture(scope="session")
def moola_config(request: pytest.FixtureRequest):
    """The run's resolved configuration (moola.config.Config; frozen), as every result echoes it."""
    return request.config.stash[CTX_KEY].cfg


def _artifact_fixture(name: str, producer_gate: str, doc: str):
    """A session fixture handing out `moola.gates.artifacts.<getter>(ctx)` (see _artifact)."""
    getter = name.removesuffix("_model")

    def fixture(request: pytest.FixtureRequest):
        from moola.gates import artifacts

        return _artifact(request, producer_gate, getattr(artifacts, getter))

    fixture.__doc__, fixture.__name__ = doc, name
    return pytest.fixture(scope="session", name=name)(fixture)


dataset = _artifact_fixture(
    "dataset", "gate_0_env",
    "The run's windows, labels, split and folds (moola.gates.artifacts.DatasetView); gate 0.")
baseline_model = _artifact_fixture(
    "baseline_model", "gate_1_smoke_enhanced",
    "Gate 1's EnhancedSimpleLSTM from scratch (artifacts.TrainedModel: out-of-fold "
    "predictions, replicas, load_models()).")
control_model = _artifact_fixture(
    "control_model", "gate_2_control_minirocket",
    "Gate 2's MiniRocket control (artifacts.TrainedModel; no torch module).")
encoder = _artifact_fixture(
    "encoder", "gate_3_pretrain_bilstm",
    "Gate 3's pretrained encoder (artifacts.Encoder: load(), config, reconstruction, probes).")
finetuned_model = _artifact_fixture(
    "finetuned_model", "gate_4_finetune_enhanced",
    "Gate 4's finetuned EnhancedSimpleLSTM (artifacts.TrainedModel; info: load_report).")
augmented_model = _artifact_fixture(
    "augmented_model", "gate_5_augment",
    "Gate 5's model trained with pseudo-samples (artifacts.TrainedModel).")
simple_model = _artifact_fixture(
    "simple_model", "gate_6_baseline_simplelstm",
    "Gate 6's unidirectional SimpleLSTM (artifacts.TrainedModel; info: device).")


@pytest.fixture(scope="session")
def ensemble_model(request: pytest.FixtureRequest):
    """Gate 7's calibrated members (artifacts.Ensemble: raw and calibrated probabilities)."""
    from moola.gates import artifacts
    from moola.gates.registry import ENSEMBLE_GATE, REGISTRY

    def get(ctx):
        approved = ctx.verdicts[ENSEMBLE_GATE].metrics["approved"]
        candidates = REGISTRY.ensemble_candidates()
        return artifacts.ensemble(ctx, {n: candidates[n] for n in approved})

    return _artifact(request, ENSEMBLE_GATE, get)


@pytest.fixture
def gate(request: pytest.FixtureRequest, moola_ctx):
    """Run this test's gate (named by its ``@pytest.mark.gate(NAME)`` marker) -> Verdict.

    Skips with the upstream verdict's reason when an upstream gate did not pass.
    """
    from moola.gates.runner import run_gate

    name = _gate_name(request.node)
    if name is None:
        raise pytest.UsageError(f"{request.node.nodeid}: the 'gate' fixture needs "
                                f"@pytest.mark.gate('<gate name>')")
    verdict = run_gate(moola_ctx, name)
    _export_model(request.config, moola_ctx, verdict)
    request.node.stash[VERDICT_KEY] = verdict
    # travels with the test's report (xdist too): pytest's footer counts it by status
    request.node.user_properties.append(("moola_status", verdict.status))
    if verdict.artifacts.get("disk_full"):  # the gates after it would only hit the same wall
        request.session.shouldstop = verdict.reason
    _write_plots(request.config, moola_ctx, verdict)
    if verdict.status == "skipped":
        pytest.skip(verdict.reason)
    if verdict.status in ("warning", "inconclusive"):
        warnings.warn(MoolaGateWarning(f"{name}: {verdict.reason}"))
    return verdict


VERDICT_KEY = pytest.StashKey["Any"]()


def _export_model(config: pytest.Config, ctx, verdict) -> None:
    """Export the gate's model when its verdict approves it; the record says where
    (``artifacts.model_export``). A failed export never hides the verdict: a full disk stops the
    session like any full disk, another error is a warning; either makes the exit code
    non-zero (the controller reads it from the record, see _JsonReportHooks._append)."""
    import traceback

    from moola.diskspace import as_disk_full, is_disk_full
    from moola.export.exporter import export_after_gate

    if not ctx.cfg.run.export_models:
        return

    try:
        entry = export_after_gate(ctx, verdict)
    except Exception as exc:
        if is_disk_full(exc):  # said once, in the summary's "disk full" section
            full = as_disk_full(exc, [ctx.reports, ctx.cache.root])
            _disk_full(config, full)
            entry = {"path": None, "error": f"exporting the model failed: {full}"}
        else:
            entry = {"path": None, "error": f"exporting the model failed: "
                                            f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc()}
            warnings.warn(MoolaGateWarning(f"{verdict.gate}: {entry['error']}"))
    if entry is not None:
        verdict.artifacts = {**verdict.artifacts, "model_export": entry}


def _write_plots(config: pytest.Config, ctx, verdict) -> None:
    """Queue the gate's learning curve and confusion matrix PNGs for the plot process."""
    plots = config.stash.get(PLOTS_KEY, None)
    if plots is None:  # matplotlib missing (logged once) or no plot process
        return
    # not ctx.gate_dir(): that creates the folder, and a gate that wrote nothing (gate 0, a
    # skipped gate) must leave no runs/<run_id>/<gate>/ behind
    d = ctx.reports / "runs" / ctx.run_id / verdict.gate
    if (d / "metrics.csv").exists():
        plots.submit("learning_curves", metrics_csv_path=d / "metrics.csv",
                     out_png=d / "learning_curves.png",
                     title=f"{verdict.gate}: {verdict.model} ({verdict.status})")
    cm = verdict.metrics.get("confusion_matrix") if verdict.metrics else None
    if cm:
        plots.submit("confusion_matrix", cm=cm, class_names=list(ctx.dataset.classes),
                     out_png=ctx.gate_dir(verdict.gate) / "confusion_matrix.png",
                     title=f"{verdict.gate}: {verdict.model}")


class _JsonReportHooks:
    """pytest-json-report hooks bound to one session's config (pytester runs several)."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.config.stash[SESSION_KEY] = session

    def pytest_json_runtest_metadata(self, item: pytest.Item, call: pytest.CallInfo):
        """Attach the verdict (when the test produced one) to the JSON report entry."""
        gate = _gate_name(item)
        if gate is None:
            return None
        v = item.stash.get(VERDICT_KEY, None)
        return {"gate": gate, "verdict": v.to_dict()} if v is not None else {"gate": gate}

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Controller only (workers' reports arrive here under -n): once a gate test is over,
        append its record at once, so that a run killed later keeps it, and refresh
        report.json. Runs after pytest-json-report has folded the report into its entry."""
        if report.when != "teardown" or hasattr(self.config, "workerinput"):
            return
        plugin = getattr(self.config, "_json_report", None)
        test = getattr(plugin, "_json_tests", {}).get(report.nodeid)
        if test is not None:
            self._append([test])
            self._save_in_progress(plugin)

    @pytest.hookimpl(trylast=True)
    def pytest_json_modifyreport(self, json_report: dict) -> None:
        """Controller only: append the records not yet written (a gate interrupted before its
        teardown), make the decision if this session judged gates but not it (stopped early by
        -x, or -k without it), put it under report.json's top-level "decision", then write the
        final report.json atomically."""
        self._append(json_report.get("tests", []))
        self._session_decision()
        decision = next((r for r in self.config.stash[RECORDS_KEY] if r["gate"] == DECISION),
                        None)
        if decision is None and self.config.stash.get(NO_DECISION_KEY, None) is not None:
            v = self.config.stash[NO_DECISION_KEY]
            decision = {"metrics": v.metrics, "reason": v.reason, "status": v.status,
                        "run_id": self.config.stash[CTX_KEY].run_id}
        if decision is not None:
            json_report["decision"] = decision_summary(decision)
        _save_json_report_atomically(self.config, json_report)

    def _session_decision(self) -> None:
        """The decision from what this session judged, when it judged gates and not it."""
        from moola.diskspace import DiskFullError
        from moola.gates.decision_gate import make_decision
        from moola.gates.verdict import Verdict
        from moola.report.records import record_from_verdict
        from moola.report.results import append_records

        ctx = self.config.stash[CTX_KEY]
        written = self.config.stash[WRITTEN_KEY]
        if DECISION in written or not written:
            return
        records = self.config.stash[RECORDS_KEY]
        if self.config.stash.get(DISK_FULL_KEY, None) or any(
                (r.get("artifacts") or {}).get("disk_full") for r in records):
            return  # a full disk stopped the session: nothing more is written
        # the verdicts of the gates this session recorded (ran as tests): the same set serially
        # and under -n, where the workers judged them and their records carry the verdicts
        recorded = {r["gate"] for r in records}
        verdicts = {g: v for g, v in ctx.verdicts.items() if g in recorded} or {
            r["gate"]: Verdict.from_dict(r) for r in records}
        verdicts.pop(DECISION, None)
        gate0 = verdicts.get("gate_0_env")
        crashed = False
        ctx.build_allowed = False  # read what the gates built; never train here
        try:
            if gate0 is not None and not gate0.passed:
                from moola.gates.runner import skip_reason

                v = Verdict(gate=DECISION, status="skipped", reason=skip_reason(gate0),
                            config=ctx.cfg.to_dict(),
                            metrics={"recommended": None, "reason": skip_reason(gate0)})
            else:
                v = make_decision(ctx, verdicts)
            if v.metrics.get("recommended") and ctx.cfg.run.export_models:
                _export_model(self.config, ctx, v)  # marks it; exports only what exists
        except Exception as exc:  # a decision that cannot be made says why, never a traceback
            crashed = True
            v = Verdict(gate=DECISION, status="failed", config=ctx.cfg.to_dict(),
                        reason=f"the decision could not be made from this session's gates "
                               f"({type(exc).__name__}: {exc}); rerun it with pytest "
                               f"gates_tests -k decision",
                        metrics={"recommended": None})
        finally:
            ctx.build_allowed = True
        if not crashed and not (v.metrics.get("candidates") or v.metrics.get("recommended")):
            # no gate that trains a model was judged (e.g. -k gate_0, or gate 0 failed): the
            # answer goes into report.json only, the results log keeps the gates' records
            self.config.stash[NO_DECISION_KEY] = v
            return
        v.reason = (f"{v.reason} [made at the end of the session from the gates it judged: "
                    f"{', '.join(g for g in verdicts)}]")
        record = record_from_verdict(v.to_dict(), ctx)
        try:
            append_records(ctx.reports / "gated_workflow_results.jsonl", [record])
        except DiskFullError as exc:
            _disk_full(self.config, exc)
            return
        written.add(DECISION)
        self.config.stash[RECORDS_KEY].append(record)

    def _append(self, tests: list[dict]) -> None:
        """Records of the gate tests among `tests` whose gate this session has not written."""
        from moola.diskspace import DiskFullError
        from moola.report.records import record_from_json_test
        from moola.report.results import append_records

        ctx = self.config.stash[CTX_KEY]
        written = self.config.stash[WRITTEN_KEY]
        records = [r for r in (record_from_json_test(t, ctx) for t in tests)
                   if r is not None and r["gate"] not in written]
        if not records:
            return
        try:
            append_records(ctx.reports / "gated_workflow_results.jsonl", records)
        except DiskFullError as exc:
            _disk_full(self.config, exc)
            return
        written.update(r["gate"] for r in records)
        self.config.stash[RECORDS_KEY].extend(records)
        self.config.stash.setdefault(EXPORT_ERRORS_KEY, []).extend(
            r for r in records if (r["artifacts"].get("model_export") or {}).get("error"))

    def _save_in_progress(self, plugin) -> None:
        """report.json as it stands mid-run: the finished tests, marked in progress."""
        import time

        report = {"created": time.time(), "in_progress": True, "exitcode": None,
                  "root": str(self.config.rootpath),
                  "tests": [t for t in plugin._json_tests.values() if "teardown" in t]}
        _save_json_report_atomically(self.config, report, final=False)


def _disk_full(config: pytest.Config, exc: Exception) -> None:
    """Remember a full disk met while writing outputs: the summary says it, the exit code
    shows it, and the session stops after the current test."""
    errors = config.stash.setdefault(DISK_FULL_KEY, [])
    if not any(getattr(e, "filename", None) == getattr(exc, "filename", None) for e in errors):
        errors.append(exc)  # once per file (report.json is rewritten after every gate)
    session = config.stash.get(SESSION_KEY, None)
    if session is not None and not session.shouldstop:
        session.shouldstop = f"moola: {exc}"


def _save_json_report_atomically(config: pytest.Config, json_report: dict,
                                 final: bool = True) -> None:
    """Write the report where pytest-json-report would, but atomically, and (final) switch its
    own save off: it rewrites the file in place (open + write), so a reader or a --sync-cmd
    could catch it half-written. Same content: ``json.dump(report, default=str, indent=...)``.
    A full disk is reported (summary, exit code), never a traceback."""
    import json

    from moola.diskspace import DiskFullError
    from moola.io_utils import atomic_write_text

    path = config.option.json_report_file or config.stash.get(JSON_REPORT_PATH_KEY, None)
    if not path:
        return
    text = json.dumps(json_report, default=str, indent=config.option.json_report_indent)
    try:
        atomic_write_text(path, text, fsync=False)
    except DiskFullError as exc:
        _disk_full(config, exc)
    if final:
        config.option.json_report_file = None  # read by the library right after this hook
        config.stash[JSON_REPORT_PATH_KEY] = str(path)


def pytest_unconfigure(config: pytest.Config) -> None:
    """One last --sync-cmd run once everything is written (controller or plain session)."""
    from moola.gates.registry import REGISTRY

    REGISTRY.forget_user_gates()  # the next session (same process?) declares its own
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


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """A gate test that passed on an inconclusive or warning verdict is counted as such in
    pytest's footer ("2 passed, 5 inconclusive, 1 warned"), not as one more pass; the outcome
    (and the exit code) stays passed: the chain continues on these verdicts."""
    if report.when != "call" or not report.passed:
        return None
    status = dict(report.user_properties).get("moola_status")
    if status == "inconclusive":
        return "inconclusive", "i", "INCONCLUSIVE"
    if status == "warning":
        return "warned", "w", "WARNED"
    return None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for exc in config.stash.get(DISK_FULL_KEY, []):
        terminalreporter.write_sep("=", "moola: disk full", red=True)
        terminalreporter.write_line(str(exc), red=True)
    for r in config.stash.get(EXPORT_ERRORS_KEY, []):
        terminalreporter.write_sep("=", "moola: model export failed", red=True)
        terminalreporter.write_line(f"{r['gate']}: {r['artifacts']['model_export']['error']}",
                                    red=True)
    records = config.stash.get(RECORDS_KEY, [])
    if not records:
        return
    from moola.report.summary import format_decision, format_summary

    decision = next((r for r in records if r["gate"] == DECISION), None)
    if decision is not None:  # the answer first
        terminalreporter.write_sep("=", "moola decision")
        for line in format_decision(decision):
            terminalreporter.write_line(line, bold=line.startswith("DEPLOY"))
    terminalreporter.write_sep("=", "moola gates")
    for line in format_summary(records):
        terminalreporter.write_line(line)
    ctx = config.stash[CTX_KEY]
    terminalreporter.write_line(
        f"results: {ctx.reports / 'gated_workflow_results.jsonl'} (run_id {ctx.run_id}); "
        f"details: {ctx.reports / 'report.json'}; watch: moola status {ctx.reports}")
    exported = [Path(p).name for p in (r["artifacts"].get("model_export", {}).get("path")
                                       for r in records if r["gate"] != DECISION) if p]
    decision = next((r for r in records if r["gate"] == DECISION), None)
    rec = ((decision or {}).get("artifacts") or {}).get("model_export") or {}
    if rec.get("path"):
        terminalreporter.write_line(
            f"deploy: moola predict --model {rec['path']} --data DIR_OR_CSV --out "
            f"predictions.csv  (the recommended model; all exported: {', '.join(exported)})")
    elif exported:
        from moola.export.exporter import models_dir

        named = ((decision or {}).get("metrics") or {}).get("recommended")
        why = (f"the recommended '{named}' is not among them: {rec.get('reason')}" if named
               else "none is recommended (see the decision above)")
        terminalreporter.write_line(f"models: {models_dir(ctx)}/ ({', '.join(exported)}); {why}")
