"""Bad input corpus: every broken drop is quarantined with the right reason, nothing else harmed.

All drops land in one window next to one good drop per operator; one real Dagster run of
operator_drops + staged_events processes the routable ones, and the landing sensor routes the
unroutable ones to quarantine_unroutable_job (also run for real). Afterwards every byte that
arrived is in raw/ or quarantine/, and each good drop is accepted.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from crowd_platform.ingestion.assets import operator_drops, staged_events
from crowd_platform.ingestion.jobs import quarantine_unroutable_job
from crowd_platform.ingestion.sensors import evaluate_landing
from crowd_platform.common.contracts import contract_for, operator_contracts
from crowd_platform.ingestion.fixtures import canonical_cells, canonical_events, register_cells
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import get_settings
from crowd_platform.simulator.drops import build_manifest, encode_drop, to_operator_layout, write_drop
from crowd_platform.common.warehouse import connect

WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)
WINDOW_END = WINDOW + timedelta(minutes=15)
PARTITION = "2020-03-31-01:00"
MSISDN_FORMS = {"msisdn_plus62": "+6281234567890", "msisdn_0812": "081234567890", "msisdn_62812": "6281234567890",
                # Written with separators (issue 15): still phone numbers, not malformed digests.
                "msisdn_spaced_plus62": "+62 812-3456-7890", "msisdn_spaced_0812": "0812 3456 7890",
                "msisdn_hyphen_62": "62-812-3456-7890"}
# Cases whose times cannot be parsed: the report must name that cause only (issue 15), not the
# rules that depend on the time (duplicates of null times, unknown cells at no time).
UNPARSABLE_TIME_CASES = ("unparsable_time", "xl_string_times", "tri_string_times")


def _contract(settings, operator, feed="events"):
    return contract_for(settings.contracts_dir, operator, feed)


def _events(settings, operator, rows=60, seed=11):
    return canonical_events(_contract(settings, operator), WINDOW, rows, seed=seed)


def _payload(settings, operator, events=None, *, mutate_text=None, frame_mutator=None):
    """Bytes in the operator's layout, optionally tampered at text level (before compression)."""
    contract = _contract(settings, operator)
    frame = to_operator_layout(events if events is not None else _events(settings, operator), contract)
    if frame_mutator is not None:
        frame = frame_mutator(frame)
    layout = contract.layout
    if layout.get("format") == "parquet" or mutate_text is None:
        return encode_drop(frame, contract), frame.height
    text = frame.write_csv(separator=layout.get("delimiter", ","))
    text = mutate_text(text)
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    if layout.get("compression") == "gzip":
        data = gzip.compress(data, mtime=0)
    return data, frame.height


def _put(settings, operator, case, payload, rows, *, feed="events", overrides=None, write_data=True, folder=None):
    """Write data file + manifest under a per-case file name; returns the paths written."""
    contract = _contract(settings, operator, feed) or _contract(settings, "telkomsel", feed)
    extension = contract.layout.get("extension", ".csv")
    name = f"{operator}_{feed}_20200331T0100Z_{case}{extension}"
    directory = settings.landing / (folder or operator)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = build_manifest(contract=contract, operator=operator, feed=feed, file_name=name, payload=payload, row_count=rows,
                              window_start=WINDOW, window_end=WINDOW_END, delivery=1, key_id="k-20200331", created_at=WINDOW_END)
    overrides = dict(overrides or {})
    upper_sha = overrides.pop("__upper_sha__", False)
    manifest.update(overrides)
    if upper_sha:
        manifest["sha256"] = manifest["sha256"].upper()  # as Windows Get-FileHash prints it
    written = []
    if write_data:
        (directory / name).write_bytes(payload)
        written.append(directory / name)
    manifest_path = directory / (name + ".manifest.json")
    manifest_path.write_text(json.dumps(manifest))
    written.append(manifest_path)
    return written


def _text_case(operator, mutate):
    return lambda settings: _payload(settings, operator, mutate_text=mutate)


def _replace_first_value(column_index, value, delimiter):
    def mutate(text):
        lines = text.splitlines()
        fields = lines[1].split(delimiter)
        fields[column_index] = value
        lines[1] = delimiter.join(fields)
        return "\n".join(lines) + "\n"
    return mutate


