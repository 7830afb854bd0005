"""`crowd-platform contracts lint`: the shipped contracts are clean; broken ones are caught,
one line per problem, non-zero exit."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from crowd_platform.cli import main
from crowd_platform.common.contracts import contract_for
from crowd_platform.ingestion.lint import lint_contract
from crowd_platform.ingestion.rules import compile_rules, portable_regex_problem
from crowd_platform.common.settings import CONTRACTS_DIR, get_settings


# The default deployment's contracts and every other shipped deployment's (docs/onboarding.md).
CONTRACT_FOLDERS = [CONTRACTS_DIR, *sorted((CONTRACTS_DIR.parent / "deployments").glob("*/data_contracts"))]


@pytest.mark.parametrize("folder", CONTRACT_FOLDERS, ids=lambda folder: folder.parent.name)
def test_shipped_contracts_are_clean(capsys, folder):
    assert main(["contracts", "lint", "--dir", str(folder)]) == 0
    assert "0 problem(s)" in capsys.readouterr().out


def test_cells_contract_is_shared_by_every_operator():
    settings = get_settings()
    cells = contract_for(settings.contracts_dir, "xl", "cells")
    assert cells is not None and cells.operator == "*" and cells.retention
    assert {spec.name for spec in compile_rules(cells)} >= {"cell_id_format", "lon_in_indonesia", "radio_valid", "cell_id_unique"}


@pytest.mark.parametrize("pattern,portable", [
    (r"^[0-9a-f]{64}$", True), (r"^(\+?62|0)8[0-9]{7,12}$", True), (r"^(?!0)[0-9]+$", False),
    (r"^(?<=a)b$", False), (r"^(a)\1$", False), (r"^a++$", False), (r"^(unclosed$", False),
])
def test_regex_common_subset(pattern, portable):
    assert (portable_regex_problem(pattern) is None) is portable


def _mutate(document):
    document["team"]["members"] = [member for member in document["team"]["members"] if member["role"] != "owner"]
    document["slaProperties"] = [sla for sla in document["slaProperties"] if sla["property"] != "retention"]
    properties = document["schema"][0]["properties"]
    document["schema"][0]["properties"] = [prop for prop in properties if prop["name"] != "event_type"]
    subscriber = next(prop for prop in properties if prop["name"] == "subscriber_key")
    subscriber["quality"][1]["arguments"]["pattern"] = "^(?![0-9]+$)[0-9a-f]{64}$"
    subscriber["quality"].append({"name": "mystery", "metric": "entropy", "mustBe": 0})
    return document


def test_broken_contract_is_caught_one_line_per_problem(tmp_path, capsys):
    for path in CONTRACTS_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    broken = tmp_path / "telkomsel_events.yaml"
    broken.write_text(yaml.safe_dump(_mutate(yaml.safe_load(broken.read_text())), sort_keys=False))
    (tmp_path / "not_odcs.yaml").write_text("apiVersion: v3.1.0\nkind: DataContract\nid: x\n")
    assert main(["contracts", "lint", "--dir", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    problems = lines[:-1]
    joined = "\n".join(problems)
    for fragment in ("no owner", "no retention", "event_type is not mapped", "look-around", "not_odcs.yaml"):
        assert fragment in joined, fragment
    assert all(line.endswith(".yaml") is False and ": " in line for line in problems)
    assert lines[-1].startswith("8 contract(s) checked")


def test_unknown_rule_metric_is_reported(tmp_path):
    document = yaml.safe_load((CONTRACTS_DIR / "xl_events.yaml").read_text())
    document["schema"][0]["quality"].append({"name": "mystery", "metric": "entropy", "mustBe": 0})
    path = tmp_path / "xl_events.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert any("mystery" in problem and "unsupported rule" in problem for problem in lint_contract(path))


def test_lint_bad_input_exits_non_zero_with_one_line(tmp_path, capsys):
    assert main(["contracts", "lint", "--dir", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_every_contract_validates_against_the_vendored_odcs_schema():
    import jsonschema

    from crowd_platform.ingestion.lint import odcs_schema_path, schema_problems

    paths = sorted(path for folder in CONTRACT_FOLDERS for path in folder.glob("*.yaml"))
    assert len(paths) >= 10
    for path in paths:
        document = yaml.safe_load(path.read_text())
        schema_file = odcs_schema_path(document["apiVersion"])
        assert schema_file.is_file(), f"{path.name}: no vendored schema for {document['apiVersion']}"
        schema = json.loads(schema_file.read_text())
        jsonschema.validators.validator_for(schema).check_schema(schema)
        assert schema_problems(path.name, document) == [], path.name


def test_non_odcs_dimension_is_reported_in_one_line(tmp_path):
    document = yaml.safe_load((CONTRACTS_DIR / "telkomsel_events.yaml").read_text())
    subscriber = next(prop for prop in document["schema"][0]["properties"] if prop["name"] == "subscriber_key")
    index, rule = next((i, rule) for i, rule in enumerate(subscriber["quality"]) if rule["name"] == "subscriber_key_not_msisdn")
    rule["dimension"] = "privacy"  # the platform's marker belongs in customProperties, not in the ODCS enum
    path = tmp_path / "telkomsel_events.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    problems = lint_contract(path)
    assert problems == [
        f"telkomsel_events.yaml: schema.events.properties.subscriber_key.quality[{index}].dimension: 'privacy' is not one of "
        "['accuracy', 'completeness', 'conformity', 'consistency', 'coverage', 'timeliness', 'uniqueness']"
    ]


def test_unknown_fields_and_unknown_api_version_are_reported(tmp_path):
    document = yaml.safe_load((CONTRACTS_DIR / "xl_events.yaml").read_text())
    document["servers"][0]["delimiter"] = ","
    path = tmp_path / "xl_events.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert lint_contract(path) == ["xl_events.yaml: servers[0]: Unevaluated properties are not allowed ('delimiter' was unexpected)"]
    document["apiVersion"] = "v9.9.9"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert any(problem.startswith("xl_events.yaml: apiVersion: v9.9.9, no vendored ODCS schema") for problem in lint_contract(path))


def test_moved_platform_fields_are_read_as_before():
    """Zone names (ODCS defaultTimezone), custom-rule thresholds (inside implementation) and the
    privacy marker (a customProperty) keep their meaning."""
    settings = get_settings()
    telkomsel = contract_for(settings.contracts_dir, "telkomsel", "events")
    assert telkomsel.column("event_time").options["timezone"] == "Asia/Jakarta"
    specs = {spec.name: spec for spec in compile_rules(telkomsel)}
    assert specs["unknown_cell_share"].threshold == ("mustBeLessOrEqualTo", 0.01)
    assert specs["event_time_in_window"].threshold == ("mustBe", 0)
    assert specs["subscriber_key_not_msisdn"].quarantine_reason == "raw_msisdn"
    rule = next(rule for column, rule in telkomsel.rules() if rule.get("name") == "subscriber_key_not_msisdn")
    assert {"property": "privacy", "value": True} in rule["customProperties"]
