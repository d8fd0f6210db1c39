"""The `moola` command line.

Adding a command: write `_add_<name>(subparsers)` that creates its parser and sets
`func=<handler>` (a function `(args) -> int` exit code), and append it to `REGISTRARS`.
Handlers raise `DataError` / `ValueError` / `OSError` for user errors: `main` prints the message
without a traceback and returns 1; usage errors return 2.
"""

from __future__ import annotations

import argparse
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


def cmd_data_ucr(args: argparse.Namespace) -> int:
    """Convert a UCR/UEA dataset bundled with sktime."""
    from moola.data import validate_dataset
    from moola.data.ucr import convert_ucr

    out = convert_ucr(args.name, args.out)
    print(validate_dataset(out).format())
    return 0


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

    p = sub.add_parser("validate", help="check a dataset directory and print a summary or every problem")
    p.add_argument("dir", help="dataset directory")
    p.add_argument("--fold", type=int, default=0, help="split fold to check (default 0)")
    p.set_defaults(func=cmd_data_validate)


# ------------------------------------------------------------------------------------ parser

# One function per top-level command; other modules' commands (status, report) are added here.
def _add_delegated(subparsers: argparse._SubParsersAction) -> None:
    """`moola status` and `moola report` parse their own options (see their --help)."""

    for name, func, help_ in (
        ("status", lambda a: _status_main(a.rest), "show the live run: gate, progress, loss, ETA, finished gates "
                           "(--watch to follow)"),
        ("report", lambda a: _report_main(a.rest), "write reports/report.html: summary table, verdicts, pictures"),
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


REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [_add_data, _add_delegated]


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
