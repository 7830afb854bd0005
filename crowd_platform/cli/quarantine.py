"""`crowd-platform quarantine list | show DROP_ID | release DROP_ID | reject DROP_ID --reason`.

Release puts a quarantined drop back through validation (after a contract fix) by
materializing the ingestion assets for its window through Dagster, with the same
definitions the UI and sensor use. Reject records a final decision in drops and audit_log.
Output holds drop ids, rule names, counts and row numbers, never values.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from crowd_platform.cli import CliError
from crowd_platform.common import storage
from crowd_platform.common.settings import get_settings


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


def _drop(con, drop_id: str) -> dict:
    from crowd_platform.common.warehouse import fetch_dicts

    rows = fetch_dicts(con, "SELECT * FROM drops WHERE drop_id = ?", [drop_id])
    if not rows:
        raise CliError(f"no drop {drop_id}")
    return rows[0]


def _list(args: argparse.Namespace) -> int:
    from crowd_platform.common.warehouse import connect, fetch_dicts

    settings = get_settings()
    statuses = ("quarantined", "released", "rejected") if args.all else ("quarantined",)
    with connect(settings.warehouse_path, read_only=True) as con:
        rows = fetch_dicts(con, f"SELECT drop_id, operator, window_start, status, reason FROM drops WHERE status IN ({', '.join('?' * len(statuses))}) "
                                "ORDER BY received_at DESC", list(statuses))
    for row in rows:
        window = row["window_start"].strftime("%Y-%m-%d %H:%M") if row["window_start"] else "-"
        print(f"{row['drop_id']}\t{row['operator'] or '-'}\t{window}\t{row['status']}\t{row['reason'] or ''}")
    print(f"{len(rows)} drop(s)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from crowd_platform.common.warehouse import connect, fetch_dicts

    settings = get_settings()
    with connect(settings.warehouse_path, read_only=True) as con:
        drop = _drop(con, args.drop_id)
        results = fetch_dicts(con, "SELECT rule, engine, passed, unexpected_count, example_rows, details FROM check_results "
                                   "WHERE drop_id = ? ORDER BY passed, rule, engine", [args.drop_id])
    print(f"drop      {drop['drop_id']}\noperator  {drop['operator']}\nfeed      {drop['feed']}\nstatus    {drop['status']}")
    print(f"file      {drop['file_name']}\nsha256    {drop['sha256']}\nreason    {drop['reason'] or '-'}")
    report = (settings.resolve(drop["quarantine_path"]) or Path("")) / "report.json"
    if drop["quarantine_path"] and report.is_file():
        print(f"report    {report}")
    for result in results:
        verdict = "pass" if result["passed"] else "FAIL"
        examples = f" rows {result['example_rows']}" if result["example_rows"] else ""
        print(f"  {verdict}  {result['rule']} [{result['engine']}] {result['details'] or ''}{examples}")
    return 0


def _reject(args: argparse.Namespace) -> int:
    from crowd_platform.common import audit
    from crowd_platform.common.warehouse import connect

    reason = " ".join(args.reason.split())
    if not reason:
        raise CliError("--reason must not be empty")
    settings = get_settings()
    with connect(settings.warehouse_path) as con:
        drop = _drop(con, args.drop_id)
        if drop["status"] != "quarantined":
            raise CliError(f"drop {args.drop_id} is {drop['status']}, only quarantined drops can be rejected")
        con.execute("BEGIN TRANSACTION")
        con.execute("UPDATE drops SET status = 'rejected', reason = ? WHERE drop_id = ?", [f"rejected: {reason}"[:300], args.drop_id])
        audit.append(con, "drop_rejected", purpose=settings.purpose, object_kind="drop", object_id=args.drop_id,
                     details={"reason": reason[:300], "previous_reason": drop["reason"]})
        con.execute("COMMIT")
    print(f"{args.drop_id}: rejected (kept in quarantine until retention)")
    return 0


def _release(args: argparse.Namespace) -> int:
    from crowd_platform.common import audit
    from crowd_platform.common.warehouse import connect

    settings = get_settings()
    with connect(settings.warehouse_path) as con:
        drop = _drop(con, args.drop_id)
        if drop["status"] != "quarantined":
            raise CliError(f"drop {args.drop_id} is {drop['status']}, only quarantined drops can be released")
        folder = settings.resolve(drop["quarantine_path"]) or Path("")
        data, manifest = folder / (drop["file_name"] or ""), folder / (drop["manifest_name"] or "")
        if not drop["window_start"] or not drop["manifest_name"] or not data.is_file() or not manifest.is_file():
            raise CliError(f"drop {args.drop_id} has no data file and manifest in quarantine (unroutable drops cannot be released; re-drop instead)")
        landing = settings.landing / drop["operator"]
        # Data first, manifest last: the landing protocol's definition of a complete drop.
        if storage.is_local(landing):
            landing.mkdir(parents=True, exist_ok=True)
            shutil.copy2(data, landing / data.name)
            shutil.copy2(manifest, landing / manifest.name)
        else:
            storage.copy_file(data, landing / data.name)
            storage.copy_file(manifest, landing / manifest.name)
        con.execute("BEGIN TRANSACTION")
        con.execute("UPDATE drops SET status = 'released', reason = NULL, quarantine_path = NULL WHERE drop_id = ?", [args.drop_id])
        audit.append(con, "drop_released", purpose=settings.purpose, object_kind="drop", object_id=args.drop_id,
                     details={"previous_reason": drop["reason"]})
        con.execute("COMMIT")
    # The bytes are back in landing; the quarantine copy goes, its report stays as history.
    storage.remove(data)
    storage.remove(manifest)
    if (folder / "report.json").exists():
        storage.move(folder / "report.json", folder / "report.released.json")
    print(f"{args.drop_id}: released, re-validating window {drop['window_start']:%Y-%m-%d %H:%M} through Dagster ...")
    status, reason = rerun_window(settings, drop, f"{drop['operator']}/{manifest.name}")
    print(f"{args.drop_id}: {status}" + (f" ({reason})" if reason else ""))
    return 0 if status == "accepted" else 1


def rerun_window(settings, drop: dict, manifest_relpath: str) -> tuple[str, str | None]:
    """Materialize operator_drops + staged_events for the drop's window with the code location's definitions."""
    import dagster as dg

    from crowd_platform.definitions import defs
    from crowd_platform.runner.instance import get_instance
    from crowd_platform.runner.orchestration import run_tags
    from crowd_platform.common.partitions import window_key
    from crowd_platform.common.warehouse import connect

    # The definitions' own "crowd" resource (CROWD_HOME) is bound to these assets already.
    assets = [defs.resolve_assets_def("operator_drops"), defs.resolve_assets_def("staged_events")]
    result = dg.materialize(
        assets,
        instance=get_instance(settings),
        partition_key=window_key(drop["window_start"]),
        run_config={"ops": {"operator_drops": {"config": {"manifests": [manifest_relpath]}}}},
        tags=run_tags(settings.purpose, trigger="quarantine-release"),
        raise_on_error=False,
    )
    if not result.success:
        raise CliError(f"release run {result.run_id} failed; see the Dagster UI")
    with connect(settings.warehouse_path, read_only=True) as con:
        row = con.execute("SELECT status, reason FROM drops WHERE drop_id = ?", [drop["drop_id"]]).fetchone()
    return (row[0], row[1]) if row else ("unknown", None)
