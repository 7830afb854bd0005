"""`crowd-platform tokens issue --name N (--datasets a,b | --all) | revoke ID_OR_NAME | list`:
bearer tokens of the published API (docs/api.md). The token is printed once, at issue; only
its SHA-256 is stored, and `list` never prints it."""

from __future__ import annotations

import argparse
import json

from crowd_platform.cli import CliError


def _settings():
    from crowd_platform.common.settings import get_settings

    return get_settings()


def _issue(args: argparse.Namespace) -> int:
    from crowd_platform.api.tokens import TokenError, issue

    datasets = [name.strip() for name in (args.datasets or "").split(",") if name.strip()]
    try:
        token, record = issue(_settings(), args.name, datasets, all_datasets=args.all, actor=args.actor)
    except TokenError as error:
        raise CliError(str(error)) from None
    print(f"token {record['token_id']} for {record['name']} (datasets: {', '.join(record['datasets'])})")
    print("store it now, it is not shown again:")
    print(token)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from crowd_platform.api.tokens import TokenError, revoke

    try:
        ids = revoke(_settings(), args.token, actor=args.actor)
    except TokenError as error:
        raise CliError(str(error)) from None
    print(f"revoked {len(ids)} token(s): {', '.join(ids)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from crowd_platform.api.tokens import list_tokens

    rows = list_tokens(_settings())
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%dT%H:%M:%SZ}" if row["revoked_at"] else "live"
        print(f"{row['token_id']}  {row['name']:<24} {state:<28} datasets={','.join(row['datasets'])}"
              f"  issued {row['issued_at']:%Y-%m-%dT%H:%M:%SZ} by {row['issued_by']}")
    print(f"{len(rows)} token(s)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokens", help="bearer tokens of the published API: issue, revoke, list")
    commands = parser.add_subparsers(dest="tokens_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])

    issue = commands.add_parser("issue", help="issue a token (printed once)")
    issue.add_argument("--name", required=True, help="who holds it (recorded in every API audit record)")
    scope = issue.add_mutually_exclusive_group(required=True)
    scope.add_argument("--datasets", help="comma-separated published datasets, e.g. district_density_published")
    scope.add_argument("--all", action="store_true", help="every published dataset, present and future")
    issue.add_argument("--actor", help="who issues it (default: $CROWD_ACTOR or the OS user)")
    issue.set_defaults(handler=_issue)

    revoke = commands.add_parser("revoke", help="revoke a token by id, or every live token of a name")
    revoke.add_argument("token", metavar="TOKEN_ID_OR_NAME")
    revoke.add_argument("--actor", help="who revokes it (default: $CROWD_ACTOR or the OS user)")
    revoke.set_defaults(handler=_revoke)

    listing = commands.add_parser("list", help="list tokens (ids, names, scopes; never a token or its hash)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_list)
