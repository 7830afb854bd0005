"""Freshness of the operators' feeds (docs/ingestion.md, "Freshness and status"): a silent
operator is late with its missing windows, quarantined drops are counted, the `drops_fresh`
check fails for a silent operator, and `crowd-platform status` exits 1 when one is late.

Drops rows are written straight into a real warehouse file: what is measured is the table, not
how drops got there."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from crowd_platform.cli import main
from crowd_platform.common.contracts import operator_contracts
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect, insert_rows
from crowd_platform.ingestion.assets import operator_drops
from crowd_platform.ingestion.checks import drops_fresh
from crowd_platform.ingestion.freshness import freshness_report

STEP = timedelta(minutes=15)
# Local day 2020-03-31 in Jakarta (UTC+7) starts at 2020-03-30T17:00Z; judged at 10:00 local.
DAY_START = datetime(2020, 3, 30, 17, 0, tzinfo=timezone.utc)
AS_OF = datetime(2020, 3, 31, 3, 0, tzinfo=timezone.utc)
# Windows up to 02:15 have been delivered on time by 03:00 (02:15 ends 02:30, due 03:00).
LAST_WINDOW = datetime(2020, 3, 31, 2, 15, tzinfo=timezone.utc)
SILENT_FROM = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)


def _utc(hour: int, minute: int, day: int = 31) -> datetime:
    return datetime(2020, 3, day, hour, minute, tzinfo=timezone.utc)


@pytest.fixture
def settings(tmp_path):
    settings = get_settings(tmp_path)
    settings.ensure_dirs()
    with connect(settings.warehouse_path):
        pass  # creates the schema
    return settings


def _operators(settings) -> list[str]:
    return sorted(operator_contracts(settings.contracts_dir, "events"))


def _drop(operator: str, window: datetime, status: str = "accepted", feed: str = "events", suffix: str = "") -> dict:
    return {"drop_id": f"{operator}_{feed}_{window:%Y%m%dT%H%MZ}{suffix}", "operator": operator, "feed": feed,
            "window_start": window, "window_end": window + STEP, "received_at": window + STEP + timedelta(minutes=4),
            "validated_at": window + STEP + timedelta(minutes=5), "status": status,
            "lake_path": f"lake/{operator}/{window:%H%M}.parquet" if status == "accepted" else None}


def _deliver(settings, silent: dict[str, datetime] | None = None, first: datetime = DAY_START - 4 * STEP,
             last: datetime = LAST_WINDOW, extra: list[dict] = ()) -> None:
    """Every operator delivers every window of [first, last], except from ``silent[operator]`` on."""
    silent = silent or {}
    rows, window = [], first
    while window <= last:
        rows += [_drop(operator, window) for operator in _operators(settings)
                 if operator not in silent or window < silent[operator]]
        window += STEP
    with connect(settings.warehouse_path) as con:
        insert_rows(con, "drops", rows + list(extra))


def _report(settings, as_of: datetime = AS_OF, **kwargs):
    with connect(settings.warehouse_path, read_only=True) as con:
        return freshness_report(con, settings, as_of, **kwargs)


def test_silent_operator_is_late_with_its_missing_windows(settings):
    _deliver(settings, silent={"telkomsel": SILENT_FROM})
    report = _report(settings)
    by_operator = {operator.operator: operator for operator in report.operators}
    assert sorted(by_operator) == _operators(settings)
    assert report.late_operators == ["telkomsel"] and not report.fresh
    telkomsel = by_operator["telkomsel"]
    assert telkomsel.last_window_start == SILENT_FROM - STEP
    assert telkomsel.last_received_at == SILENT_FROM + timedelta(minutes=4)
    assert telkomsel.lag == timedelta(hours=2)  # 03:00 - end of the 00:45 window
    # Due by 03:00 (end + 30 min latency before it): 01:00 .. 02:00; 02:15 is due only at 03:00.
    assert telkomsel.missing_today == tuple(SILENT_FROM + i * STEP for i in range(5))
    assert telkomsel.overdue_windows == 5 and telkomsel.severe
    for operator in set(by_operator) - {"telkomsel"}:
        assert not by_operator[operator].late and by_operator[operator].missing_today == ()
        assert by_operator[operator].lag == timedelta(minutes=30)
    document = report.as_dict()
    assert json.loads(json.dumps(document)) == document
    assert document["local_day"] == "2020-03-31" and document["late_operators"] == ["telkomsel"]


def test_on_time_operators_are_fresh_and_later_windows_are_ignored_as_of_the_past(settings):
    _deliver(settings)
    assert _report(settings).fresh
    # As of 01:10 the drops of later windows do not exist yet: still fresh, lag from the end of 00:45.
    earlier = _report(settings, as_of=_utc(1, 10))
    assert earlier.fresh and {operator.lag for operator in earlier.operators} == {timedelta(minutes=10)}
    # An hour more of silence from every operator: 02:30, 02:45 and 03:00 are overdue at 04:00.
    later = _report(settings, as_of=AS_OF + timedelta(hours=1))
    assert later.late_operators == _operators(settings)
    assert {operator.overdue_windows for operator in later.operators} == {3}
    assert not any(operator.severe for operator in later.operators)


def test_staged_drop_counts_as_delivered_only_when_asked(settings):
    """Inside a run the check sees drops validated in staging, not yet published."""
    _deliver(settings, silent={"xl": SILENT_FROM},
             extra=[_drop("xl", SILENT_FROM + i * STEP, status="received") for i in range(6)])
    assert _report(settings).late_operators == ["xl"]
    assert _report(settings, include_staged=True).fresh


def test_quarantined_drops_are_counted_per_local_day(settings):
    quarantined = [
        _drop("indosat", _utc(1, 0), status="quarantined", suffix="_q1"),
        _drop("indosat", _utc(2, 0), status="quarantined", suffix="_q2"),
        _drop("indosat", _utc(0, 30), status="rejected", suffix="_q3"),
        _drop("indosat", _utc(16, 45, day=30), status="quarantined", suffix="_q4"),  # 23:45 local, the day before
        _drop("xl", _utc(1, 0), status="quarantined", feed="cells", suffix="_q5"),
    ]
    _deliver(settings, extra=quarantined)
    by_operator = {operator.operator: operator for operator in _report(settings).operators}
    assert by_operator["indosat"].quarantined_today == 3
    assert by_operator["xl"].quarantined_today == 1
    assert by_operator["telkomsel"].quarantined_today == 0


def test_quarantined_window_without_accepted_drop_is_missing_but_not_late(settings):
    _deliver(settings, silent={"tri": SILENT_FROM},
             extra=[_drop("tri", SILENT_FROM, status="quarantined", suffix="_q")]
             + [_drop("tri", SILENT_FROM + i * STEP) for i in range(1, 6)])
    (tri,) = [operator for operator in _report(settings).operators if operator.operator == "tri"]
    assert tri.missing_today == (SILENT_FROM,) and tri.quarantined_today == 1 and not tri.late


def test_recent_windows_come_from_window_completeness(settings):
    _deliver(settings)
    rows = [{"window_start": _utc(0, 0) + i * STEP, "expected_operators": ["indosat", "xl"],
             "arrived_operators": ["indosat"] if i % 2 else ["indosat", "xl"], "missing_operators": ["xl"] if i % 2 else [],
             "expected_share": 0.5, "arrived_share": 0.2 if i % 2 else 0.5, "completeness": 0.4 if i % 2 else 1.0,
             "complete": not i % 2, "latency_deadline": None, "run_id": None} for i in range(14)]  # 00:00 .. 03:15
    rows[-3]["flagged_operators"] = ["xl"]  # 02:45: xl arrived well below its usual volume
    with connect(settings.warehouse_path) as con:
        insert_rows(con, "window_completeness", [{"flagged_operators": None, **row} for row in rows])
    windows = _report(settings).windows
    assert [window.window_start for window in windows] == [_utc(2, 45) - i * STEP for i in range(8)]
    assert windows[0].missing == ("xl",) and windows[0].completeness == pytest.approx(0.4) and not windows[0].complete
    assert windows[0].flagged == ("xl",) and windows[1].flagged == ()
    assert windows[1].complete and windows[1].missing == ()


def _run_check(settings) -> dg.AssetCheckEvaluation:
    with dg.instance_for_test() as instance:
        result = dg.materialize([operator_drops, drops_fresh], selection=dg.AssetSelection.checks(drops_fresh),
                                resources={"crowd": CrowdPlatform(home=str(settings.home))}, instance=instance)
        assert result.success  # a failed non-blocking check does not fail the run
        (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "drops_fresh"
    return evaluation


@pytest.mark.parametrize(("silent_from", "severity"), [
    (SILENT_FROM, dg.AssetCheckSeverity.WARN),                 # 3 windows overdue at 02:30
    (SILENT_FROM - 4 * STEP, dg.AssetCheckSeverity.ERROR),     # 7 windows overdue
])
def test_drops_fresh_check_fails_for_a_silent_operator(settings, silent_from, severity):
    _deliver(settings, silent={"telkomsel": silent_from})
    evaluation = _run_check(settings)
    assert not evaluation.passed and evaluation.severity == severity
    metadata = evaluation.metadata
    # Judged as of the newest delivered window (02:15, ending 02:30), not the wall clock of 2020 + years.
    assert metadata["as_of_newest_window_end"].value == "2020-03-31T02:30:00+00:00"
    assert metadata["late_operators"].value == ["telkomsel"]
    assert metadata["lag_minutes_indosat"].value == 0
    assert metadata["lag_minutes_telkomsel"].value == (LAST_WINDOW + STEP - silent_from).total_seconds() / 60
    assert "telkomsel" in metadata["freshness"].value


def test_drops_fresh_check_passes_when_every_operator_delivers(settings):
    _deliver(settings)
    evaluation = _run_check(settings)
    assert evaluation.passed
    assert evaluation.metadata["operators"].value == len(_operators(settings))
    assert evaluation.metadata["late_operators"].value == []


def test_drops_fresh_check_passes_before_any_drop(settings):
    assert _run_check(settings).passed


def test_status_command_exits_1_for_a_late_operator(settings, monkeypatch, capsys):
    monkeypatch.setenv("CROWD_HOME", str(settings.home))  # main() sets it from --home; restored after the test
    _deliver(settings, silent={"telkomsel": SILENT_FROM},
             extra=[_drop("indosat", _utc(1, 0), status="quarantined", suffix="_q")])
    assert main(["status", "--home", str(settings.home), "--as-of", "2020-03-31T03:00:00Z"]) == 1
    out = capsys.readouterr().out
    (telkomsel,) = [line for line in out.splitlines() if line.startswith("telkomsel ")]
    assert "2020-03-31 00:45" in telkomsel and "2h00m" in telkomsel and "LATE (5 windows overdue)" in telkomsel
    (indosat,) = [line for line in out.splitlines() if line.startswith("indosat ")]
    assert indosat.split()[-2:] == ["1", "fresh"]  # one quarantined today, fresh
    assert "telkomsel missing today: 01:00, 01:15, 01:30, 01:45, 02:00" in out
    assert out.rstrip().endswith("late: telkomsel")

    assert main(["status", "--home", str(settings.home), "--as-of", "2020-03-31T03:00:00Z", "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    (row,) = [operator for operator in document["operators"] if operator["operator"] == "telkomsel"]
    assert row["missing_windows_today"] == 5 and row["lag_minutes"] == 120 and row["late"]


def test_status_command_exits_0_when_fresh_and_2_on_bad_input(settings, monkeypatch, capsys):
    monkeypatch.setenv("CROWD_HOME", str(settings.home))
    _deliver(settings)
    assert main(["status", "--home", str(settings.home), "--as-of", "2020-03-31T03:00:00Z"]) == 0
    assert "all operators fresh" in capsys.readouterr().out
    assert main(["status", "--home", str(settings.home), "--as-of", "yesterday"]) == 2
    assert "--as-of is not an ISO-8601 timestamp" in capsys.readouterr().err
    assert main(["status", "--home", str(settings.home / "nowhere")]) == 2
