"""Landing hardening: links are refused once (never followed, never looping), names with control
characters are refused and only ever shown escaped, and the manifest's key_id has a format.

Real DuckDB, real Dagster (instance_for_test), the real landing sensor driven by
``process_pending`` exactly as `crowd-platform run` drives it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from crowd_platform.cli import main
from crowd_platform.common.contracts import contract_for
from crowd_platform.common.settings import get_settings
from crowd_platform.common.text import escape_text, has_control_chars
from crowd_platform.ingestion.fixtures import canonical_events
from crowd_platform.ingestion.manifest import ManifestError, parse_manifest_bytes
from crowd_platform.ingestion.sensors import evaluate_landing
from crowd_platform.runner.orchestration import process_pending
from crowd_platform.simulator import keys
from crowd_platform.simulator.drops import write_drop

WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)
WINDOW_END = WINDOW + timedelta(minutes=15)
CONTROL_NAME = "bad\n\x1b[31mred\u202e.csv.gz"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWD_HOME", str(tmp_path / "home"))
    settings = get_settings()
    settings.ensure_dirs()
    return settings


def _drop(landing: Path, settings, operator: str, delivery: int = 1, **kwargs) -> tuple[Path, Path]:
    contract = contract_for(settings.contracts_dir, operator, "events")
    return write_drop(landing, contract, canonical_events(contract, WINDOW, 20, seed=delivery), window_start=WINDOW,
                      window_end=WINDOW_END, delivery=delivery, **kwargs)


def _rows(settings, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _unroutable(settings) -> dict[str, tuple[str, str]]:
    """reason -> (drop_id, file_name) of the unroutable quarantine records (one per reason here)."""
    rows = _rows(settings, "SELECT drop_id, reason, file_name FROM drops WHERE drop_id LIKE 'unroutable_%'")
    reasons = Counter(row[1] for row in rows)
    assert all(count == 1 for count in reasons.values()), reasons
    return {row[1]: (row[0], row[2]) for row in rows}


def _reasons(settings) -> Counter:
    return Counter(row[0] for row in _rows(settings, "SELECT reason FROM drops WHERE drop_id LIKE 'unroutable_%'"))


def _run_repeatedly(settings, times: int = 3) -> list:
    summaries = []
    with dg.instance_for_test() as instance:
        for _ in range(times):
            summaries.append(process_pending(settings, instance, progress=lambda _: None, max_ticks=25))
    return summaries


# ---------------------------------------------------------------- links
def _linked_landing(settings, outside: Path) -> dict[str, Path]:
    """A symlinked operator folder, a symlinked file, a hard-linked stray file and a drop whose
    data file is a hard link: every link target lives outside landing and must stay untouched."""
    target_data, target_manifest = _drop(outside, settings, "telkomsel")
    (settings.landing / "telkomsel").symlink_to(outside / "telkomsel", target_is_directory=True)
    indosat = settings.landing / "indosat"
    indosat.mkdir(parents=True)
    secret = outside / "secret.txt"
    secret.write_text("outside landing\n")
    (indosat / "evil.csv.gz").symlink_to(secret)
    os.link(secret, indosat / "stray.csv.gz")
    data, manifest = _drop(outside, settings, "indosat", delivery=2)
    os.link(data, indosat / data.name)          # the data file is a second name of a file outside landing
    (indosat / manifest.name).write_bytes(manifest.read_bytes())
    return {"secret": secret, "telkomsel_data": target_data, "telkomsel_manifest": target_manifest, "indosat_data": data}


def test_links_are_refused_once_never_followed_and_never_loop(home, tmp_path):
    settings = home
    outside = tmp_path / "outside"
    targets = _linked_landing(settings, outside)
    kept = {name: path.read_bytes() for name, path in targets.items()}

    summaries = _run_repeatedly(settings, times=3)

    # One quarantine run on the first pass; nothing left to ask for afterwards (no loop).
    assert [summary.runs for summary in summaries] == [1, 0, 0], [vars(summary) for summary in summaries]
    assert all(summary.ok for summary in summaries)
    records = _unroutable(settings)
    assert set(records) == {"unroutable: operator folder is a symlink", "unroutable: symlink in landing",
                            "unroutable: hard link in landing", "unroutable: data file is a hard link"}
    audits = Counter(_rows(settings, "SELECT object_id FROM audit_log WHERE action = 'drop_quarantined'"))
    assert len(audits) == 4 and set(audits.values()) == {1}
    # Nothing behind a link was read or ingested; every link target is where it was, unchanged.
    assert _rows(settings, "SELECT count(*) FROM drops WHERE drop_id NOT LIKE 'unroutable_%'") == [(0,)]
    assert {name: path.read_bytes() for name, path in targets.items()} == kept
    # Nothing lost: the links themselves are in quarantine (a symlink still a symlink), landing is empty.
    folder_link = settings.resolve(_rows(settings, "SELECT quarantine_path FROM drops WHERE drop_id = ?",
                                         [records["unroutable: operator folder is a symlink"][0]])[0][0]) / "telkomsel"
    assert folder_link.is_symlink() and os.readlink(folder_link) == str(outside / "telkomsel")
    assert sorted(p.name for p in settings.landing.rglob("*")) == ["indosat"]
    report = json.loads((folder_link.parent / "report.json").read_text())
    assert report["reason"] == "unroutable: operator folder is a symlink" and report["files"] == ["telkomsel"]


def test_sensor_asks_once_for_a_symlinked_operator_folder(home, tmp_path):
    settings = home
    (tmp_path / "elsewhere").mkdir()
    (settings.landing / "xl").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    requests, cursor, stats = evaluate_landing(None)
    assert [request.job_name for request in requests] == ["quarantine_unroutable_job"] and stats["unroutable"] == 1
    for _ in range(5):  # the run has not happened yet: the cursor keeps it from being asked again
        requests, cursor, stats = evaluate_landing(cursor)
        assert requests == [] and stats["unroutable"] == 0


# ---------------------------------------------------------------- control characters
def test_control_characters_refused_and_only_shown_escaped(home, capsys):
    settings = home
    folder = settings.landing / "telkomsel"
    data, manifest = _drop(settings.landing, settings, "telkomsel")
    (folder / CONTROL_NAME).write_bytes(b"not even a drop\n")
    (folder / (CONTROL_NAME + ".manifest.json")).write_bytes(manifest.read_bytes())
    document = json.loads(manifest.read_text())
    document["created_at"] = "2020-03-31T01:16:00Z\x1b[2J"
    manifest.write_text(json.dumps(document))  # JSON escapes it; the parsed value holds a raw ESC
    _run_repeatedly(settings, times=2)

    # The data file and its manifest (both named with control characters), and the bad field's drop.
    assert _reasons(settings) == {"unroutable: file name has control characters": 2,
                                  "unroutable: manifest field created_at contains control characters": 1}
    capsys.readouterr()
    assert main(["quarantine", "list"]) == 0
    outputs = [capsys.readouterr().out]
    for drop_id, in _rows(settings, "SELECT drop_id FROM drops"):
        assert main(["quarantine", "show", drop_id]) == 0
        outputs.append(capsys.readouterr().out)
    for output in outputs:
        for line in output.split("\n"):
            assert not has_control_chars(line.replace("\t", "")), repr(line)
    shown = "".join(outputs)
    assert "bad\\n\\x1b[31mred\\u202e.csv.gz" in shown and CONTROL_NAME not in shown
    assert sorted(p.name for p in settings.landing.rglob("*")) == ["telkomsel"]
    assert data.name not in {p.name for p in settings.landing.rglob("*")}


@pytest.mark.parametrize("field,value", [("file", "x\u202egz.csv"), ("file", "a\nb.csv"), ("contract_version", "1.0.0\x1b[0m"),
                                         ("operator", "telkomsel\u200b"), ("extra", {"note\n": "x"}), ("extra", ["ok", "\x07"])])
def test_manifest_string_fields_with_control_characters_are_refused(home, field, value):
    data, manifest = _drop(home.landing, home, "telkomsel")
    document = json.loads(manifest.read_text())
    document[field] = value
    with pytest.raises(ManifestError, match="control characters") as raised:
        parse_manifest_bytes(json.dumps(document).encode(), folder_operator="telkomsel")
    assert not has_control_chars(str(raised.value))


def test_escape_text_is_one_printable_line():
    assert escape_text("a\nb\x1b[31m\u202e\\") == "a\\nb\\x1b[31m\\u202e\\\\"
    assert escape_text("plain Jakarta café \\ ok") == "plain Jakarta café \\ ok"
    assert escape_text("\udcff") == "\\udcff"  # a non-UTF-8 byte as the OS decodes it
    assert not has_control_chars(escape_text("".join(chr(code) for code in range(0x20)) + "\x7f\x85\u2028\ufeff"))


# ---------------------------------------------------------------- key_id
@pytest.mark.parametrize("key_id", ["tsel-20200331 ", "../tsel-20200331", "tsel\n20200331", "x" * 65, "", 20200331, None,
                                    "__missing__"])
def test_unsafe_key_id_is_refused(home, key_id):
    data, manifest = _drop(home.landing, home, "telkomsel")
    document = json.loads(manifest.read_text())
    if key_id == "__missing__":
        del document["pseudonymization"]["key_id"]
    else:
        document["pseudonymization"]["key_id"] = key_id
    with pytest.raises(ManifestError, match=r"pseudonymization\.key_id"):
        parse_manifest_bytes(json.dumps(document).encode(), folder_operator="telkomsel")


@pytest.mark.parametrize("operator", sorted(keys.KEY_ID_PREFIX))
def test_platform_key_ids_are_accepted(home, operator):
    data, manifest = _drop(home.landing, home, operator, key_id=keys.key_id(operator, WINDOW.date()))
    parsed = parse_manifest_bytes(manifest.read_bytes(), folder_operator=operator)
    assert parsed.key_id == keys.key_id(operator, WINDOW.date())


CONTRACT_REASON = "manifest pseudonymization.key_id does not match the contract's key_id_pattern"


@pytest.mark.parametrize("key_id", ["xl-2020-03-31", "k", "XL-20200331", "xl_20200331"])
def test_key_id_outside_the_contracts_pattern_is_quarantined_with_reason(home, key_id):
    settings = home
    data, manifest = _drop(settings.landing, settings, "xl", key_id=key_id)
    _run_repeatedly(settings, times=2)
    ((reason, stage, quarantine_path),) = _rows(
        settings, "SELECT reason, status, quarantine_path FROM drops WHERE file_name = ?", [data.name])
    assert reason == CONTRACT_REASON and stage == "quarantined"
    quarantine = settings.resolve(quarantine_path)
    assert sorted(p.name for p in quarantine.iterdir()) == sorted([data.name, manifest.name, "report.json"])
    assert json.loads((quarantine / "report.json").read_text())["failed_rules"][0]["rule"] == "key_id_matches_contract"


def test_a_contract_declares_its_own_key_id_pattern(home, tmp_path, monkeypatch):
    """A third operator names its keys its own way: its contract says so, no code changes."""
    import shutil

    import yaml

    contracts = tmp_path / "contracts"
    shutil.copytree(home.contracts_dir, contracts)
    path = contracts / "xl_events.yaml"
    document = yaml.safe_load(path.read_text())
    document["customProperties"].append({"property": "key_id_pattern", "value": "XLK_[0-9]{4}_[0-9]{2}"})
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    monkeypatch.setenv("CROWD_CONTRACTS", str(contracts))
    settings = get_settings()
    data, _ = _drop(settings.landing, settings, "xl", key_id="XLK_2020_13")
    _run_repeatedly(settings, times=1)
    ((status, reason),) = _rows(settings, "SELECT status, reason FROM drops WHERE file_name = ?", [data.name])
    assert reason != CONTRACT_REASON and status in ("accepted", "validated", "staged")
