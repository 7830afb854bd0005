"""A third party's data, a new operator, a new country, by configuration and contracts alone.

FlowKit's public one-day CDR sample (Nepal, calls and SMS exported separately, a cell table
with a wrong header and versions, naive local times, opaque cell ids, random subscriber ids) is
onboarded with deployments/nepal_flowkit/ and the operator-side tools, processed by
`crowd-platform run`, and every count is checked against a recomputation written here from
FlowKit's original files, with FlowKit's own subscriber ids and site ids, in Polars: no platform
code computes the expected values.
"""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
import polars as pl
import pytest

from crowd_platform_tests.support.flowkit import CELLS, EVENT_FEEDS, FLOWKIT, LOCAL_TIMEZONE, onboard_flowkit

pytestmark = [pytest.mark.xdist_group("flowkit"),
              pytest.mark.skipif(not FLOWKIT.is_dir(), reason="../shared/data/peer/flowkit is not present")]

K = 15  # deployments/nepal_flowkit/platform.yaml privacy.k_anonymity
FIRST_WINDOW = datetime(2015, 12, 31, 18, 15, tzinfo=timezone.utc)  # local midnight of 2016-01-01 (UTC+05:45)
NEW_VERSIONS = datetime(2016, 1, 5, 18, 15, tzinfo=timezone.utc)    # local midnight of 2016-01-06


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory):
    return onboard_flowkit(tmp_path_factory.mktemp("flowkit"))


@pytest.fixture(scope="module")
def warehouse(deployment):
    connection = duckdb.connect(str(deployment.warehouse), read_only=True)
    yield connection
    connection.close()


# ---------------------------------------------------------------- the independent side
def flowkit_events() -> pl.DataFrame:
    """Both feeds as FlowKit wrote them: subscriber, cell, UTC time and 15-minute UTC window."""
    frames = []
    for feed, source in EVENT_FEEDS.items():
        raw = pl.read_csv(FLOWKIT / source, infer_schema=False)
        time_column = "start_time" if feed == "calls" else "datetime"
        frames.append(raw.select(
            pl.col("msisdn").alias("subscriber"),
            pl.col("location_id").alias("cell_id"),
            pl.col(time_column).str.to_datetime("%Y-%m-%d %H:%M:%S").dt.replace_time_zone(LOCAL_TIMEZONE)
            .dt.convert_time_zone("UTC").alias("event_time"),
        ))
    events = pl.concat(frames)
    return events.with_columns(pl.col("event_time").dt.truncate("15m").alias("window_start"))


def flowkit_cells_on_the_day() -> pl.DataFrame:
    """Cell -> FlowKit's own site id and position (version in service on 2016-01-01; FlowKit's
    header is wrong: `longitude` holds the latitude)."""
    cells = pl.read_csv(FLOWKIT / CELLS, infer_schema=False)
    return cells.filter(pl.col("date_of_first_service") <= "2016-01-01").filter(
        pl.col("date_of_last_service").is_null() | (pl.col("date_of_last_service") >= "2016-01-01")
    ).select(pl.col("id").alias("cell_id"), "site_id", pl.col("latitude").cast(pl.Float64).alias("lon"),
             pl.col("longitude").cast(pl.Float64).alias("lat"))


def expected_last_presence(events: pl.DataFrame) -> pl.DataFrame:
    """FlowKit-style `last` location per subscriber and window (ties: the larger cell id), counted per cell."""
    last = events.sort(["subscriber", "window_start", "event_time", "cell_id"]).group_by(
        ["subscriber", "window_start"]).last()
    return last.group_by(["window_start", "cell_id"]).agg(pl.len().alias("subscribers"))


def query(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None) -> pl.DataFrame:
    """Rows as a Polars frame, times in UTC."""
    frame = connection.cursor().sql(sql, params=parameters).pl()
    return frame.with_columns(pl.col(pl.Datetime(time_zone="*")).dt.convert_time_zone("UTC"))


