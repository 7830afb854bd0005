"""Simulator: deterministic, contract-shaped drops; gatherings visible; faults as declared."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from crowd_platform.common.contracts import operator_contracts
from crowd_platform.common.settings import CONTRACTS_DIR, PROJECT_ROOT
from crowd_platform.simulator import GROUND_TRUTH_FILE, simulate
from crowd_platform.simulator import keys

START = date(2020, 3, 23)
HOURS = (3, 6)  # 10:00-13:00 in Jakarta: busy hours, and only 12 windows a day
PHONE = re.compile(r"^(\+?62|0)8[0-9]{7,12}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
CONTRACTS = operator_contracts(CONTRACTS_DIR)
GBK = {"id": "gbk-test", "site": "Gelora Bung Karno", "lon": 106.8021, "lat": -6.2185,
       "start": "2020-03-23T04:30:00Z", "end": "2020-03-23T05:30:00Z", "extra_subscribers": 400}


def read_drop(path: Path, operator: str) -> pl.DataFrame:
    """Parse a drop the way an operator's contract says it is laid out."""
    layout = CONTRACTS[operator].layout
    payload = path.read_bytes()
    if layout.get("format") == "parquet":
        return pl.read_parquet(io.BytesIO(payload))
    if layout.get("compression") == "gzip":
        payload = gzip.decompress(payload)
    return pl.read_csv(io.BytesIO(payload), separator=layout.get("delimiter", ","), infer_schema=False,
                       has_header=layout.get("header", True))


def manifests(home: Path, operator: str, feed: str = "events") -> list[dict]:
    found = [json.loads(path.read_text()) for path in sorted((home / "landing" / operator).glob("*.manifest.json"))]
    return [manifest for manifest in found if manifest["feed"] == feed]


def canonical_keys(frame: pl.DataFrame, operator: str) -> pl.Series:
    return frame[CONTRACTS[operator].column("subscriber_key").physical_name]