def _msisdn(form):
    def build(settings):
        events = _events(settings, "telkomsel").with_columns(
            pl.when(pl.int_range(pl.len()) < 3).then(pl.lit(form)).otherwise(pl.col("subscriber_key")).alias("subscriber_key"))
        return _payload(settings, "telkomsel", events)
    return build


def _shift_times(operator, delta):
    def build(settings):
        events = _events(settings, operator).with_columns(pl.col("event_time") + delta)
        return _payload(settings, operator, events)
    return build


def _wrong_zone(settings):
    # Times written as UTC wall clock although the contract says Asia/Jakarta: 7 hours off.
    contract = _contract(settings, "telkomsel")
    frame = to_operator_layout(_events(settings, "telkomsel"), contract)
    frame = frame.with_columns(pl.Series("event_ts", _events(settings, "telkomsel")["event_time"].dt.strftime("%Y-%m-%d %H:%M:%S")))
    return encode_drop(frame, contract), frame.height


def _duplicates(settings):
    events = _events(settings, "telkomsel")
    return _payload(settings, "telkomsel", pl.concat([events, events.head(4)]))


def _unknown_cells(settings):
    events = _events(settings, "tri").with_columns(
        pl.when(pl.int_range(pl.len()) % 3 == 0).then(pl.lit("510-89-1-999999")).otherwise(pl.col("cell_id")).alias("cell_id"))
    return _payload(settings, "tri", events)


def _bomb(settings):
    return gzip.compress(b"0" * (20 << 20), compresslevel=9, mtime=0), 1


def _row_bomb(settings):
    # Valid header and rows, but one row repeated: passes the header check, so the guard that
    # runs beside DuckDB's parse has to stop it.
    data, _rows = _payload(settings, "telkomsel", mutate_text=lambda text: text.splitlines()[0] + "\n" + (text.splitlines()[1] + "\n") * 400_000)
    return data, 400_000


def _truncated(settings):
    data, rows = _payload(settings, "telkomsel")
    return data[: len(data) // 2], rows


def _long_line(settings):
    # The contract's own header, then one 10 MB line.
    data, _rows = _payload(settings, "indosat", mutate_text=lambda text: text.splitlines()[0] + "\n" + "a" * (10 << 20) + "\n")
    return data, 1


def _utf16(settings):
    data, rows = _payload(settings, "indosat", mutate_text=lambda text: text)
    return data.decode("utf-8").encode("utf-16"), rows


def _latin1(settings):
    data, rows = _payload(settings, "indosat", mutate_text=_replace_first_value(6, "caf\u00e9", ","))
    return data.decode("utf-8").encode("latin-1"), rows


def _xl_string_times(settings):
    contract = _contract(settings, "xl")
    frame = to_operator_layout(_events(settings, "xl"), contract)
    time_column = contract.column("event_time").physical_name
    frame = frame.with_columns(pl.lit("not-a-time").alias(time_column))
    return encode_drop(frame, contract), frame.height


def _tri_string_times(settings):
    # Every time unparsable, on an operator whose cell registry is loaded (unknown_cell_share runs).
    contract = _contract(settings, "tri")
    frame = to_operator_layout(_events(settings, "tri", seed=23), contract)
    frame = frame.with_columns(pl.lit("not-a-time").alias(contract.column("event_time").physical_name))
    return encode_drop(frame, contract), frame.height


def _one_subscriber_key(settings):
    # Broken pseudonymisation: every row hashed from the same value. 850 rows, distinct times.
    events = canonical_events(_contract(settings, "telkomsel"), WINDOW, 850, seed=31)
    events = events.with_columns(pl.lit(hashlib.sha256(b"the same value").hexdigest()).alias("subscriber_key"))
    return _payload(settings, "telkomsel", events)


def _bad_cells(settings):
    contract = _contract(settings, "telkomsel", "cells")
    cells = canonical_cells(_contract(settings, "telkomsel")).with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(pl.lit(48.0)).otherwise(pl.col("lat")).alias("lat"))
    return encode_drop(cells, contract), cells.height


