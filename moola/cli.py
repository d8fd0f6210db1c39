"""The `moola` command line.

Adding a command: write `_add_<name>(subparsers)` that creates its parser and sets
`func=<handler>` (a function `(args) -> int` exit code), and append it to `REGISTRARS`.
Handlers raise `DataError` / `ValueError` / `OSError` for user errors: `main` prints the message
without a traceback and returns 1; usage errors return 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from moola.data.schema import DataError


# ------------------------------------------------------------------------------- data commands


def cmd_data_synth(args: argparse.Namespace) -> int:
    """Generate the synthetic OHLC dataset."""
    from moola.data import generate_synthetic, validate_dataset

    if args.if_missing and Path(args.out).exists():
        report = validate_dataset(args.out)
        if report.ok:
            print(f"{args.out}: already holds a valid dataset; nothing to do (--if-missing)")
            return 0
        print(f"{args.out}: exists but is not a valid dataset ({len(report.problems)} problems); regenerating")
    out = generate_synthetic(
        args.out,
        n_labeled=args.labeled,
        n_unlabeled=args.unlabeled,
        seed=args.seed,
        timesteps=args.timesteps,
        val_fraction=args.val_fraction,
    )
    print(validate_dataset(out).format())
    return 0


def cmd_data_control(args: argparse.Namespace) -> int:
    """Write a known-answer control of a dataset (moola.data.controls)."""
    from moola.data import validate_dataset
    from moola.data.controls import make_control

    out = make_control(args.source, args.out, args.kind, seed=args.seed)
    print(f"{out}: {args.kind} control of {args.source} (seed {args.seed})")
    print(validate_dataset(out).format())
    return 0


def cmd_data_ucr(args: argparse.Namespace) -> int:
    """Convert a UCR/UEA dataset bundled with sktime."""
    from moola.data import validate_dataset
    from moola.data.ucr import convert_ucr

    out = convert_ucr(args.name, args.out)
    order = json.loads((out / "meta.json").read_text())["ucr"]["train_order"]
    if order.startswith("shuffled"):
        print(f"train rows {order}; written in a fixed shuffled order (ids keep the file's row "
              f"numbers) so that walk-forward folds see every class")
    print(validate_dataset(out).format())
    return 0


def _names(text: str | None) -> list[str] | None:
    """'a, b,c' -> ['a', 'b', 'c']; None stays None."""
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def cmd_data_from_csv(args: argparse.Namespace) -> int:
    """Convert a CSV of bars and a CSV of labels."""
    from moola.data import validate_dataset
    from moola.data.from_csv import convert_csv

    out, notes = convert_csv(
        args.bars, args.out, labels_csv=args.labels, window=args.window, stride=args.stride,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, purge=args.purge,
        time_column=args.time_column, features=_names(args.features), date_format=args.date_format,
    )
    print(validate_dataset(out).format())
    for note in notes:
        print(f"note: {note}")
    return 0


def cmd_data_from_numpy(args: argparse.Namespace) -> int:
    """Convert .npy windows and labels."""
    from moola.data import validate_dataset
    from moola.data.from_numpy import convert_numpy

    out = convert_numpy(
        args.x, args.y, args.out, unlabeled_npy=args.unlabeled, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, purge=args.purge, feature_names=_names(args.feature_names),
    )
    print(validate_dataset(out).format())
    return 0


def _add_split_options(p: argparse.ArgumentParser, unit: str) -> None:
    """--val-fraction, --test-fraction, --purge: the temporal split both converters write."""
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="FRAC",
                   help="last share of the labeled windows used as val (default 0.2)")
    p.add_argument("--test-fraction", type=float, default=0.0, metavar="FRAC",
                   help="last share held out as test, after val; no gate decision uses it (default 0)")
    p.add_argument("--purge", type=int, default=0, metavar=unit.upper(),
                   help=f"{unit} required between the last train window and the first val (and "
                        f"val/test) window; closer windows are left out of the split (default 0)")


def _add_date_format(p: argparse.ArgumentParser) -> None:
    """--date-format: how a non-ISO time column is written (from-csv and predict)."""
    p.add_argument("--date-format", metavar="FMT",
                   help="the format of every time column not in ISO 8601, in strftime codes, e.g. "
                        "\"%%d/%%m/%%Y %%H:%%M\" for 02/01/2023 09:30 (2 January); ISO 8601 columns are "
                        "always read as ISO; without it a non-ISO column is an error, never a guess")


def cmd_data_validate(args: argparse.Namespace) -> int:
    """Validate a dataset directory: 0 and a summary when valid, 1 and every problem otherwise."""
    from moola.data import validate_dataset

    report = validate_dataset(args.dir, fold=args.fold)
    if report.ok:
        print(report.format())
        return 0
    n = len(report.problems)
    print(f"{args.dir}: INVALID ({n} problem{'s' if n != 1 else ''})", file=sys.stderr)
    print(report.format(), file=sys.stderr)
    return 1


def _add_data(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="create, convert and validate datasets")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("synth", help="generate the deterministic synthetic OHLC dataset")
    p.add_argument("--out", required=True, help="dataset directory to write (replaced atomically)")
    p.add_argument("--labeled", type=int, default=98, help="labeled windows (default 98)")
    p.add_argument("--unlabeled", type=int, default=11873, help="unlabeled windows (default 11873)")
    p.add_argument("--seed", type=int, default=17, help="same seed -> byte-identical files (default 17)")
    p.add_argument("--timesteps", type=int, default=105, help="bars per window (default 105)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="last share of rows used as val (default 0.2)")
    p.add_argument("--if-missing", action="store_true", help="do nothing if --out already holds a valid dataset")
    p.set_defaults(func=cmd_data_synth)

    p = sub.add_parser("ucr", help="convert a UCR/UEA dataset bundled with sktime (offline)")
    p.add_argument("name", help="e.g. GunPoint, ItalyPowerDemand, BasicMotions")
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.set_defaults(func=cmd_data_ucr)

    p = sub.add_parser("control", help="a known-answer control of a dataset: shuffled labels, "
                                       "a random-walk or time-shuffled unlabeled pool")
    p.add_argument("source", help="dataset directory to copy")
    p.add_argument("--kind", required=True, choices=("shuffled-labels", "random-walk-pool",
                                                     "time-shuffled-pool"))
    p.add_argument("--out", required=True, help="dataset directory to write (atomically)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle or walks (default 0)")
    p.set_defaults(func=cmd_data_control)

    p = sub.add_parser("from-csv", help="convert a CSV of bars and a CSV of labels (docs/BRING_YOUR_OWN_DATA.md)")
    p.add_argument("bars", metavar="BARS.csv", help="one bar per row, oldest first: open, high, low, close "
                   "(any case), optional time column, optional extra numeric columns")
    p.add_argument("--labels", required=True, metavar="LABELS.csv",
                   help="label + start_time (a bar's timestamp) or start_index (a bar's 0-based row); "
                        "optional expansion_start, expansion_end")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset directory to write (replaced atomically)")
    p.add_argument("--window", type=int, default=105, metavar="BARS", help="bars per window (default 105)")
    p.add_argument("--stride", type=int, default=10, metavar="BARS",
                   help="bars between unlabeled windows (default 10)")
    _add_split_options(p, "bars")
    p.add_argument("--time-column", metavar="NAME", help="the time column, if not named timestamp, time, "
                   "datetime or date")
    p.add_argument("--features", metavar="COLS", help="comma-separated feature columns (default: open, "
                   "high, low, close and every other column)")
    _add_date_format(p)
    p.set_defaults(func=cmd_data_from_csv)

    p = sub.add_parser("from-numpy", help="convert .npy windows (n, T, F) and labels (n,)")
    p.add_argument("x", metavar="X.npy", help="windows, shape (n, T, F) or (n, T), rows in time order")
    p.add_argument("y", metavar="y.npy", help="labels, shape (n,), integers or strings")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset directory to write (replaced atomically)")
    p.add_argument("--unlabeled", metavar="U.npy", help="unlabeled windows for pretraining, same T and F "
                   "(default: the test windows, which needs --test-fraction)")
    _add_split_options(p, "rows")
    p.add_argument("--feature-names", metavar="NAMES", help="comma-separated, one per feature (default "
                   "f0, f1, ...; open,high,low,close marks OHLC bars)")
    p.set_defaults(func=cmd_data_from_numpy)

    p = sub.add_parser("validate", help="check a dataset directory and print a summary or every problem")
    p.add_argument("dir", help="dataset directory")
    p.add_argument("--fold", type=int, default=0, help="split fold to check (default 0)")
    p.set_defaults(func=cmd_data_validate)


# ------------------------------------------------------------------------------------ parser

# One function per top-level command; other modules' commands (status, report) are added here.
def _add_delegated(subparsers: argparse._SubParsersAction) -> None:
    """`moola status` and `moola report` parse their own options (see their --help)."""

    for name, func, help_ in (
        ("status", lambda a: _status_main(a.rest), "show where the run is: the gate and its place in the "
                           "chain, replica i of R, ETAs of the gate and the chain, finished gates "
                           "(--watch to follow)"),
        ("report", lambda a: _report_main(a.rest), "write reports/report.html: summary, models side by "
                           "side, history across runs, verdicts and charts per gate"),
    ):
        p = subparsers.add_parser(name, help=help_, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=func)


def _status_main(argv: list[str]) -> int:
    from moola.report.watch import status_main

    return status_main(argv)


def _report_main(argv: list[str]) -> int:
    from moola.report.html import report_main

    return report_main(argv)


_DELEGATED = {"status": _status_main, "report": _report_main}


# ---------------------------------------------------------------------------- predict command


def cmd_predict(args: argparse.Namespace) -> int:
    """Apply an exported model to a dataset directory or a CSV of bars."""
    from moola.export.predict import run_predict  # torch loads only for this command

    return run_predict(args.model, args.data, out=args.out, stride=args.stride,
                       time_column=args.time_column, date_format=args.date_format)


def _add_predict(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict", help="an exported model's class probabilities for every window of a dataset "
                        "directory or a CSV of bars (docs/MODEL_OUT.md)")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="an exported model: reports/runs/<run_id>/models/<name>/ (or .../ensemble)")
    p.add_argument("--data", required=True, metavar="DIR_OR_CSV",
                   help="a dataset directory (every labeled and unlabeled window) or a CSV of bars "
                        "(every window of the model's length)")
    p.add_argument("--out", metavar="FILE", help="CSV to write (default: standard output when it is a "
                   "pipe or a file; at a terminal, a summary and a request for --out)")
    p.add_argument("--stride", type=int, default=1, metavar="BARS",
                   help="CSV input: bars between window starts (default 1: every window)")
    p.add_argument("--time-column", metavar="NAME",
                   help="CSV input: the time column, if not named timestamp, time, datetime or date")
    _add_date_format(p)
    p.set_defaults(func=cmd_predict)


# ------------------------------------------------------------------------------ panel command


def cmd_panel(args: argparse.Namespace) -> int:
    """Run the chain on every dataset x seed on Dask: 0 when every chain ran (whatever the
    verdicts), 1 when some crashed (their rows say so), 2 for bad input found before training,
    130 when interrupted (rerun to resume)."""
    import hashlib

    from moola.panel import PanelInputError, PanelSettings, default_workers, run_panel, terminal_table

    gates_config = sha = None
    if args.gates_config:
        gates_config = str(Path(args.gates_config).resolve())
        try:
            sha = hashlib.sha256(Path(gates_config).read_bytes()).hexdigest()
        except OSError:
            print(f"moola panel: --gates-config {args.gates_config}: cannot read it", file=sys.stderr)
            return 2
    settings = PanelSettings(profile=args.profile, k=args.k, gates=args.gates,
                             gates_config=gates_config, gates_config_sha=sha)
    try:
        workers = args.workers if args.workers is not None or args.scheduler else default_workers()
        panel = run_panel(args.data, args.seeds, args.out, settings=settings,
                          workers=workers, scheduler=args.scheduler,
                          torch_threads=args.torch_threads, connect_timeout=args.connect_timeout)
    except PanelInputError as exc:
        print(f"moola panel: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"moola panel: interrupted; the chains that finished are kept in "
              f"{Path(args.out) / 'tasks'}: rerun the same command to resume", file=sys.stderr)
        return 130
    print(terminal_table(panel))
    out = Path(args.out)
    print(f"panel: {out / 'panel.json'}, {out / 'panel.html'}")
    crashed = sum(1 for c in panel["chains"] if c.get("state") != "ran")
    if crashed:  # the verdicts of the others stand; these have none
        print(f"moola panel: {crashed} chain(s) crashed (rows with status crashed); rerun the "
              f"same command to retry them", file=sys.stderr)
        return 1
    return 0


def _add_panel(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "panel", help="the gate chain on several datasets x seeds, on a local or remote Dask "
                      "cluster: does a verdict hold across data and seeds? (docs/PANELS.md)")
    p.add_argument("data", nargs="+", metavar="DATA", help="dataset directories (each validated first)")
    p.add_argument("--seeds", nargs="+", type=int, required=True, metavar="SEED",
                   help="training seeds (--seed of each chain), e.g. --seeds 1 2 3")
    p.add_argument("-k", metavar="EXPR", help="the gates to run, as pytest -k (default: all)")
    p.add_argument("--profile", metavar="P", help="smoke|standard|full|auto (default: the project's)")
    p.add_argument("--gates-config", metavar="FILE", help="TOML/JSON settings for every chain")
    p.add_argument("--gates", default="gates_tests", metavar="DIR",
                   help="the gate suite, relative to the current directory (default gates_tests: "
                        "the project's, with your own gates)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="a local Dask cluster of N worker processes on 127.0.0.1, one chain "
                            "at a time each (default: one per core, at most one per 2 GB of memory)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="a running Dask scheduler, e.g. tcp://host:8786 (dask-jobqueue, "
                            "dask-ssh, ...); every worker needs this project at the same path")
    p.add_argument("--torch-threads", type=int, metavar="N",
                   help="torch threads per chain (default: a host's cores / its workers' threads)")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for --scheduler (default 10)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="panel.json, panel.html and tasks/ (rerun with the same DIR to resume)")
    p.set_defaults(func=cmd_panel)


REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [_add_data, _add_predict,
                                                                   _add_panel, _add_delegated]


def build_parser() -> argparse.ArgumentParser:
    """The full `moola` parser; each registrar adds one top-level command."""
    from moola import __version__

    parser = argparse.ArgumentParser(prog="moola", description="gated training workflow: data and run tools")
    parser.add_argument("--version", action="version", version=f"moola {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in REGISTRARS:
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit code (0 ok, 1 error, 2 usage error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("status", "report"):  # they parse their own options, --help too
        return _DELEGATED[argv[0]](argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage; keep main() returning a code
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except (DataError, ValueError, OSError) as exc:
        print(f"moola: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