# ---------------------------------------------------------------- tests
def test_every_drop_is_accepted_and_nothing_is_quarantined(deployment, warehouse):
    counts = dict(((feed, status), n) for feed, status, n in warehouse.execute(
        "SELECT feed, status, count(*) FROM drops GROUP BY ALL").fetchall())
    # 96 windows of the local day per event feed, two cell-list versions (2016-01-01 and 2016-01-06).
    assert counts == {("calls", "accepted"): 96, ("sms", "accepted"): 96, ("cells", "accepted"): 2}
    rows = dict(warehouse.execute("SELECT feed, sum(row_count) FROM drops GROUP BY feed").fetchall())
    assert rows["calls"] == 1252 and rows["sms"] == 1246
    assert "96 drop(s)" in deployment.outputs["calls"] and "2 drop(s)" in deployment.outputs["cells"]


def test_registry_reads_the_mislabelled_columns_and_versions(warehouse):
    registry = query(warehouse,
        "SELECT cell_id, lon, lat, valid_from, valid_to FROM bts_registry ORDER BY cell_id, valid_from")
    assert warehouse.execute("SELECT count(*) FROM bts_registry_rejects").fetchone()[0] == 0
    expected = flowkit_cells_on_the_day()
    first = registry.filter(pl.col("valid_from") == FIRST_WINDOW).join(expected, on="cell_id", suffix="_flowkit")
    assert first.height == 55 == expected.height
    assert (first["lon"] - first["lon_flowkit"]).abs().max() < 1e-6   # longitudes 80-88 E: the swap was read right
    assert (first["lat"] - first["lat_flowkit"]).abs().max() < 1e-6
    moved = registry.filter(pl.col("valid_from") == NEW_VERSIONS)
    assert moved.height == 7  # FlowKit's version-1 rows from 2016-01-06, each moved far more than 50 m
    ended = registry.filter(pl.col("cell_id").is_in(moved["cell_id"].to_list()) & (pl.col("valid_from") == FIRST_WINDOW))
    assert ended["valid_to"].to_list() == [NEW_VERSIONS] * 7


def test_presence_per_cell_and_window_equals_the_recomputation(warehouse):
    platform = query(warehouse,
        "SELECT window_start, place_id AS cell_id, subscribers FROM bts_presence WHERE place_level = 'cell'")
    expected = expected_last_presence(flowkit_events())
    joined = expected.join(platform, on=["window_start", "cell_id"], how="full", suffix="_platform", coalesce=True)
    differing = joined.filter(pl.col("subscribers").fill_null(0) != pl.col("subscribers_platform").fill_null(0))
    assert differing.height == 0, f"{differing.height} (window, cell) counts differ"
    assert expected["subscribers"].sum() == platform["subscribers"].sum()


def test_sites_are_flowkits_sites_and_their_counts_agree(warehouse):
    cells = flowkit_cells_on_the_day()
    # The platform derives sites from positions; FlowKit names them. Same grouping, one to one.
    membership = query(warehouse,
        "SELECT cell_id, site_id AS platform_site FROM bts_registry WHERE valid_from = ?", [FIRST_WINDOW])
    pairs = cells.join(membership, on="cell_id").select("site_id", "platform_site").unique()
    assert pairs.height == cells["site_id"].n_unique() == pairs["platform_site"].n_unique() == 30
    events = flowkit_events().join(cells.select("cell_id", "site_id"), on="cell_id")
    last = events.sort(["subscriber", "window_start", "event_time", "cell_id"]).group_by(["subscriber", "window_start"]).last()
    expected = last.group_by(["window_start", "site_id"]).agg(pl.len().alias("subscribers"))
    platform = query(warehouse,
        "SELECT window_start, place_id AS platform_site, subscribers FROM bts_presence WHERE place_level = 'site'")
    platform = platform.join(pairs, on="platform_site").drop("platform_site")
    joined = expected.join(platform, on=["window_start", "site_id"], how="full", suffix="_platform", coalesce=True)
    assert joined.filter(pl.col("subscribers").fill_null(0) != pl.col("subscribers_platform").fill_null(0)).height == 0