# (case, operator, payload builder, manifest overrides, expected reason fragment, feed)
ROUTABLE_CASES = [
    ("empty_file", "telkomsel", lambda s: (b"", 0), {}, "empty file", "events"),
    ("header_only", "indosat", _text_case("indosat", lambda text: text.splitlines()[0] + "\n"), {"row_count": 0}, "header only", "events"),
    ("truncated_gzip", "telkomsel", _truncated, {}, "gzip", "events"),
    ("gzip_bomb", "telkomsel", _bomb, {}, "bomb", "events"),
    ("row_bomb", "telkomsel", _row_bomb, {}, "bomb", "events"),
    ("wrong_delimiter", "telkomsel", _text_case("telkomsel", lambda text: text.replace(";", ",")), {}, "wrong delimiter", "events"),
    ("utf16_encoding", "indosat", _utf16, {}, "UTF-16", "events"),
    ("latin1_bytes", "indosat", _latin1, {}, "UTF-8", "events"),
    ("headerless", "indosat", _text_case("indosat", lambda text: text.split("\n", 1)[1]), {}, "missing columns", "events"),
    ("extra_column", "indosat", _text_case("indosat", lambda text: "\n".join(line + ",x" for line in text.splitlines()) + "\n"), {}, "unexpected columns", "events"),
    ("missing_column", "indosat", _text_case("indosat", lambda text: "\n".join(line.rsplit(",", 1)[0] for line in text.splitlines()) + "\n"), {}, "missing columns", "events"),
    ("wrong_type_lac", "indosat", _text_case("indosat", _replace_first_value(3, "abc", ",")), {}, "cell_id_format", "events"),
    ("negative_ci", "indosat", _text_case("indosat", _replace_first_value(4, "-5", ",")), {}, "cell_id_format", "events"),
    ("nan_lac", "indosat", _text_case("indosat", _replace_first_value(3, "NaN", ",")), {}, "cell_id_format", "events"),
    ("unparsable_time", "telkomsel", _text_case("telkomsel", _replace_first_value(2, "yesterday", ";")), {}, "event_time_parsable", "events"),
    ("out_of_window", "telkomsel", _shift_times("telkomsel", timedelta(hours=-1)), {}, "event_time_in_window", "events"),
    ("wrong_time_zone", "telkomsel", _wrong_zone, {}, "event_time_in_window", "events"),
    ("future_rows", "smartfren", _shift_times("smartfren", timedelta(days=365 * 20)), {}, "event_time_not_future", "events"),
    ("duplicate_rows", "telkomsel", _duplicates, {}, "no_duplicate_events", "events"),
    *[(case, "telkomsel", _msisdn(form), {}, "raw_msisdn", "events") for case, form in MSISDN_FORMS.items()],
    ("uppercase_key", "tri", _text_case("tri", lambda text: text.split("\n", 1)[0] + "\n" + text.split("\n", 1)[1].upper()), {}, "subscriber_key_is_hmac_digest", "events"),
    ("unknown_cells", "tri", _unknown_cells, {}, "unknown_cell_share", "events"),
    ("bad_event_code", "smartfren", _text_case("smartfren", _replace_first_value(3, "telepon", "|")), {}, "event_type_valid", "events"),
    ("long_line", "indosat", _long_line, {}, "longer than", "events"),
    ("hash_mismatch", "indosat", lambda s: _payload(s, "indosat"), {"sha256": "0" * 64}, "sha256", "events"),
    ("row_count_mismatch", "indosat", lambda s: _payload(s, "indosat", _events(s, "indosat", seed=99)), {"row_count": 1234}, "row_count_matches_manifest", "events"),
    ("missing_file", "indosat", lambda s: _payload(s, "indosat", _events(s, "indosat", seed=98)), {"__no_data__": True}, "missing", "events"),
    ("corrupt_parquet", "xl", lambda s: (os.urandom(2048), 10), {}, "Parquet", "events"),
    ("xl_string_times", "xl", _xl_string_times, {}, "event_time_parsable", "events"),
    ("contract_major_version", "indosat", lambda s: _payload(s, "indosat", _events(s, "indosat", seed=97)), {"contract_version": "2.0.0"}, "contract_version", "events"),
    ("cells_bad_lat", "telkomsel", _bad_cells, {}, "lat_in_indonesia", "cells"),
    # Issue 15: edge cases found beyond the corpus.
    ("conflicting_delivery", "telkomsel", lambda s: _payload(s, "telkomsel", _events(s, "telkomsel", seed=55)), {},
     "conflicting delivery: another file for this operator, feed, window and delivery number was already accepted", "events"),
    ("empty_event_type", "smartfren", _text_case("smartfren", _replace_first_value(3, "", "|")), {}, "event_type_required", "events"),
    ("one_subscriber_key", "telkomsel", _one_subscriber_key, {}, "subscriber_key_rows_per_window (broken_pseudonymization)", "events"),
    ("tri_string_times", "tri", _tri_string_times, {}, "event_time_parsable", "events"),
]
# Good drops that used to be refused: (case, operator, payload builder, manifest overrides).
# Delivery 2, so each supersedes its operator's good delivery 1 (a higher delivery still does).
ACCEPTED_CASES = [
    ("uppercase_sha256", "indosat", lambda s: _payload(s, "indosat", _events(s, "indosat", seed=96)), {"__upper_sha__": True, "delivery": 2}),
]
DUPLICATE_OF = {"duplicate_resend": "telkomsel"}  # identical bytes to the operator's good drop, own manifest
UNROUTABLE_CASES = ["manifest_not_json", "manifest_missing_fields", "unknown_operator", "unaligned_window", "path_traversal",
                    "symlink_data", "non_utf8_name", "wrong_pseudonymization"]


