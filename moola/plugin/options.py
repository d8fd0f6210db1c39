"""The ``moola`` option group, its ini keys, the resolved configuration and the report
header: execution knobs named as in PyTorch Lightning; precedence is command line > ini >
--gates-config > profile."""

from __future__ import annotations

from dataclasses import fields

import pytest

from moola.config import (CHOICES, PROFILES, SECTIONS, ConfigError, apply_overrides,
                          load_config, parse_dotted)
from moola.plugin.keys import CTX_KEY


# (option name, config key, metavar, help). The type, the choices and the default of each come
# from moola.config, so --help and the ini types cannot drift from the schema.
KNOBS = [
    ("accelerator", "run.accelerator", None, "device to train on; auto: CUDA, else MPS, else CPU"),
    ("deterministic", "run.deterministic", None, "deterministic algorithms (slower)"),
    ("seed", "run.seed", "N", "base seed; replicas train at N, N + 1000, ..."),
    ("fold", "run.fold", "N", "split file splits/fold_<N>.json: its train + val rows are "
                              "folded, its test rows held out"),
    ("max-epochs", "train.max_epochs", "N", "epochs of the shared supervised recipe, raised to "
                                            "fit train.min_steps and a patience (each replica "
                                            "records the epochs it could run)"),
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
    """'default 17', or 'default 40; smoke 15, full 60' where the `profiles` ({name: Config})
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


# pytest's information commands: they show something and must not train, start helper
# processes or write under reports/ (option dests of --co, --fixtures, --fixtures-per-test,
# --markers, --cache-show, --help, --version)
INFO_OPTIONS = ("collectonly", "showfixtures", "show_fixtures_per_test", "markers", "cacheshow",
                "help", "version")


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



def info_only(config: pytest.Config) -> bool:
    """True for collection-only and information commands (see INFO_OPTIONS)."""
    return any(getattr(config.option, name, False) for name in INFO_OPTIONS)



def pytest_report_header(config: pytest.Config) -> list[str]:
    ctx = config.stash.get(CTX_KEY, None)
    if ctx is None:
        return []
    c = ctx.cfg
    return [
        f"moola: run {ctx.run_id} profile={c.run.profile} data={c.run.data} "
        f"accelerator={c.run.accelerator} seed={c.run.seed} deterministic={c.run.deterministic}",
        f"moola: train max_epochs={c.train.max_epochs} (raised to min_steps + patience) "
        f"batch_size={c.train.batch_size} "
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

