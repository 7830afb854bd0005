"""Contract lint: ODCS validity plus this platform's conventions, one problem per line.

ODCS validity is checked twice: against the official ODCS JSON schema vendored in
``data_contracts/schemas/`` (the version the contract's ``apiVersion`` declares; what
``datacontract lint`` checks, including ``unevaluatedProperties``), and by parsing into the ODCS
pydantic model. Platform-specific settings live under ``customProperties``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from crowd_platform.common.contracts import (CANONICAL_EVENT_COLUMNS, CELLS_KIND, EVENTS_KIND, ColumnSpec, Contract, ContractError,
                                             event_contracts, parse_contract)
from crowd_platform.common.settings import CONTRACTS_DIR
from crowd_platform.ingestion.manifest import FEED_NAME
from crowd_platform.ingestion.rules import compile_rules, portable_regex_problem

CANONICAL_CELL_COLUMNS = ("cell_id", "lon", "lat", "radio")
LAYOUT_FORMATS = ("csv", "parquet")
ODCS_SCHEMAS_DIR = CONTRACTS_DIR / "schemas"  # the official schemas live with the code, not in $CROWD_CONTRACTS
MAX_MESSAGE = 200


def odcs_schema_path(api_version: str) -> Path:
    """The vendored official JSON schema of an ODCS version (``v3.1.0``)."""
    return ODCS_SCHEMAS_DIR / f"odcs-json-schema-{api_version}.json"


@lru_cache(maxsize=4)
def _odcs_validator(api_version: str):
    import jsonschema

    with open(odcs_schema_path(api_version), encoding="utf-8") as handle:
        schema = json.load(handle)
    return jsonschema.validators.validator_for(schema)(schema)


def _json_path(document: Any, path) -> str:
    """``schema.events.properties.subscriber_key.quality[2].dimension``: named items by name."""
    text, node = "", document
    for key in path:
        if isinstance(key, int):
            item = node[key] if isinstance(node, list) and key < len(node) else None
            named = isinstance(item, dict) and isinstance(item.get("name"), str) and text.endswith(("schema", "properties"))
            text += f".{item['name']}" if named else f"[{key}]"
            node = item
        else:
            text += f".{key}" if text else str(key)
            node = node.get(key) if isinstance(node, dict) else None
    return text or "(document)"


def schema_problems(name: str, document: dict) -> list[str]:
    """Violations of the official ODCS JSON schema, one line each: ``file: path.to.field: message``."""
    from jsonschema.exceptions import best_match

    api_version = str(document.get("apiVersion") or "")
    if not odcs_schema_path(api_version).is_file():
        known = sorted(path.stem.removeprefix("odcs-json-schema-") for path in ODCS_SCHEMAS_DIR.glob("odcs-json-schema-*.json"))
        return [f"{name}: apiVersion: {api_version or 'missing'}, no vendored ODCS schema for it (have {', '.join(known)})"]
    problems: dict[tuple[str, str], None] = {}
    for error in sorted(_odcs_validator(api_version).iter_errors(document), key=lambda error: [str(k) for k in error.absolute_path]):
        if error.validator in ("oneOf", "anyOf") and error.context:
            # The branch closest to the value explains more than "not valid under any of".
            error = best_match(error.context)
        where = _json_path(document, error.absolute_path)
        message = " ".join(error.message.split())
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        problems[(where, message)] = None
    return [f"{name}: {where}: {message}" for where, message in problems]


def _patterns(document: dict) -> list[tuple[str, str]]:
    """Every regex in a contract: (where, pattern)."""
    found = []
    for table in document.get("schema") or []:
        for prop in table.get("properties") or []:
            pattern = (prop.get("logicalTypeOptions") or {}).get("pattern")
            if pattern is not None:
                found.append((f"{prop.get('name')}.logicalTypeOptions.pattern", str(pattern)))
            for rule in prop.get("quality") or []:
                for key in ("pattern", "forbiddenPattern"):
                    value = (rule.get("arguments") or {}).get(key)
                    if value is not None:
                        found.append((f"rule {rule.get('name')}.{key}", str(value)))
    return found


def lint_contract(path: Path) -> list[str]:
    """Problems of one contract file (empty list when it is clean)."""
    name = path.name
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        return [f"{name}: not valid YAML ({str(error).splitlines()[0]})"]
    if not isinstance(document, dict):
        return [f"{name}: not a YAML mapping"]
    problems = schema_problems(name, document)
    try:
        contract = parse_contract(path)
    except (ContractError, KeyError, TypeError, ValueError) as error:
        problems.append(f"{name}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
        contract = None
    for where, pattern in _patterns(document):
        problem = portable_regex_problem(pattern)
        if problem:
            problems.append(f"{name}: regex at {where} {problem}")
    if contract is None:
        return problems
    if not contract.owners:
        problems.append(f"{name}: no owner (team.members[].role: owner)")
    if not contract.retention:
        problems.append(f"{name}: no retention (slaProperties property: retention)")
    problems.extend(_kind_problems(name, contract))
    if contract.kind in (EVENTS_KIND, CELLS_KIND):
        # Only drop feeds have an operator, a layout and canonical columns (not e.g. the platform's own datasets).
        problems.extend(_drop_feed_problems(name, contract))
    problems.extend(_rule_problems(name, contract))
    return problems


def _kind_problems(name: str, contract: Contract) -> list[str]:
    """A feed other than events/cells (e.g. sms) is an event feed: customProperties feed_kind: events."""
    declared = contract.custom.get("feed_kind")
    if declared is None:
        if contract.operator and contract.feed not in (EVENTS_KIND, CELLS_KIND):
            return [f"{name}: feed {contract.feed[:40]!r} of an operator needs customProperties feed_kind: {EVENTS_KIND}"]
        return []
    if not FEED_NAME.fullmatch(contract.feed):
        return [f"{name}: feed {contract.feed[:40]!r} is not a feed name (lowercase letters, digits and '_', at most 32)"]
    if declared != EVENTS_KIND or contract.feed == CELLS_KIND:
        return [f"{name}: feed_kind must be {EVENTS_KIND} (the only kind a feed other than cells can have)"]
    return []


def _market_share_problems(directory: Path) -> list[str]:
    """An operator's event feeds share one market share: every contract that declares it agrees."""
    problems = []
    for operator, feeds in event_contracts(directory).items():
        shares = {contract.market_share for contract in feeds.values() if contract.market_share is not None}
        if len(shares) > 1:
            problems.append(f"{operator}: its event feeds declare different market_share values ({', '.join(sorted(feeds))})")
    return problems


