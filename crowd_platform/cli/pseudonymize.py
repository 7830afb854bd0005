"""`crowd-platform pseudonymize`: the operator-side tool that turns subscriber ids into HMAC digests.

Runs at the operator, before a drop leaves it: every value of one column is normalised by the
identifier rule and replaced by HMAC-SHA256 under the key read from a file. Rules:

- ``msisdn`` (default): a mobile number of ``--msisdn-country`` (calling code, default 62,
  Indonesia) in any common notation ('+62 812-...', '0062 812...', '0812...', '62812...') becomes
  the international number without '+' ('62812...'); Nepal (977) also takes the national
  '98...' form. Other codes: international forms or trunk prefix 0.
- ``string``: any identifier, trimmed of surrounding white space, otherwise as is.

The key, and the values, are never printed: an unusable value is reported by row number.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from pathlib import Path

from crowd_platform.cli import CliError

PROGRESS_EVERY = 1_000_000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pseudonymize",
        help="operator-side: replace an MSISDN (or other id) column by HMAC-SHA256 digests under a key file",
        description="Replace every value of --column by the 64-hex HMAC-SHA256 of the normalised identifier "
                    "(by default an Indonesian MSISDN, normalised to 628...).",
    )
    parser.add_argument("--key-file", required=True, type=Path, help="file holding the key (raw bytes; hex if it is 64+ hex chars)")
    parser.add_argument("--input", required=True, type=Path, help="CSV with a header")
    parser.add_argument("--column", default="msisdn", help="column holding the MSISDN (default msisdn)")
    parser.add_argument("--output", required=True, type=Path, help="CSV to write (same columns)")
    parser.add_argument("--delimiter", default=",", help="field delimiter of input and output (default ,)")
    parser.add_argument("--id-rule", choices=("msisdn", "string"), default="msisdn",
                        help="msisdn (default): a mobile number, normalised to country code + national number; "
                             "string: any id, trimmed, used as is")
    parser.add_argument("--msisdn-country", default=None, metavar="CODE",
                        help="country calling code of the MSISDNs (default 62, Indonesia; e.g. 977 for Nepal)")
    parser.set_defaults(handler=handle)


def read_key(path: Path) -> bytes:
    """Key bytes: a hex string of 32+ bytes is decoded, anything else is used as is."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CliError(f"cannot read the key file: {error.strerror}") from None
    text = data.strip()
    try:
        if len(text) >= 64 and len(text) % 2 == 0:
            return bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        pass
    if len(text) < 16:
        raise CliError("the key file holds fewer than 16 bytes: too short for HMAC")
    return text


def identifier_rule(args: argparse.Namespace) -> tuple[Callable[[str], str], str]:
    """(normalise function, what a valid value is) for the chosen --id-rule."""
    from crowd_platform.simulator.keys import DEFAULT_MSISDN_COUNTRY, msisdn_rule, normalise_string_id

    if args.id_rule == "string":
        if args.msisdn_country is not None:
            raise CliError("--msisdn-country applies to --id-rule msisdn only")
        return normalise_string_id, "a non-empty identifier"
    try:
        rule = msisdn_rule(args.msisdn_country or DEFAULT_MSISDN_COUNTRY)
    except ValueError as error:
        raise CliError(f"--msisdn-country: {error}") from None
    return rule.normalise, f"a valid {rule.name} mobile number"


def handle(args: argparse.Namespace) -> int:
    from crowd_platform.simulator.keys import pseudonymize

    normalise, valid = identifier_rule(args)
    key = read_key(args.key_file)
    if len(args.delimiter) != 1:
        raise CliError("--delimiter must be one character")
    try:
        source = open(args.input, newline="", encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot read {args.input}: {error.strerror}") from None
    rows = 0
    temporary = args.output.with_name(f".{args.output.name}.tmp")
    with source, open(temporary, "w", newline="", encoding="utf-8") as target:
        reader = csv.DictReader(source, delimiter=args.delimiter)
        if not reader.fieldnames or args.column not in reader.fieldnames:
            temporary.unlink(missing_ok=True)
            raise CliError(f"column {args.column!r} not in the input header")
        writer = csv.DictWriter(target, fieldnames=reader.fieldnames, delimiter=args.delimiter)
        writer.writeheader()
        for row in reader:
            rows += 1
            try:
                row[args.column] = pseudonymize(key, normalise(row[args.column] or ""))
            except ValueError:
                temporary.unlink(missing_ok=True)
                # Row number only: the value itself may be a phone number.
                raise CliError(f"row {rows}: column {args.column!r} is not {valid}") from None
            writer.writerow(row)
            if rows % PROGRESS_EVERY == 0:
                print(f"  {rows:,} rows", file=sys.stderr)
    temporary.replace(args.output)
    print(f"pseudonymized {rows:,} rows of column {args.column!r} into {args.output}")
    return 0
