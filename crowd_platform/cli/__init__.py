"""`crowd-platform` command line (also `python -m crowd_platform`).

Each subcommand lives in its own module in this package and exposes
``register(subparsers)``; the handler it sets returns an exit code. Bad input exits non-zero
with a one-line reason (``CliError``), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crowd-platform",
        description="Crowd density from pseudonymized mobile-network events, with privacy and audit built in.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    _add_home_everywhere(parser)
    return parser


def _add_home_everywhere(parser: argparse.ArgumentParser) -> None:
    """Every command, at every depth, takes --home (the storage root, else $CROWD_HOME)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                if not any("--home" in option.option_strings for option in subparser._actions):
                    # SUPPRESS: a nested command must not reset a --home given to its parent
                    subparser.add_argument("--home", default=argparse.SUPPRESS,
                                           help="storage root (default $CROWD_HOME or ./.crowd)")
                _add_home_everywhere(subparser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    if getattr(args, "home", None):
        # Commands that read settings from the environment see the same root.
        os.environ["CROWD_HOME"] = str(args.home)
    try:
        return int(args.handler(args) or 0)
    except CliError as error:
        print(f"crowd-platform {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("crowd-platform: interrupted", file=sys.stderr)
        return 130