def _write_unroutable(settings, case):
    contract = _contract(settings, "telkomsel")
    payload, rows = _payload(settings, "telkomsel", _events(settings, "telkomsel", seed=len(case)))
    landing = settings.landing
    if case == "manifest_not_json":
        (landing / "telkomsel" / "broken.csv.gz").write_bytes(payload)
        (landing / "telkomsel" / "broken.csv.gz.manifest.json").write_bytes(b"{not json")
        return [landing / "telkomsel" / "broken.csv.gz", landing / "telkomsel" / "broken.csv.gz.manifest.json"]
    if case == "manifest_missing_fields":
        (landing / "telkomsel" / "partial.csv.gz").write_bytes(payload)
        (landing / "telkomsel" / "partial.csv.gz.manifest.json").write_text(json.dumps({"manifest_version": 1, "operator": "telkomsel"}))
        return [landing / "telkomsel" / "partial.csv.gz", landing / "telkomsel" / "partial.csv.gz.manifest.json"]
    if case == "unknown_operator":
        return _put(settings, "acme", case, payload, rows, folder="acme")
    if case == "unaligned_window":
        return _put(settings, "telkomsel", case, payload, rows, overrides={"window_start": "2020-03-31T01:07:00Z", "window_end": "2020-03-31T01:22:00Z"})
    if case == "path_traversal":
        written = _put(settings, "telkomsel", case, payload, rows)
        manifest = json.loads(written[1].read_text())
        manifest["file"] = "../indosat/" + manifest["file"]
        written[1].write_text(json.dumps(manifest))
        return written
    if case == "symlink_data":
        target = settings.home / "outside.csv.gz"
        target.write_bytes(payload)
        written = _put(settings, "telkomsel", case, payload, rows)
        written[0].unlink()
        written[0].symlink_to(target)
        return written
    if case == "non_utf8_name":
        path = Path(os.fsdecode(bytes(landing / "telkomsel") + b"/caf\xe9_events.csv.gz"))
        path.write_bytes(payload)
        return [path]
    if case == "wrong_pseudonymization":
        return _put(settings, "telkomsel", case, payload, rows, overrides={"pseudonymization": {"scheme": "sha1", "key_id": "x"}})
    raise AssertionError(case)


def _content(path: Path) -> bytes:
    return os.readlink(path).encode() if path.is_symlink() else path.read_bytes()


