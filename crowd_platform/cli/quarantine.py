"""`crowd-platform quarantine list | show DROP_ID | release DROP_ID | reject DROP_ID --reason`.

Release puts a quarantined drop back through validation (after a contract fix) by
materializing the ingestion assets for its window through Dagster, with the same
definitions the UI and sensor use. Reject records a final decision in drops and audit_log.
Output holds drop ids, rule names, counts and row numbers, never values. Every text that came
from a drop (operator folder, file names, reasons) is printed through ``escape_text``: a file
named with a newline or a terminal escape shows as ``\n`` / ``\x1b``, never raw.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

from crowd_platform.cli import CliError
from crowd_platform.common.settings import get_settings
from crowd_platform.common.text import escape_text as esc


def register(subparsers) -> None:
    parser = subparsers.add_parser("quarantine", help="Inspect, release or reject quarantined drops.",
                                   description="Inspect, release or reject quarantined drops.")
    commands = parser.add_subparsers(dest="quarantine_command", metavar="SUBCOMMAND")
    listing = commands.add_parser("list", help="Quarantined drops (newest first).", description="Quarantined drops (newest first).")
    listing.add_argument("--all", action="store_true", help="include released and rejected drops")
    listing.set_defaults(handler=_list)
    show = commands.add_parser("show", help="Report of one drop: reason, failed rules, counts, example row numbers.",
                               description="Report of one quarantined drop.")
    show.add_argument("drop_id")
    show.set_defaults(handler=_show)
    release = commands.add_parser("release", help="Re-run validation of a drop (after a contract fix) through Dagster.",
                                  description="Move the drop back to landing and materialize operator_drops + staged_events "
                                              "for its window through Dagster. It ends accepted or quarantined again.")
    release.add_argument("drop_id")
    release.set_defaults(handler=_release)
    reject = commands.add_parser("reject", help="Record a final rejection (drops + audit_log).", description="Record a final rejection.")
    reject.add_argument("drop_id")
    reject.add_argument("--reason", required=True, help="one line: why the drop is rejected")
    reject.set_defaults(handler=_reject)
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])


def _list(args: argparse.Namespace) -> int:
    from crowd_platform.common.warehouse import connect
    from crowd_platform.ingestion.quarantine import quarantined_drops

    with connect(get_settings().warehouse_path, read_only=True) as con:
        rows = quarantined_drops(con, include_history=args.all)
    for row in rows:
        window = row["window_start"].strftime("%Y-%m-%d %H:%M") if row["window_start"] else "-"
        print(f"{esc(row['drop_id'])}\t{esc(row['operator'] or '-')}\t{window}\t{esc(row['status'])}\t{esc(row['reason'] or '')}")
    print(f"{len(rows)} drop(s)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from crowd_platform.common.warehouse import connect
    from crowd_platform.ingestion.quarantine import drop_record, rule_results

    settings = get_settings()
    with connect(settings.warehouse_path, read_only=True) as con, _decision_errors():
        drop = drop_record(con, args.drop_id)
        results = rule_results(con, args.drop_id)
    print(f"drop      {esc(drop['drop_id'])}\noperator  {esc(drop['operator'])}\nfeed      {esc(drop['feed'])}\n"
          f"status    {esc(drop['status'])}")
    print(f"file      {esc(drop['file_name'])}\nsha256    {esc(drop['sha256'])}\nreason    {esc(drop['reason'] or '-')}")
    report = (settings.resolve(drop["quarantine_path"]) or Path("")) / "report.json"
    if drop["quarantine_path"] and report.is_file():
        print(f"report    {esc(report)}")
    for result in results:
        verdict = "pass" if result["passed"] else "FAIL"
        examples = f" rows {esc(result['example_rows'])}" if result["example_rows"] else ""
        print(f"  {verdict}  {esc(result['rule'])} [{esc(result['engine'])}] {esc(result['details'] or '')}{examples}")
    return 0


@contextmanager
def _decision_errors():
    from crowd_platform.ingestion.quarantine import QuarantineDecisionError

    try:
        yield
    except QuarantineDecisionError as error:
        raise CliError(esc(error)) from None


def _reject(args: argparse.Namespace) -> int:
    from crowd_platform.common.warehouse import connect
    from crowd_platform.ingestion.quarantine import reject_drop

    settings = get_settings()
    with connect(settings.warehouse_path) as con, _decision_errors():
        reject_drop(settings, con, args.drop_id, args.reason)
    print(f"{esc(args.drop_id)}: rejected (its data deleted with a certificate; the report stays until retention)")
    return 0


def _release(args: argparse.Namespace) -> int:
    from crowd_platform.common.warehouse import connect
    from crowd_platform.ingestion.quarantine import release_drop
    from crowd_platform.runner.orchestration import revalidate_drop

    settings = get_settings()
    with connect(settings.warehouse_path) as con, _decision_errors():
        drop, manifest_relpath = release_drop(settings, con, args.drop_id)
    print(f"{args.drop_id}: released, re-validating window {drop['window_start']:%Y-%m-%d %H:%M} through Dagster ...")
    try:
        status, reason = revalidate_drop(settings, drop, manifest_relpath)
    except RuntimeError as error:
        raise CliError(str(error)) from None
    print(f"{esc(args.drop_id)}: {esc(status)}" + (f" ({esc(reason)})" if reason else ""))
    return 0 if status == "accepted" else 1
