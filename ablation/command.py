"""What every ``ablation`` sub-command shares: list-valued option types and how a command runs.

A user-facing failure (:class:`~ablation.errors.AblationError`, a bad option value, an
unusable path) is printed as one line (``error: ...``) with exit code 2, an interrupt as one
line with 130; nothing is parsed at import time. The sub-command modules (``sweep``,
``upscale``, ``book``) each define ``add_parser(subparsers)`` and a ``main(argv)`` built on
:func:`subcommand_main`, so none of them imports the CLI that imports them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ablation.config import canonical_set
from ablation.errors import AblationError


def int_list(text: str) -> list[int]:
    """argparse type: '0,1,2' -> [0, 1, 2]."""
    try:
        return [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        msg = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def str_list(text: str) -> list[str]:
    """argparse type: 'Set5, Set14' -> ['Set5', 'Set14']."""
    return [x.strip() for x in str(text).split(",") if x.strip()]


# Help texts of the options several commands share (their defaults live in ablation.paths).
DATA_DIR_HELP = "data folder (default: $ABLATION_DATA, else the project's data/)"
RESULTS_HELP = "results folder (default: $ABLATION_RESULTS, else the project's results/)"
DEVICE_HELP = "auto (cuda if available, else cpu), cpu, cuda or cuda:N (default auto)"


def package_version() -> str:
    """The installed package's version (its metadata, from pyproject.toml), or the source
    tree's ``ablation.__version__`` when the package is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sr-ablation")
    except PackageNotFoundError:
        from ablation import __version__

        return __version__


def add_progress_option(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """``--no-progress`` (plus ``aliases``): bars go to stderr, and only when it is a terminal
    (a log file or a pipe gets no carriage-return noise)."""
    parser.add_argument("--no-progress", *aliases, dest="no_progress", action="store_true",
                        help="no progress bars (default: bars on stderr when it is a terminal)")


def progress_wanted(args: argparse.Namespace) -> bool:
    """Whether a command shows progress bars: stderr is a terminal and no ``--no-progress``."""
    return sys.stderr.isatty() and not getattr(args, "no_progress", False)


def set_list(text: str) -> list[str]:
    """argparse type for set names: 'set5, b100' -> ['Set5', 'B100'] (folders unchanged)."""
    return [canonical_set(x) for x in str_list(text)]


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: ``error: <prog>: <what> (see --help)``,
    exit 2 (argparse's default prints the whole usage block first). Sub-parsers inherit it."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        for action in self._actions:  # argparse turns `--opt=--` into [] for one-value options
            value = getattr(namespace, action.dest, None)
            if (action.option_strings and action.nargs is None and isinstance(value, list)
                    and action.type in (None, str, int, float)):
                self.error(f"argument {'/'.join(action.option_strings)}: expected one value")
        return namespace, extras


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen command (``args.func``); returns the exit code."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AblationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the user gave (or its folder) can't be used
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}; check the path and its permissions",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept and a rerun resumes", file=sys.stderr)
        return 130


def subcommand_main(name: str, add_parser: Callable, argv: Sequence[str] | None) -> int:
    """``ablation <name> ...`` with only that sub-command registered (its tests call this)."""
    parser = Parser(prog="ablation")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser, [name, *(sys.argv[1:] if argv is None else argv)])