def test_daily_presence_is_per_local_day_and_equals_the_recomputation(warehouse):
    """Every event is on local 2016-01-01 (UTC 2015-12-31 18:15 to 2016-01-01 18:15): one local day.
    Per district: sum over subscribers of 1 - prod(1 - w(site, district)) over the sites they were
    seen at, with the geography's published weights (bts_district_weights, checked elsewhere)."""
    days = warehouse.execute("SELECT DISTINCT day FROM district_presence_daily").fetchall()
    assert [str(day) for (day,) in days] == ["2016-01-01"]
    districts = query(warehouse, "SELECT district_code, level, parent_code FROM districts")
    zone_of = dict(districts.filter(pl.col("level") == "district").select("district_code", "parent_code").iter_rows())
    region_of = dict(districts.filter(pl.col("level") == "zone").select("district_code", "parent_code").iter_rows())
    finest = query(warehouse,
        "SELECT site_id AS platform_site, district_code, weight FROM bts_district_weights WHERE scope = 'flowkit'")
    # Each finest district, its zone and its region (the configured parent columns).
    ancestry = pl.concat([
        finest.with_columns(pl.lit("district").alias("level")),
        finest.with_columns(pl.col("district_code").replace_strict(zone_of), pl.lit("zone").alias("level")),
        finest.with_columns(pl.col("district_code").replace_strict(zone_of).replace_strict(region_of),
                            pl.lit("region").alias("level")),
    ])
    weights = ancestry.group_by(["platform_site", "level", "district_code"]).agg(
        pl.col("weight").sum().clip(upper_bound=1.0))
    membership = query(warehouse,
        "SELECT cell_id, site_id AS platform_site FROM bts_registry WHERE valid_from = ?", [FIRST_WINDOW])
    visits = flowkit_events().join(membership, on="cell_id").select("subscriber", "platform_site").unique()
    assert visits["subscriber"].n_unique() == 498  # every subscriber of the day, calls and SMS together
    expected = (visits.join(weights, on="platform_site")
                .group_by(["subscriber", "level", "district_code"])
                .agg((1 - (1 - pl.col("weight")).product()).alias("probability"))
                .group_by(["level", "district_code"]).agg(pl.col("probability").sum().alias("subscribers")))
    platform = query(warehouse, "SELECT level, district_code, subscribers FROM district_presence_daily")
    joined = expected.join(platform, on=["level", "district_code"], how="full", suffix="_platform", coalesce=True)
    gap = (joined["subscribers"].fill_null(0) - joined["subscribers_platform"].fill_null(0)).abs().max()
    assert gap < 1e-6 and joined.height == platform.height


def test_nothing_personal_beyond_the_contract_is_stored(deployment, warehouse):
    """The counterpart, call id, TAC, direction and duration are read, never stored; no FlowKit
    subscriber id (pseudonymized at the operator) is anywhere under the platform's home."""
    lake_files = [str(deployment.home / path) for (path,) in warehouse.execute(
        "SELECT lake_path FROM drops WHERE feed IN ('calls', 'sms')").fetchall()]
    columns = {tuple(sorted(row[0] for row in warehouse.execute(
        "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = false)", [path]).fetchall())) for path in lake_files}
    assert columns == {("cell_id", "event_time", "event_type", "subscriber_key")}
    event_types = warehouse.execute(
        "SELECT DISTINCT event_type FROM read_parquet(?, hive_partitioning = false) ORDER BY 1", [lake_files]).fetchall()
    assert event_types == [("call",), ("sms",)]
    raw_ids = set(pl.read_csv(FLOWKIT / EVENT_FEEDS["calls"], infer_schema=False)["msisdn"].head(50).to_list())
    found = []
    for path in deployment.home.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            data = path.read_bytes()
            found.extend(path.name for raw_id in raw_ids if raw_id.encode() in data)
    assert not found, f"raw FlowKit ids in {sorted(set(found))[:5]}"


def test_published_density_never_shows_k_or_less(warehouse):
    small = warehouse.execute(
        "SELECT count(*) FROM district_density_published WHERE people_estimate BETWEEN 1 AND ?", [K]).fetchone()[0]
    shown = warehouse.execute(
        "SELECT count(*) FROM district_density_published WHERE NOT suppressed").fetchone()[0]
    windows = warehouse.execute("SELECT count(DISTINCT window_start) FROM district_density_published").fetchone()[0]
    assert small == 0 and windows == 96
    # ~26 subscribers per window over 75 districts: the regions alone can be shown, and only some.
    assert 0 < shown < 96 * 5


# ---------------------------------------------------------------- mobility indicators (issue 16)
MORNING, EVENING = (6, 10), (16, 20)  # indicators.morning_hours / evening_hours defaults, local hours