def _kept_contents(settings) -> set[str]:
    kept = set()
    for root in (settings.raw, settings.quarantine):
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                kept.add(hashlib.sha256(_content(path)).hexdigest())
    return kept


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    home = tmp_path_factory.mktemp("bad_drops")
    settings = get_settings(home)
    settings.ensure_dirs()
    arrived: dict[str, str] = {}  # content hash -> case
    with connect(settings.warehouse_path) as con:
        register_cells(con, "tri", _contract(settings, "tri"), WINDOW - timedelta(days=1))
    good_data: dict[str, tuple[bytes, int]] = {}
    for operator, contract in operator_contracts(settings.contracts_dir).items():
        events = canonical_events(contract, WINDOW, 80)
        paths = write_drop(settings.landing, contract, events, window_start=WINDOW, window_end=WINDOW_END)
        arrived.update({hashlib.sha256(p.read_bytes()).hexdigest(): f"good_{operator}" for p in paths})
        good_data[operator] = (next(p for p in paths if not p.name.endswith(".manifest.json")).read_bytes(), events.height)
    for case, operator, build, overrides in ACCEPTED_CASES:
        payload, rows = build(settings)
        for path in _put(settings, operator, case, payload, rows, overrides=overrides):
            arrived[hashlib.sha256(_content(path)).hexdigest()] = case
    for case, operator in DUPLICATE_OF.items():
        payload, rows = good_data[operator]
        for path in _put(settings, operator, case, payload, rows):
            arrived[hashlib.sha256(_content(path)).hexdigest()] = case
    for case, operator, build, overrides, _reason, feed in ROUTABLE_CASES:
        payload, rows = build(settings)
        overrides = dict(overrides)
        no_data = overrides.pop("__no_data__", False)
        for path in _put(settings, operator, case, payload, rows, feed=feed, overrides=overrides, write_data=not no_data):
            arrived[hashlib.sha256(_content(path)).hexdigest()] = case
    for case in UNROUTABLE_CASES:
        for path in _write_unroutable(settings, case):
            arrived[hashlib.sha256(_content(path)).hexdigest()] = case
    # 1) the sensor routes; 2) its unroutable request runs for real; 3) the window run for real.
    requests, _cursor, stats = evaluate_landing(None, home=str(home))
    resources = {"crowd": CrowdPlatform(home=str(home))}
    with dg.instance_for_test() as instance:
        unroutable = [request for request in requests if request.job_name == "quarantine_unroutable_job"]
        assert len(unroutable) == 1
        result = quarantine_unroutable_job.execute_in_process(run_config=unroutable[0].run_config, resources=resources, instance=instance)
        assert result.success
        window = dg.materialize([operator_drops, staged_events], resources=resources, instance=instance, partition_key=PARTITION)
        assert window.success
        checks = {evaluation.check_name: evaluation for evaluation in window.get_asset_check_evaluations()}
    with connect(settings.warehouse_path, read_only=True) as con:
        drops = con.execute("SELECT drop_id, operator, feed, file_name, status, reason, quarantine_path FROM drops").fetchall()
        results = con.execute("SELECT drop_id, rule, engine, passed FROM check_results").fetchall()
    return {"settings": settings, "drops": drops, "results": results, "arrived": arrived, "checks": checks,
            "requests": requests, "stats": stats}


def _drop_for_case(corpus, case):
    matches = [row for row in corpus["drops"] if row[3] and case in row[3]]
    assert matches, f"no drops row for case {case}"
    return matches[0]


@pytest.mark.parametrize("case,operator,build,overrides,reason,feed", ROUTABLE_CASES, ids=[case[0] for case in ROUTABLE_CASES])
def test_routable_bad_drop_quarantined_with_reason(corpus, case, operator, build, overrides, reason, feed):
    drop_id, _operator, _feed, _file, status, why, quarantine_path = _drop_for_case(corpus, case)
    assert status == "quarantined", (case, status, why)
    assert reason.lower() in why.lower(), (case, why)
    assert "\n" not in why
    report = json.loads((corpus["settings"].resolve(quarantine_path) / "report.json").read_text())
    assert report["drop_id"] == drop_id and report["reason"] == why