@pytest.fixture(scope="module")
def faulty_home(tmp_path_factory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("sim_faults")
    summary = simulate(home, START, days=2, subscribers=2500, seed=7, hours=HOURS,
                       faults={"late", "duplicate", "redrop", "corrupt", "msisdn"})
    return home, summary


@pytest.fixture(scope="module")
def clean_home(tmp_path_factory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("sim_clean")
    summary = simulate(home, START, days=2, subscribers=2500, seed=7, hours=HOURS)
    return home, summary


def test_same_seed_gives_byte_identical_drops(clean_home, tmp_path):
    home, _ = clean_home
    again = simulate(tmp_path, START, days=2, subscribers=2500, seed=7, hours=HOURS)
    first = {path.relative_to(home): path.read_bytes() for path in (home / "landing").rglob("*") if path.is_file()}
    second = {path.relative_to(tmp_path): path.read_bytes() for path in (tmp_path / "landing").rglob("*") if path.is_file()}
    assert first.keys() == second.keys() and len(first) > 0
    assert all(first[name] == second[name] for name in first)
    assert (home / GROUND_TRUTH_FILE).read_bytes() == (tmp_path / GROUND_TRUTH_FILE).read_bytes()
    other = simulate(tmp_path / "other", START, days=1, subscribers=2500, seed=8, hours=(3, 4), gatherings=[])
    assert other["total_events"] != again["total_events"] or other["events"] != again["events"]


def test_every_layout_parses_back_and_matches_its_manifest(clean_home):
    home, summary = clean_home
    assert set(summary["drops"]) == set(CONTRACTS)
    for operator, contract in CONTRACTS.items():
        events = manifests(home, operator)
        assert len(events) == 2 * 12, operator  # one drop per window, 12 windows a day
        for manifest in events:
            path = home / "landing" / operator / manifest["file"]
            payload = path.read_bytes()
            assert manifest["sha256"] == hashlib.sha256(payload).hexdigest()
            assert manifest["bytes"] == len(payload)
            assert path.name.endswith(contract.layout["extension"])
            frame = read_drop(path, operator)
            assert frame.height == manifest["row_count"] > 0
            physical = [column.physical_name or column.name for column in contract.columns if not column.transform_sources]
            physical += [source for column in contract.columns for source in column.transform_sources]
            assert set(frame.columns) == set(physical)
            assert canonical_keys(frame, operator).str.contains(HEX64.pattern).all()
            assert manifest["pseudonymization"]["key_id"] == keys.key_id(operator, datetime.fromisoformat(manifest["window_start"][:10]).date())
        cells = manifests(home, operator, "cells")
        assert len(cells) == 1
        cell_list = pl.read_csv(home / "landing" / operator / cells[0]["file"], infer_schema=False)
        assert cell_list.columns == ["cell_id", "lon", "lat", "radio"]
        pattern = contract.column("cell_id").options["pattern"]
        assert cell_list["cell_id"].str.contains(pattern).all()


def test_events_fall_in_their_window_on_known_cells(clean_home):
    home, _ = clean_home
    # Telkomsel: local time text; XL: epoch milliseconds, event codes; Indosat: split cell id.
    telkomsel = manifests(home, "telkomsel")[5]
    frame = read_drop(home / "landing" / "telkomsel" / telkomsel["file"], "telkomsel")
    times = frame["event_ts"].str.strptime(pl.Datetime, "%Y-%m-%d %H:%M:%S").dt.replace_time_zone("Asia/Jakarta")
    start = datetime.fromisoformat(telkomsel["window_start"].replace("Z", "+00:00"))
    assert times.min() >= start and times.max() < start + timedelta(minutes=15)
    xl = manifests(home, "xl")[5]
    frame = read_drop(home / "landing" / "xl" / xl["file"], "xl")
    start_ms = int(datetime.fromisoformat(xl["window_start"].replace("Z", "+00:00")).timestamp() * 1000)
    assert frame["epoch_ms"].min() >= start_ms and frame["epoch_ms"].max() < start_ms + 15 * 60 * 1000
    assert set(frame["evt"].unique()) <= {"V", "S", "D", "L"}
    indosat = manifests(home, "indosat")[0]
    frame = read_drop(home / "landing" / "indosat" / indosat["file"], "indosat")
    cell_ids = frame.select(pl.concat_str(["mcc", "mnc", "lac", "ci"], separator="-")).to_series()
    known = set(pl.read_csv(home / "landing" / "indosat" / manifests(home, "indosat", "cells")[0]["file"], infer_schema=False)["cell_id"])
    assert set(cell_ids) <= known
    # No duplicate (subscriber, cell, time, type) rows: the contracts forbid them.
    assert frame.height == frame.unique().height


def test_no_phone_numbers_and_realistic_activity(clean_home):
    home, _ = clean_home
    for operator in CONTRACTS:
        for manifest in manifests(home, operator):
            frame = read_drop(home / "landing" / operator / manifest["file"], operator)
            for column in frame.columns:
                values = frame[column].cast(pl.String)
                assert not values.str.contains(PHONE.pattern).any(), (operator, column)
    truth = json.loads((home / GROUND_TRUTH_FILE).read_text())
    telkomsel_subscribers = truth["subscribers_by_operator"]["telkomsel"]
    manifest = manifests(home, "telkomsel")[2]  # 03:30Z = 10:30 in Jakarta
    frame = read_drop(home / "landing" / "telkomsel" / manifest["file"], "telkomsel")
    counts = dict(frame.group_by("event_kind").len().iter_rows())
    assert counts["data"] > counts["location_update"] > counts["call"] > counts["sms"] > 0
    # Periodic location updates plus activity: most subscribers are seen in a daytime window.
    assert frame["msisdn_hash"].n_unique() > 0.5 * telkomsel_subscribers


def test_keys_differ_per_operator_and_day(clean_home):
    home, _ = clean_home
    assert keys.daily_key(7, "telkomsel", START) != keys.daily_key(7, "xl", START)
    assert keys.daily_key(7, "telkomsel", START) != keys.daily_key(7, "telkomsel", START + timedelta(days=1))
    by_day: dict[str, set[str]] = {}
    for manifest in manifests(home, "telkomsel"):
        frame = read_drop(home / "landing" / "telkomsel" / manifest["file"], "telkomsel")
        by_day.setdefault(manifest["window_start"][:10], set()).update(frame["msisdn_hash"])
    first, second = (by_day[day] for day in sorted(by_day))
    assert first and second and not first & second  # daily rotation: no key survives midnight
    xl_keys: set[str] = set()
    for manifest in manifests(home, "xl"):
        xl_keys.update(read_drop(home / "landing" / "xl" / manifest["file"], "xl")["subscriber"])
    assert not xl_keys & (first | second)


def _subscribers_near(home: Path, lon: float, lat: float, window: str, radius_deg: float = 0.01) -> int:
    """Distinct subscribers (all operators) on cells within ~1 km of a place in one window."""
    seen = 0
    for operator in CONTRACTS:
        cells_file = manifests(home, operator, "cells")[0]["file"]
        cells = pl.read_csv(home / "landing" / operator / cells_file)
        near = set(cells.filter(((pl.col("lon") - lon) ** 2 + (pl.col("lat") - lat) ** 2) < radius_deg**2)["cell_id"])
        manifest = next(m for m in manifests(home, operator) if m["window_start"] == window)
        frame = read_drop(home / "landing" / operator / manifest["file"], operator)
        spec = CONTRACTS[operator].column("cell_id")
        if spec.transform_sources:
            cell = pl.concat_str(list(spec.transform_sources), separator="-")
        else:
            cell = pl.col(spec.physical_name or "cell_id")
        key = CONTRACTS[operator].column("subscriber_key").physical_name
        seen += frame.filter(cell.is_in(list(near)))[key].n_unique()
    return seen


def test_a_gathering_raises_distinct_subscribers_near_its_place(tmp_path):
    with_gathering = simulate(tmp_path / "with", START, days=1, subscribers=3000, seed=11, hours=(4, 6), gatherings=[GBK])
    simulate(tmp_path / "without", START, days=1, subscribers=3000, seed=11, hours=(4, 6), gatherings=[])
    record = with_gathering["gatherings"][0]
    assert record["kelurahan_name"] == "Gelora" and record["kecamatan_name"] == "Tanah Abang"
    assert record["extra_subscribers"] == 400
    assert sum(record["extra_subscribers_by_operator"].values()) == 400
    assert record["people_equivalent"] > 400
    during = "2020-03-23T04:45:00Z"
    before = "2020-03-23T04:15:00Z"
    crowd = _subscribers_near(tmp_path / "with", GBK["lon"], GBK["lat"], during)
    quiet = _subscribers_near(tmp_path / "without", GBK["lon"], GBK["lat"], during)
    assert crowd > quiet + 120, (crowd, quiet)  # ~53 % of 400 participants seen in one window
    # Before it starts, the place looks the same with or without the gathering.
    assert abs(_subscribers_near(tmp_path / "with", GBK["lon"], GBK["lat"], before)
               - _subscribers_near(tmp_path / "without", GBK["lon"], GBK["lat"], before)) < 40


def test_default_gatherings_scale_with_subscribers_and_stay_in_simulated_hours(clean_home):
    home, summary = clean_home
    gatherings = summary["gatherings"]
    assert {g["site"] for g in gatherings} == {"Masjid Istiqlal", "Pasar Tanah Abang", "Gelora Bung Karno"}
    for gathering in gatherings:
        start = datetime.fromisoformat(gathering["start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(gathering["end"].replace("Z", "+00:00"))
        assert HOURS[0] <= start.hour and (end - timedelta(seconds=1)).hour < HOURS[1]
        assert gathering["extra_subscribers"] >= 300
        for field in ("kelurahan_code", "kelurahan_name", "kecamatan_code", "kecamatan_name", "people_equivalent"):
            assert gathering[field]
    assert json.loads((home / GROUND_TRUTH_FILE).read_text())["gatherings"] == gatherings


def test_faults_produce_what_they_say(faulty_home):
    home, summary = faulty_home
    faults = {record["type"]: record for record in summary["faults"]}
    assert set(faults) == {"late", "duplicate", "redrop", "corrupt", "msisdn"}
    assert json.loads((home / GROUND_TRUTH_FILE).read_text())["faults"] == summary["faults"]

    raw = faults["msisdn"]
    frame = read_drop(home / "landing" / raw["operator"] / raw["file"], raw["operator"])
    assert canonical_keys(frame, raw["operator"]).str.contains(PHONE.pattern).all()

    dup = faults["duplicate"]
    folder = home / "landing" / dup["operator"]
    assert (folder / dup["file"]).read_bytes() == (folder / dup["duplicate_file"]).read_bytes()
    copies = [m for m in manifests(home, dup["operator"]) if m["sha256"] == dup["sha256"]]
    assert sorted(m["file"] for m in copies) == sorted([dup["file"], dup["duplicate_file"]])

    redrop = faults["redrop"]
    deliveries = {m["delivery"]: m for m in manifests(home, redrop["operator"]) if m["window_start"] == redrop["window_start"]}
    assert set(deliveries) == {1, 2}
    assert deliveries[2]["row_count"] == redrop["rows_delivery_2"] < deliveries[1]["row_count"] == redrop["rows_delivery_1"]
    assert deliveries[2]["created_at"] > deliveries[1]["created_at"]

    corrupt = faults["corrupt"]
    path = home / "landing" / corrupt["operator"] / corrupt["file"]
    manifest = json.loads(path.with_name(path.name + ".manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(Exception):
        read_drop(path, corrupt["operator"])

    late = faults["late"]
    folder = home / "landing" / late["operator"]
    late_manifest = folder / (late["file"] + ".manifest.json")
    window_end = datetime.fromisoformat(late["window_start"].replace("Z", "+00:00")) + timedelta(minutes=15)
    created = datetime.fromisoformat(json.loads(late_manifest.read_text())["created_at"].replace("Z", "+00:00"))
    assert created - window_end > timedelta(minutes=30)  # past the contracts' latency
    next_windows = sorted({m["window_start"] for m in manifests(home, late["operator"]) if m["window_start"] > late["window_start"]})[:3]
    later = [folder / (m["file"] + ".manifest.json") for m in manifests(home, late["operator"]) if m["window_start"] in next_windows]
    assert later and all(late_manifest.stat().st_mtime_ns >= other.stat().st_mtime_ns for other in later)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crowd_platform", *args], capture_output=True, text=True, cwd=PROJECT_ROOT)


def test_pseudonymize_tool_matches_the_simulator_and_never_prints_secrets(tmp_path):
    key = bytes(range(32))
    key_file = tmp_path / "key.hex"
    key_file.write_text(key.hex())
    numbers = ["+62 812-3456-7890", "081234567890", "6281234567890", "0857 1111 2222"]
    source = tmp_path / "raw.csv"
    source.write_text("msisdn,cell\n" + "".join(f"{number},510-10-1-{i}\n" for i, number in enumerate(numbers)))
    output = tmp_path / "out.csv"
    result = _cli("pseudonymize", "--key-file", str(key_file), "--input", str(source), "--column", "msisdn", "--output", str(output))
    assert result.returncode == 0, result.stderr
    digests = pl.read_csv(output, infer_schema=False)["msisdn"].to_list()
    expected = keys.pseudonymize(key, "6281234567890")
    assert digests[:3] == [expected] * 3  # one person, three spellings, one pseudonym
    assert HEX64.match(digests[3]) and digests[3] != expected
    assert bytes(keys.digests_for(key, np.array(["6281234567890"], dtype=object))[0]).hex() == expected
    printed = result.stdout + result.stderr
    assert key.hex() not in printed and "812" not in printed

    source.write_text("msisdn\nnot-a-number-555\n")
    bad = _cli("pseudonymize", "--key-file", str(key_file), "--input", str(source), "--output", str(output))
    assert bad.returncode == 2 and "row 1" in bad.stderr and "555" not in bad.stderr


def test_simulate_cli_rejects_bad_input_and_runs(tmp_path):
    assert _cli("simulate", "--home", str(tmp_path), "--hours", "6-3").returncode == 2
    assert _cli("simulate", "--home", str(tmp_path), "--faults", "fire").returncode == 2
    assert _cli("simulate", "--home", str(tmp_path), "--operators", "nokia").returncode == 2
    gatherings = tmp_path / "g.json"
    gatherings.write_text(json.dumps([GBK]))
    result = _cli("simulate", "--home", str(tmp_path / "h"), "--start", "2020-03-23", "--days", "1", "--subscribers", "800",
                  "--hours", "4-5", "--operators", "telkomsel,xl", "--gatherings", str(gatherings), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "h" / "landing").iterdir()) == ["telkomsel", "xl"]
    truth = json.loads((tmp_path / "h" / GROUND_TRUTH_FILE).read_text())
    assert [g["id"] for g in truth["gatherings"]] == ["gbk-test"] and truth["operators"] == ["telkomsel", "xl"]
    assert "wrote" in result.stdout


def test_days_off_keep_people_out_of_the_business_district(tmp_path):
    """Monday vs Nyepi (Wednesday 2020-03-25, a public holiday) at local noon on CBD cells."""
    simulate(tmp_path, START, days=3, subscribers=3000, seed=3, hours=(5, 6), gatherings=[], operators=["telkomsel"])
    reference = pl.read_csv(PROJECT_ROOT / "reference_data/geo/ocid_mcc510_jakarta_cells.csv")
    cbd = reference.filter(pl.col("net") == 10, pl.col("kecamatan").is_in(["Menteng", "Setiabudi", "Tanah Abang", "Gambir"]))
    cbd_cells = set(cbd.select(pl.format("510-10-{}-{}", "area", "cell")).to_series())

    def people_in_cbd(window: str) -> int:
        manifest = next(m for m in manifests(tmp_path, "telkomsel") if m["window_start"] == window)
        frame = read_drop(tmp_path / "landing" / "telkomsel" / manifest["file"], "telkomsel")
        return frame.filter(pl.col("cell_global_id").is_in(list(cbd_cells)))["msisdn_hash"].n_unique()

    monday, nyepi = people_in_cbd("2020-03-23T05:00:00Z"), people_in_cbd("2020-03-25T05:00:00Z")
    assert monday > 1.7 * nyepi, (monday, nyepi)  # seed 3: 136 vs 61; residents of the CBD stay


def test_ingestion_parser_stages_every_drop_except_the_corrupt_one(faulty_home, tmp_path):
    """Cross-check with the platform's own parser: the drops are what ingestion expects."""
    layout = pytest.importorskip("crowd_platform.ingestion.layout")
    import duckdb

    from crowd_platform.common.contracts import contract_for

    home, summary = faulty_home
    broken = {record["file"] for record in summary["faults"] if record["type"] == "corrupt"}
    connection = duckdb.connect()
    staged = 0
    for manifest_path in sorted((home / "landing").rglob("*.manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        contract = contract_for(CONTRACTS_DIR, manifest["operator"], manifest["feed"])
        data_path = manifest_path.with_name(manifest["file"])
        if manifest["file"] in broken:
            with pytest.raises(layout.ParseError):
                layout.stage_drop(connection, data_path, contract, tmp_path / f"{manifest['file']}.parquet")
            continue
        result = layout.stage_drop(connection, data_path, contract, tmp_path / f"{manifest['file']}.parquet")
        assert result.rows == manifest["row_count"], manifest["file"]
        staged += 1
    assert staged >= 2 * 12 * len(CONTRACTS)