def _drop_feed_problems(name: str, contract: Contract) -> list[str]:
    """Operator, layout and canonical-column problems of an events or cells contract."""
    problems: list[str] = []
    if not contract.operator:
        problems.append(f"{name}: no operator (customProperties operator; '*' for shared feeds)")
    layout = contract.layout
    if layout.get("format") not in LAYOUT_FORMATS:
        problems.append(f"{name}: layout.format must be one of {', '.join(LAYOUT_FORMATS)}")
    if layout.get("format") == "csv" and not layout.get("delimiter"):
        problems.append(f"{name}: csv layout needs a delimiter")
    if layout.get("compression", "none") not in ("none", "gzip", "snappy", "zstd"):
        problems.append(f"{name}: unsupported layout.compression {layout.get('compression')!r}")
    if contract.key_id_pattern is not None:
        try:
            re.compile(contract.key_id_pattern)
        except re.error as error:
            problems.append(f"{name}: key_id_pattern is not a regular expression ({error})")
    problems.extend(_column_problems(name, contract))
    for column in contract.columns:
        problems.extend(f"{name}: column {column.name}: {problem}" for problem in _layout_option_problems(column, contract))
    return problems


def _layout_option_problems(column: ColumnSpec, contract: Contract) -> list[str]:
    """The column-level layout options (store, constant, booleans, dates), one problem per line."""
    problems: list[str] = []
    store = column.custom.get("store", True)
    if not isinstance(store, bool):
        problems.append("store must be true or false")
    if column.is_constant:
        if column.physical_name or column.transform_logic or column.transform_sources:
            problems.append("a constant is not read from the file: drop physicalName / transformLogic")
        if column.constant is None or isinstance(column.constant, (dict, list)):
            problems.append("constant must be a single value")
        if not column.stored:
            problems.append("a constant that is not stored has no use (store: false)")
    if not column.stored:
        problems.extend(_unstored_problems(column, contract))
    if column.logical_type == "boolean":
        problems.extend(_boolean_problems(column))
    elif column.logical_type in ("date", "timestamp"):
        time_format = str(column.options.get("format", "%Y-%m-%d" if column.logical_type == "date" else "epoch_ms"))
        if column.logical_type == "date" and "format" not in column.options:
            problems.append("date column needs logicalTypeOptions format (strftime codes, e.g. %Y-%m-%d)")
        elif not time_format.startswith("epoch_") and "%" not in time_format:
            problems.append(f"format {time_format[:40]!r} has no strftime code (write %Y-%m-%d, not yyyy-MM-dd)")
    return problems