@pytest.mark.parametrize("case", UNROUTABLE_CASES)
def test_unroutable_entry_quarantined(corpus, case):
    quarantined = [row for row in corpus["drops"] if row[0].startswith("unroutable_")]
    assert len(quarantined) == len(UNROUTABLE_CASES), [row[5] for row in quarantined]
    expected = {
        "manifest_not_json": "not UTF-8 JSON", "manifest_missing_fields": "misses fields", "unknown_operator": "no data contract",
        "unaligned_window": "not aligned", "path_traversal": "path traversal", "symlink_data": "symlink",
        "non_utf8_name": "not UTF-8", "wrong_pseudonymization": "hmac-sha256",
    }[case]
    assert any(expected in row[5] for row in quarantined), (case, [row[5] for row in quarantined])


def test_good_drops_accepted_beside_bad_ones(corpus):
    accepted = {row[1] for row in corpus["drops"] if row[4] == "accepted"}
    assert accepted == set(operator_contracts(corpus["settings"].contracts_dir))
    redelivered = {operator for _case, operator, *_rest in ACCEPTED_CASES}
    good = [row for row in corpus["drops"] if row[3] and re.fullmatch(r"[a-z]+_events_20200331T0100Z\.[a-z.]+", row[3])]
    assert {row[1]: row[4] for row in good} == {operator: "superseded" if operator in redelivered else "accepted" for operator in accepted}
    assert corpus["checks"]["contract_rules"].passed is False
    assert corpus["checks"]["contract_rules"].severity == dg.AssetCheckSeverity.WARN
    assert corpus["checks"]["no_raw_msisdn"].passed and corpus["checks"]["manifest_matches"].passed


def test_every_byte_kept_and_landing_empty(corpus):
    settings = corpus["settings"]
    kept = _kept_contents(settings)
    lost = sorted({case for digest, case in corpus["arrived"].items() if digest not in kept})  # data and manifest alike
    # Raw MSISDNs are the one thing never kept: such a drop is cut down to its report, and its
    # bytes are deleted at once with a certificate.
    assert lost == sorted(MSISDN_FORMS)
    with connect(settings.warehouse_path, read_only=True) as con:
        certified = {row[0] for row in con.execute(
            "SELECT DISTINCT object_id FROM deletion_certificates WHERE policy LIKE '%raw msisdn%'").fetchall()}
    assert {_drop_for_case(corpus, case)[0] for case in MSISDN_FORMS} <= certified
    leftovers = [path for path in settings.landing.rglob("*") if path.is_file() or path.is_symlink()]
    assert leftovers == []


def test_reports_hold_row_numbers_never_values(corpus):
    settings = corpus["settings"]
    for _case, form in MSISDN_FORMS.items():
        for report in settings.quarantine.glob("*/report.json"):
            assert form not in report.read_text()
    # A headerless file's first row must not leak through the "unexpected columns" reason.
    hex_key = re.compile(r"[0-9a-f]{64}")
    assert not any(row[5] and hex_key.search(row[5]) for row in corpus["drops"])
    drop = _drop_for_case(corpus, "msisdn_plus62")
    report = json.loads((corpus["settings"].resolve(drop[6]) / "report.json").read_text())
    rule = next(item for item in report["failed_rules"] if item["rule"] == "subscriber_key_not_msisdn" and item["engine"] == "duckdb")
    assert rule["unexpected_count"] == 3 and rule["example_rows"] == [1, 2, 3]


def test_engines_agree_on_every_rule(corpus):
    verdicts: dict[tuple[str, str], dict[str, bool]] = {}
    for drop_id, rule, engine, passed in corpus["results"]:
        verdicts.setdefault((drop_id, rule), {})[engine] = passed
    both = {key: value for key, value in verdicts.items() if {"gx", "duckdb"} <= set(value)}
    assert len(both) > 100
    disagreements = {key: value for key, value in both.items() if value["gx"] != value["duckdb"]}
    assert disagreements == {}


@pytest.mark.parametrize("case,operator,build,overrides", ACCEPTED_CASES, ids=[case[0] for case in ACCEPTED_CASES])
def test_once_refused_good_drop_accepted(corpus, case, operator, build, overrides):
    drop_id, _operator, _feed, _file, status, why, _quarantine = _drop_for_case(corpus, case)
    assert status == "accepted", (case, status, why)
    assert drop_id.split("_")[-1] == drop_id.split("_")[-1].lower()  # the drop id holds the lower-case digest
    with connect(corpus["settings"].warehouse_path, read_only=True) as con:
        superseded = con.execute("SELECT count(*) FROM drops WHERE superseded_by = ? AND status = 'superseded'", [drop_id]).fetchone()[0]
    assert superseded == 1  # the operator's good delivery 1


