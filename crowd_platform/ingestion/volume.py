"""Volume and shape of a drop against its operator feed's own history.

A drop with 40 % of its usual rows whose manifest says so passes every contract rule, yet
scaled by 1 / market share it makes a district look emptied (or a neighbour look crowded). Each
validated events drop is profiled (rows, distinct subscribers, distinct cells) and compared with
the median of the last drops of the same operator, day type and local time of day. Below
``min_ratio`` of the usual on any measure the drop is flagged: with severity ``warning`` (the
default) it is accepted and its window counts as incomplete for alerts; with ``error`` it is
quarantined. Thresholds are the contract's ``volume_check`` custom property.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import duckdb

from crowd_platform.common.calendar import day_type, local_slot
from crowd_platform.common.contracts import Contract
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import insert_rows, read_sql
from crowd_platform.ingestion.manifest import Manifest
from crowd_platform.ingestion.rules import RuleResult

PROFILE_ENGINE = "profile"
MEASURES = ("rows", "subscribers", "cells")
DEFAULTS = {"min_ratio": 0.7, "history": 4, "min_history": 2, "severity": "warning"}


@dataclass(frozen=True)
class VolumeVerdict:
    profile: dict[str, Any]
    results: list[RuleResult]
    flag: str | None          # one line: which measure fell below what share of the usual
    blocking: bool


def volume_options(contract: Contract) -> dict[str, Any]:
    options = {**DEFAULTS, **(contract.custom.get("volume_check") or {})}
    if options["severity"] not in ("warning", "error"):
        raise ValueError(f"{contract.contract_id}: volume_check.severity must be warning or error")
    return options


def profile_drop(connection: duckdb.DuckDBPyConnection, settings: Settings, manifest: Manifest, parquet: Path,
                 drop_id: str) -> dict[str, Any]:
    """Counts of a staged events drop and its slot (day type and local time of day)."""
    path = str(parquet).replace("'", "''")
    rows, subscribers, cells = connection.execute(
        f"SELECT count(*), count(DISTINCT subscriber_key), count(DISTINCT cell_id) FROM read_parquet('{path}')").fetchone()
    density = settings.config.density
    local_date, time_of_day = local_slot(manifest.window_start, density.local_timezone)
    return {"drop_id": drop_id, "operator": manifest.operator, "feed": manifest.feed,
            "window_start": manifest.window_start, "day_type": day_type(local_date, density.holidays_country,
                                                                         density.extra_holidays),
            "time_of_day": time_of_day, "rows": rows, "subscribers": subscribers, "cells": cells}


def check_volume(connection: duckdb.DuckDBPyConnection, settings: Settings, contract: Contract, manifest: Manifest,
                 parquet: Path, drop_id: str) -> VolumeVerdict:
    options = volume_options(contract)
    profile = profile_drop(connection, settings, manifest, parquet, drop_id)
    history = connection.execute(read_sql("ingestion/drop_volume_history"), {
        "operator": profile["operator"], "feed": profile["feed"], "day_type": profile["day_type"],
        "time_of_day": profile["time_of_day"], "window_start": profile["window_start"],
        "history": int(options["history"])}).fetchall()
    results, short = [], []
    for index, measure in enumerate(MEASURES):
        usual = median(row[index] for row in history) if len(history) >= options["min_history"] else None
        ratio = profile[measure] / usual if usual else None
        passed = ratio is None or ratio >= options["min_ratio"]
        if not passed:
            short.append(f"{measure} {ratio:.0%} of usual")
        detail = (f"{profile[measure]} vs usual {usual:g} ({ratio:.0%}, minimum {options['min_ratio']:.0%}) over "
                  f"{len(history)} {profile['day_type']} drops" if usual else
                  f"no history yet ({len(history)} earlier {profile['day_type']} drops at this time of day)")
        results.append(RuleResult(f"volume_{measure}", PROFILE_ENGINE, passed, profile[measure], None, [], detail,
                                  evaluated=usual is not None))
    flag = f"volume below history: {', '.join(short)}" if short else None
    return VolumeVerdict(profile, results, flag, bool(flag) and options["severity"] == "error")


def record_profile(connection: duckdb.DuckDBPyConnection, profile: dict[str, Any], run_id: str | None) -> None:
    connection.execute("DELETE FROM drop_profiles WHERE drop_id = ?", [profile["drop_id"]])
    insert_rows(connection, "drop_profiles", {**profile, "run_id": run_id})
