"""`crowd-platform` command line (also `python -m crowd_platform`).

Each subcommand lives in its own module in this package and exposes
``register(subparsers)``; the handler it sets returns an exit code. Bad input exits non-zero
with a one-line reason (``CliError``), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except CliError as error:
        print(f"crowd-platform {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("crowd-platform: interrupted", file=sys.stderr)
        return 130