def test_conflicting_delivery_keeps_the_first(corpus):
    conflict = _drop_for_case(corpus, "conflicting_delivery")
    good = [row for row in corpus["drops"] if row[1] == "telkomsel" and row[3] == "telkomsel_events_20200331T0100Z.csv.gz"]
    assert [row[4] for row in good] == ["accepted"]
    report = json.loads((corpus["settings"].resolve(conflict[6]) / "report.json").read_text())
    assert report["stage"] == "publish" and report["failed_rules"][0]["conflicts_with"] == good[0][0]
    assert sorted(path.name for path in corpus["settings"].resolve(conflict[6]).iterdir()) == sorted(
        [conflict[3], conflict[3] + ".manifest.json", "report.json"])


@pytest.mark.parametrize("case", sorted(DUPLICATE_OF))
def test_duplicate_kept_with_its_manifest_and_report(corpus, case):
    drop_id, operator, _feed, file_name, status, why, quarantine_path = _drop_for_case(corpus, case)
    assert status == "duplicate" and why.startswith("identical bytes to drop ") and "\n" not in why
    folder = corpus["settings"].resolve(quarantine_path)
    assert sorted(path.name for path in folder.iterdir()) == sorted([file_name, file_name + ".manifest.json", "report.json"])
    report = json.loads((folder / "report.json").read_text())
    assert report["drop_id"] == drop_id and report["reason"] == why
    original = next(row for row in corpus["drops"] if row[0] == report["duplicate_of"])
    assert original[1] == DUPLICATE_OF[case] and original[4] == "accepted"


@pytest.mark.parametrize("case", UNPARSABLE_TIME_CASES)
def test_unparsable_times_blame_only_the_time(corpus, case):
    drop_id, *_rest, why, quarantine_path = _drop_for_case(corpus, case)
    report = json.loads((corpus["settings"].resolve(quarantine_path) / "report.json").read_text())
    assert {item["rule"] for item in report["failed_rules"]} == {"event_time_parsable"}, report["failed_rules"]
    assert why.count(":") == 2 and "event_time_parsable" in why  # 'contract rules failed: event_time_parsable: N rows'
    skipped = {(rule, engine) for drop, rule, engine, passed in corpus["results"] if drop == drop_id and rule in (
        "no_duplicate_events", "unknown_cell_share")}
    with connect(corpus["settings"].warehouse_path, read_only=True) as con:
        details = con.execute("SELECT rule, engine, passed, details FROM check_results WHERE drop_id = ? AND rule IN "
                              "('no_duplicate_events', 'unknown_cell_share')", [drop_id]).fetchall()
    assert details and all(passed and details.startswith("not evaluated") for _rule, _engine, passed, details in details), details
    if case == "tri_string_times":
        assert ("unknown_cell_share", "duckdb") in skipped  # tri's registry is loaded: the rule would have run


def test_required_and_pseudonymisation_reasons_name_no_value(corpus):
    for case in ("empty_event_type", "one_subscriber_key"):
        drop = _drop_for_case(corpus, case)
        report = json.loads((corpus["settings"].resolve(drop[6]) / "report.json").read_text())
        failed = {item["rule"] for item in report["failed_rules"] if item["engine"] == "duckdb"}
        assert failed == {"event_type_required" if case == "empty_event_type" else "subscriber_key_rows_per_window"}
        assert hashlib.sha256(b"the same value").hexdigest() not in json.dumps(report)
    one_key = _drop_for_case(corpus, "one_subscriber_key")
    report = json.loads((corpus["settings"].resolve(one_key[6]) / "report.json").read_text())
    rule = next(item for item in report["failed_rules"] if item["engine"] == "duckdb")
    assert rule["unexpected_count"] == 850 and rule["example_rows"] == [1, 2, 3, 4, 5]