def _unstored_problems(column: ColumnSpec, contract: Contract) -> list[str]:
    """A ``store: false`` column must not be one that staging, rules or consumers need."""
    problems: list[str] = []
    canonical = CANONICAL_EVENT_COLUMNS if contract.kind == EVENTS_KIND else CANONICAL_CELL_COLUMNS
    if column.name in canonical or column.required:
        problems.append("store: false on a canonical or required column (it would never reach the lake)")
    if column.quality:
        problems.append("store: false column has quality rules; rules run on staged data, which does not hold it")
    for rule in contract.table_quality:
        if column.name in [str(value) for value in (rule.get("arguments") or {}).get("properties") or []]:
            problems.append(f"store: false column is used by table rule {rule.get('name')}")
    return problems


def _boolean_problems(column: ColumnSpec) -> list[str]:
    """A boolean column declares its spellings, each once, and quoted (YAML reads yes/no as booleans)."""
    trues, falses = column.custom.get("true_values"), column.custom.get("false_values")
    if trues is None or falses is None:
        return ["boolean column needs customProperties true_values and false_values (e.g. ['1', 'Y'] and ['0', 'N'])"]
    spelled = [value for values in (trues, falses) for value in (values if isinstance(values, list) else [values])]
    problems = []
    if any(isinstance(value, bool) for value in spelled):
        problems.append("a true_values / false_values spelling is a YAML boolean: quote it ('yes', 'no')")
    lowered = [str(value).strip().lower() for value in spelled]
    if len(lowered) != len(set(lowered)):
        problems.append("a spelling is listed twice (or in both true_values and false_values)")
    return problems


def _column_problems(name: str, contract: Contract) -> list[str]:
    """Canonical columns mapped; for events, event_time's format and zone and subscriber_key's pii tag."""
    problems: list[str] = []
    expected = CANONICAL_EVENT_COLUMNS if contract.kind == EVENTS_KIND else CANONICAL_CELL_COLUMNS if contract.kind == CELLS_KIND else ()
    columns = {column.name: column for column in contract.columns}
    for canonical in expected:
        column = columns.get(canonical)
        if column is None:
            problems.append(f"{name}: canonical column {canonical} is not mapped")
        elif not (column.physical_name or column.is_constant or (column.transform_logic and column.transform_sources)):
            problems.append(f"{name}: column {canonical} has neither physicalName, transformLogic + transformSourceObjects nor a constant")
    if contract.kind == EVENTS_KIND and "event_time" in columns:
        options = columns["event_time"].options
        if not options.get("format") or not options.get("timezone"):
            problems.append(f"{name}: event_time needs logicalTypeOptions format and defaultTimezone")
        else:
            try:
                from zoneinfo import ZoneInfo

                ZoneInfo(str(options["timezone"]))
            except Exception:  # noqa: BLE001 - any failure means an unknown zone
                problems.append(f"{name}: unknown time zone {options['timezone']!r}")
    if contract.kind == EVENTS_KIND:
        subscriber = columns.get("subscriber_key")
        if subscriber is not None and "pii" not in subscriber.tags:
            problems.append(f"{name}: subscriber_key must be tagged pii")
    return problems


def _rule_problems(name: str, contract: Contract) -> list[str]:
    """Whether the contract's quality rules compile."""
    try:
        compile_rules(contract)
    except ContractError as error:
        return [f"{name}: {str(error).split(': ', 1)[-1]}"]
    return []


def lint_directory(directory: Path) -> tuple[int, list[str]]:
    files = sorted(directory.glob("*.yaml"))
    problems: list[str] = []
    for path in files:
        problems.extend(lint_contract(path))
    if not problems:  # across files: only once each file parses
        problems.extend(_market_share_problems(directory))
    return len(files), problems
