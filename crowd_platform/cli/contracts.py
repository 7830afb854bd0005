"""`crowd-platform contracts lint`: check every data contract (ODCS + platform conventions)."""

from __future__ import annotations

import argparse
from pathlib import Path

from crowd_platform.cli import CliError
from crowd_platform.common.settings import get_settings


def register(subparsers) -> None:
    parser = subparsers.add_parser("contracts", help="Data contract tools.", description="Data contract tools.")
    commands = parser.add_subparsers(dest="contracts_command", metavar="SUBCOMMAND")
    lint = commands.add_parser(
        "lint",
        help="Validate contracts against ODCS and this platform's conventions.",
        description="Validate every contract: the official ODCS JSON schema of its apiVersion (vendored in "
                    "data_contracts/schemas/), the ODCS v3 model, and this platform's rules (owner, retention, "
                    "canonical columns mapped, portable regexes, known rules). Prints one line per problem "
                    "(file: path.to.field: message for schema violations); exit 1 if any.",
    )
    lint.add_argument("--dir", type=Path, default=None, help="contracts folder (default: $CROWD_CONTRACTS or data_contracts/)")
    lint.add_argument("files", nargs="*", type=Path, help="lint only these files")
    lint.set_defaults(handler=_lint)
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])


def _lint(args: argparse.Namespace) -> int:
    from crowd_platform.ingestion.lint import lint_contract, lint_directory

    if args.files:
        missing = [str(path) for path in args.files if not path.is_file()]
        if missing:
            raise CliError(f"no such contract file: {missing[0]}")
        count, problems = len(args.files), [problem for path in args.files for problem in lint_contract(path)]
    else:
        directory = args.dir or get_settings().contracts_dir
        if not directory.is_dir():
            raise CliError(f"no such contracts folder: {directory}")
        count, problems = lint_directory(directory)
        if count == 0:
            raise CliError(f"no *.yaml contracts in {directory}")
    for problem in problems:
        print(problem)
    print(f"{count} contract(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0