def located_events(warehouse) -> pl.DataFrame:
    """FlowKit's events, each in its site's largest-weight finest district (ties: the larger code;
    docs/indicators.md), with the local hour of its window."""
    weights = query(warehouse, "SELECT site_id AS platform_site, district_code, weight FROM bts_district_weights "
                               "WHERE scope = 'flowkit' AND weight > 0")
    site_district = weights.sort(["platform_site", "weight", "district_code"]).group_by("platform_site").last()
    membership = query(warehouse, "SELECT cell_id, site_id AS platform_site FROM bts_registry WHERE valid_from = ?",
                       [FIRST_WINDOW])
    events = flowkit_events().join(membership, on="cell_id").join(site_district.drop("weight"), on="platform_site")
    return events.with_columns(pl.col("window_start").dt.convert_time_zone(LOCAL_TIMEZONE).dt.hour().alias("local_hour"))


def last_location(events: pl.DataFrame) -> pl.DataFrame:
    """FlowKit daily_location 'last': the district of the subscriber's last event (ties: larger cell)."""
    return events.sort(["subscriber", "event_time", "cell_id"]).group_by("subscriber").last().select(
        "subscriber", "district_code")


def modal_location(events: pl.DataFrame) -> pl.DataFrame:
    """FlowKit daily_location 'modal': the district with most events; ties go to the district of the
    latest event (then the larger cell)."""
    per_district = events.sort(["event_time", "cell_id"]).group_by(["subscriber", "district_code"]).agg(
        pl.len().alias("events"), pl.col("event_time").last().alias("latest"), pl.col("cell_id").last().alias("cell"))
    return per_district.sort(["subscriber", "events", "latest", "cell"]).group_by("subscriber").last().select(
        "subscriber", "district_code")


@pytest.mark.parametrize("rule", ["last", "modal"])
def test_daily_location_per_district_equals_the_recomputation(warehouse, rule):
    events = located_events(warehouse)
    located = (last_location if rule == "last" else modal_location)(events)
    expected = located.group_by("district_code").agg(pl.len().alias("subscribers"))
    platform = query(warehouse, "SELECT district_code, subscribers FROM district_daily_location "
                                "WHERE day = DATE '2016-01-01' AND rule = ? AND level = 'district'", [rule])
    joined = expected.join(platform, on="district_code", how="full", suffix="_platform", coalesce=True)
    assert joined.filter(pl.col("subscribers").fill_null(0) != pl.col("subscribers_platform").fill_null(0)).height == 0
    # One location per subscriber and day: 498, not the 2 441 that summing a per-window rule gives.
    regions = warehouse.execute("SELECT sum(subscribers) FROM district_daily_location WHERE day = DATE '2016-01-01' "
                                "AND rule = ? AND level = 'region'", [rule]).fetchone()[0]
    assert regions == located.height == 498


def test_morning_to_evening_flows_equal_the_recomputation(warehouse):
    events = located_events(warehouse)
    morning = last_location(events.filter(pl.col("local_hour").is_between(MORNING[0], MORNING[1], closed="left")))
    evening = last_location(events.filter(pl.col("local_hour").is_between(EVENING[0], EVENING[1], closed="left")))
    pairs = morning.join(evening, on="subscriber", suffix="_evening")
    expected = pairs.group_by(["district_code", "district_code_evening"]).agg(pl.len().alias("subscribers")).rename(
        {"district_code": "origin_code", "district_code_evening": "destination_code"})
    platform = query(warehouse, "SELECT origin_code, destination_code, subscribers FROM district_od_flows "
                                "WHERE day = DATE '2016-01-01' AND flow_kind = 'morning_evening' AND level = 'district'")
    joined = expected.join(platform, on=["origin_code", "destination_code"], how="full", suffix="_platform", coalesce=True)
    assert pairs.height > 50  # subscribers seen both in the morning and in the evening
    assert joined.filter(pl.col("subscribers").fill_null(0) != pl.col("subscribers_platform").fill_null(0)).height == 0
    # One day of data: no consecutive-day flows.
    assert warehouse.execute("SELECT count(*) FROM district_od_flows WHERE flow_kind = 'consecutive_days'").fetchone()[0] == 0


def test_published_indicators_never_show_k_or_less(warehouse):
    for table in ("district_unique_subscribers_published", "district_daily_location_published",
                  "district_od_flows_published"):
        small, total = warehouse.execute(
            f"SELECT count(*) FILTER (WHERE subscribers BETWEEN 1 AND ?), count(*) FROM {table}", [K]).fetchone()
        assert small == 0 and total > 0, table
