"""`crowd-platform package`: the operator-side tool that cuts an export into drops.

Runs at the operator, after `crowd-platform pseudonymize` and before the upload: an event export
becomes one drop per window; a versioned cell list becomes one full list per validity date. Each
drop is written into ``<landing>/<operator>/`` with its manifest last (crowd_platform/ingestion/
packaging.py). Reads the feed's contract from ``--contracts`` (default: CROWD_CONTRACTS, else
data_contracts/).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crowd_platform.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "package",
        help="operator-side: cut a pseudonymized export into per-window drops with manifests",
        description="Cut an export into the drops the platform accepts: event feeds one drop per window, "
                    "versioned cell lists one full list per validity date.",
    )
    parser.add_argument("--operator", required=True, help="operator name, as in its contracts")
    parser.add_argument("--feed", required=True, help="feed name, as in the contract (e.g. calls, sms, cells)")
    parser.add_argument("--input", required=True, type=Path, help="the export (the contract's layout)")
    parser.add_argument("--landing", required=True, type=Path, help="landing folder; drops go to <landing>/<operator>/")
    parser.add_argument("--contracts", type=Path, default=None, help="contracts folder (default $CROWD_CONTRACTS or data_contracts/)")
    parser.add_argument("--key-id", default=None, help="event feeds: id of the HMAC key used by pseudonymize (the contract's key_id_pattern)")
    parser.add_argument("--delivery", type=int, default=1, help="delivery number (a corrected re-delivery is 2, ...)")
    parser.add_argument("--window-minutes", type=int, default=15, help="window length (default 15, the platform's)")
    parser.add_argument("--valid-from-column", default=None, help="cell lists: column of the first day a row is valid")
    parser.add_argument("--valid-to-column", default=None, help="cell lists: column of the last day (inclusive; empty = in service)")
    parser.add_argument("--timezone", default=None, help="cell lists: IANA zone of those days (snapshots start at local midnight)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from crowd_platform.common.contracts import CELLS_KIND, ContractError, contract_for
    from crowd_platform.common.settings import CONTRACTS_DIR, env
    from crowd_platform.ingestion.packaging import PackagingError, package_cells, package_events

    contracts = (args.contracts or Path(env("CROWD_CONTRACTS") or CONTRACTS_DIR)).resolve()
    try:
        contract = contract_for(contracts, args.operator, args.feed)
    except ContractError as error:
        raise CliError(str(error)) from None
    if contract is None:
        raise CliError(f"no contract for operator {args.operator!r} feed {args.feed!r} in {contracts}")
    if not args.input.is_file():
        raise CliError(f"cannot read {args.input}")
    if args.delivery < 1 or 60 % args.window_minutes:
        raise CliError("--delivery must be 1 or more and --window-minutes must divide 60")
    try:
        if contract.kind == CELLS_KIND:
            if not (args.valid_from_column and args.timezone):
                raise CliError("cell lists need --valid-from-column and --timezone (a snapshot starts at local midnight)")
            drops = package_cells(args.input, contract, args.landing, valid_from_column=args.valid_from_column,
                                  valid_to_column=args.valid_to_column, local_timezone=args.timezone,
                                  window_minutes=args.window_minutes, delivery=args.delivery)
        else:
            if not args.key_id:
                raise CliError("event feeds need --key-id (the id of the HMAC key the export was pseudonymized with)")
            drops = package_events(args.input, contract, args.landing, key_id=args.key_id,
                                   window_minutes=args.window_minutes, delivery=args.delivery)
    except PackagingError as error:
        raise CliError(str(error)) from None
    rows = sum(drop.rows for drop in drops)
    first, last = drops[0].window_start, drops[-1].window_start
    print(f"packaged {rows:,} rows of {args.operator}/{args.feed} into {len(drops)} drop(s), windows "
          f"{first:%Y-%m-%dT%H:%MZ} .. {last:%Y-%m-%dT%H:%MZ}, in {args.landing / args.operator}")
    return 0
