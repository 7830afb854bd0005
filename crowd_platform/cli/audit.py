"""`crowd-platform audit trace ALERT_ID | verify | deletions | report --from --to`: the auditor's commands.

Everything here reads the warehouse read-only, except `report`, which only writes an HTML file,
and `verify --checkpoint`, which seals the closed API audit files into the audit log, exports a
witness checkpoint and records it in the audit log.
"""

from __future__ import annotations

import argparse
import json
from datetime import date

from crowd_platform.cli import CliError


def _settings():
    from crowd_platform.common.settings import get_settings

    settings = get_settings()
    if not settings.warehouse_path.exists():
        raise CliError(f"no warehouse at {settings.warehouse_path} (set CROWD_HOME)")
    return settings


def _trace(args: argparse.Namespace) -> int:
    from crowd_platform.governance.lineage import TraceError, format_trace, trace, trace_json
    from crowd_platform.common.warehouse import connect

    settings = _settings()
    with connect(settings.warehouse_path, read_only=True) as connection:
        try:
            result = trace(connection, args.alert_id)
        except TraceError as error:
            raise CliError(str(error)) from None
    print(trace_json(result) if args.json else format_trace(result))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from crowd_platform.governance.api_audit import seal_closed_files
    from crowd_platform.governance.audit_chain import (record_checkpoint, verify_chain, witness_warnings,
                                                       with_sealed_files)
    from crowd_platform.common.warehouse import connect

    settings = _settings()
    purpose = args.purpose or settings.purpose
    with connect(settings.warehouse_path, read_only=not args.checkpoint) as connection:
        # Seal first, so the checkpoint vouches for the seal records too.
        sealed = seal_closed_files(connection, settings.home, purpose=purpose, actor=args.actor) if args.checkpoint else None
        chain = verify_chain(connection, settings.witness)
        result = with_sealed_files(chain, connection, settings.home)
        result = replace(result, warnings=result.warnings + witness_warnings(settings.witness, settings.home))
        print(result.summary())
        if sealed is not None and (sealed.sealed or sealed.unreadable):
            print(f"API audit files sealed: {len(sealed.sealed)}"
                  + "".join(f"; not readable, left unsealed: {name}" for name in sealed.unreadable))
        if chain.ok and args.checkpoint:
            # The witness vouches for the chain even when a sealed file fails: its seal is the evidence.
            checkpoint = record_checkpoint(connection, settings.witness, chain, purpose=purpose, actor=args.actor)
            print(f"checkpoint written: {settings.witness / (checkpoint['date'] + '.json')}")
    return 0 if result.ok else 1


def _deletions(args: argparse.Namespace) -> int:
    from crowd_platform.common.warehouse import connect
    from crowd_platform.governance.retention.verify import deletion_certificates

    settings = _settings()
    with connect(settings.warehouse_path, read_only=True) as connection:
        rows = deletion_certificates(connection, object_kind=args.kind, object_id=args.object_id)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    for row in rows:
        print(f"{row['certificate_id']}  {row['deleted_at']:%Y-%m-%dT%H:%M:%SZ}  {row['object_kind']:<15} {row['object_id']}"
              f"  rows={row['rows'] if row['rows'] is not None else '-'} bytes={row['bytes'] if row['bytes'] is not None else '-'}"
              f"  sha256={row['content_sha256'] or '-'}\n    policy {row['policy']} [{row['retention_period']}]"
              f"  method {row['method']}  -> {row['verification']}  (actor {row['actor']}, run {row['run_id'] or '-'})")
    print(f"{len(rows)} certificate(s)")
    return 0


def _parse_day(value: str, flag: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CliError(f"{flag} must be a date YYYY-MM-DD, got {value!r}") from None


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from crowd_platform.governance.report import write_report
    from crowd_platform.common.warehouse import connect

    settings = _settings()
    start, end = _parse_day(args.date_from, "--from"), _parse_day(args.date_to, "--to")
    if end < start:
        raise CliError("--to is before --from")
    print(f"building audit report {start} .. {end}")
    with connect(settings.warehouse_path, read_only=True) as connection:
        out = write_report(connection, settings, start, end, Path(args.out) if args.out else None)
    print(f"report written: {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("audit", help="auditor commands: trace, verify, deletions, report",
                                   description="Follow an alert to its drops and their deletion certificates, verify the "
                                               "hash-chained audit log, list deletion certificates, export an HTML report.")
    commands = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])

    trace = commands.add_parser("trace", help="lineage of one alert back to drops, contracts, code, runs, certificates")
    trace.add_argument("alert_id")
    trace.add_argument("--json", action="store_true", help="machine-readable output")
    trace.set_defaults(handler=_trace)

    verify = commands.add_parser("verify", help="verify the hash chain, every witness checkpoint and every sealed API audit "
                                                       "file; exit 1 on failure (exit 0 with 'OK (unwitnessed tail)' for "
                                                       "records after the newest checkpoint)")
    verify.add_argument("--checkpoint", action="store_true",
                        help="first seal the closed API audit files, then export today's witness checkpoint (writes)")
    verify.add_argument("--purpose", help="purpose recorded with the checkpoint (default: settings emergency.purpose)")
    verify.add_argument("--actor", help="who runs this (default: $CROWD_ACTOR or the OS user)")
    verify.set_defaults(handler=_verify)

    deletions = commands.add_parser("deletions", help="list deletion certificates")
    deletions.add_argument("--json", action="store_true", help="machine-readable output")
    deletions.add_argument("--kind", help="only this object kind (raw_drop, lake_partition, quarantine, warehouse_rows, ...)")
    deletions.add_argument("--object-id", help="only this object (a drop_id for drop kinds)")
    deletions.set_defaults(handler=_deletions)

    report = commands.add_parser("report", help="self-contained HTML audit report for a date range (k-anonymised)")
    report.add_argument("--from", dest="date_from", required=True, help="first day, YYYY-MM-DD (UTC)")
    report.add_argument("--to", dest="date_to", required=True, help="last day, YYYY-MM-DD (UTC)")
    report.add_argument("--out", help="output file (default: CROWD_HOME/reports/audit_report_FROM_TO.html)")
    report.set_defaults(handler=_report)
