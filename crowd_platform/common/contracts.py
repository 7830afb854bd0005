"""Data contracts (ODCS v3 YAML in ``data_contracts/``): the single source of truth.

Code reads layouts, schemas, quality rules, market shares and retention from here; it does
not repeat them. Adding an operator is one new ``<operator>_events.yaml`` file; another event
feed of that operator (e.g. sms, delivered separately) is one more file with customProperties
``feed: sms`` and ``feed_kind: events`` (see :func:`event_contracts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from open_data_contract_standard.model import OpenDataContractStandard

from crowd_platform.common.timeutil import parse_utc

CANONICAL_EVENT_COLUMNS = ("subscriber_key", "cell_id", "event_time", "event_type")
CANONICAL_EVENT_TYPES = ("call", "sms", "data", "location_update")
# Feed kinds: an operator may deliver several event feeds (e.g. calls, sms, data sessions), each
# with its own contract (customProperties ``feed`` and ``feed_kind: events``); a window counts
# every one of them. ``events`` and ``cells`` are their own kind.
EVENTS_KIND = "events"
CELLS_KIND = "cells"

# ODCS units -> hours, for retention periods.
_UNIT_HOURS = {"h": 1, "hour": 1, "hours": 1, "d": 24, "day": 24, "days": 24, "w": 168, "week": 168,
               "weeks": 168, "y": 24 * 365, "year": 24 * 365, "years": 24 * 365, "min": 1 / 60}


class ContractError(ValueError):
    """A contract file that does not satisfy ODCS or this platform's conventions."""


@dataclass(frozen=True)
class ColumnSpec:
    """One canonical column and how the operator's layout maps onto it."""

    name: str
    physical_name: str | None
    logical_type: str
    required: bool
    classification: str | None
    tags: tuple[str, ...]
    options: dict[str, Any]
    quality: tuple[dict[str, Any], ...]
    custom: dict[str, Any]
    transform_logic: str | None = None
    transform_sources: tuple[str, ...] = ()

    @property
    def stored(self) -> bool:
        """False for a column read from the drop but never staged or published
        (customProperties ``store: false``, data minimisation)."""
        return self.custom.get("store", True) is not False

    @property
    def is_constant(self) -> bool:
        """A column whose every value is the contract's customProperties ``constant``; not in the file."""
        return "constant" in self.custom

    @property
    def constant(self) -> Any:
        return self.custom.get("constant")


@dataclass(frozen=True)
class Contract:
    path: Path
    contract_id: str
    version: str
    operator: str | None
    feed: str
    layout: dict[str, Any]
    columns: tuple[ColumnSpec, ...]
    table_quality: tuple[dict[str, Any], ...]
    retention: dict[str, float]          # element -> hours
    custom: dict[str, Any] = field(default_factory=dict)
    owners: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def stored_columns(self) -> tuple[ColumnSpec, ...]:
        """The columns staged and published (``store: false`` ones are read, then dropped)."""
        return tuple(column for column in self.columns if column.stored)

    def column(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def market_share(self) -> float | None:
        value = self.custom.get("market_share")
        return float(value) if value is not None else None

    @property
    def kind(self) -> str:
        """What the feed carries: ``events`` (counted into presence) or ``cells``; customProperties
        ``feed_kind``, by default the feed name (so an ``events`` feed is of kind events)."""
        return str(self.custom.get("feed_kind") or self.feed)

    @property
    def key_id_pattern(self) -> str | None:
        """Regular expression a manifest's pseudonymization.key_id must match in full (None: the default)."""
        value = self.custom.get("key_id_pattern")
        return str(value) if value is not None else None

    @property
    def status(self) -> str:
        return str(self.raw.get("status") or "active")

    @property
    def latency_minutes(self) -> float | None:
        """How long after its window ends a drop may still land (slaProperties ``latency``)."""
        for sla in self.raw.get("slaProperties") or []:
            if sla.get("property") == "latency":
                return _hours(sla.get("value"), sla.get("unit"), f"{self.path.name} latency") * 60
        return None

    def active_at(self, moment: datetime) -> bool:
        """Is this feed expected to deliver for a window starting at ``moment``? An active
        contract, within its optional ``active_from`` / ``active_until`` custom properties
        (ISO dates or times, UTC), so that onboarding or offboarding an operator does not make
        earlier or later windows look incomplete."""
        if self.status != "active":
            return False
        start, until = self.custom.get("active_from"), self.custom.get("active_until")
        if start is not None and moment < parse_utc(start, what=f"{self.contract_id} active_from"):
            return False
        return until is None or moment < parse_utc(until, what=f"{self.contract_id} active_until")

    @property
    def mnc(self) -> tuple[str, ...]:
        return tuple(str(value) for value in self.custom.get("mnc", ()))

    def rules(self) -> list[tuple[str | None, dict[str, Any]]]:
        """Every quality rule as (column or None for table-level, rule dict)."""
        found: list[tuple[str | None, dict[str, Any]]] = [(None, rule) for rule in self.table_quality]
        for column in self.columns:
            found.extend((column.name, rule) for rule in column.quality)
        return found

    def retention_hours(self, element: str | None = None, default: float | None = None) -> float:
        """Retention for an element (``events.subscriber_key``) or the contract's first one."""
        if element and element in self.retention:
            return self.retention[element]
        if element is None and self.retention:
            return next(iter(self.retention.values()))
        if default is not None:
            return default
        raise ContractError(f"{self.contract_id}: no retention declared for {element or 'any element'}")


def custom_properties(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    """ODCS ``customProperties`` (a list of property/value items) as a dict."""
    return {item["property"]: item.get("value") for item in (items or []) if item.get("property")}


def _options(options: dict[str, Any] | None) -> dict[str, Any]:
    """A column's logicalTypeOptions; ``timezone`` is the zone name its local values are in.

    ODCS v3.1 spells that ``defaultTimezone`` (its ``timezone`` is a boolean: do the values
    carry their own zone); older contracts put the zone name in ``timezone``. Code reads
    ``options["timezone"]`` either way."""
    found = dict(options or {})
    if isinstance(found.get("defaultTimezone"), str):
        found["timezone"] = found["defaultTimezone"]
    elif not isinstance(found.get("timezone"), str):
        found.pop("timezone", None)
    return found


def _hours(value: Any, unit: str | None, where: str) -> float:
    factor = _UNIT_HOURS.get((unit or "").lower())
    if factor is None:
        raise ContractError(f"{where}: unknown retention unit {unit!r}")
    return float(value) * factor


def parse_contract(path: Path) -> Contract:
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, dict):
        raise ContractError(f"{path.name}: not a YAML mapping")
    try:
        OpenDataContractStandard.model_validate(document)
    except Exception as error:  # pydantic's message is long; keep the first line
        first = str(error).splitlines()[0]
        raise ContractError(f"{path.name}: not a valid ODCS contract ({first})") from None
    custom = custom_properties(document.get("customProperties"))
    schema = document.get("schema") or []
    if not schema:
        raise ContractError(f"{path.name}: no schema")
    table = schema[0]
    columns = []
    for prop in table.get("properties") or []:
        columns.append(
            ColumnSpec(
                name=prop["name"],
                physical_name=prop.get("physicalName"),
                logical_type=prop.get("logicalType", "string"),
                required=bool(prop.get("required", False)),
                classification=prop.get("classification"),
                tags=tuple(prop.get("tags") or ()),
                options=_options(prop.get("logicalTypeOptions")),
                quality=tuple(prop.get("quality") or ()),
                custom=custom_properties(prop.get("customProperties")),
                transform_logic=prop.get("transformLogic"),
                transform_sources=tuple(prop.get("transformSourceObjects") or ()),
            )
        )
    retention = {}
    for sla in document.get("slaProperties") or []:
        if sla.get("property") == "retention":
            element = sla.get("element") or table.get("name")
            retention[element] = _hours(sla.get("value"), sla.get("unit"), f"{path.name} retention")
    owners = tuple(
        member.get("username") for member in (document.get("team") or {}).get("members", []) if member.get("role") == "owner"
    )
    return Contract(
        path=path,
        contract_id=document["id"],
        version=str(document["version"]),
        operator=custom.get("operator"),
        feed=str(custom.get("feed", table.get("name"))),
        layout=dict(custom.get("layout") or {}),
        columns=tuple(columns),
        table_quality=tuple(table.get("quality") or ()),
        retention=retention,
        custom=custom,
        owners=owners,
        raw=document,
    )


# The platform's own datasets contract (retention of every table, what is published) ships with
# the code. A deployment's contracts folder (CROWD_CONTRACTS) holds its operators' contracts and
# may carry its own copy to override it; without one, the shipped file applies.
PLATFORM_CONTRACT_FILE = Path(__file__).resolve().parents[2] / "data_contracts" / "platform_datasets.yaml"
PLATFORM_CONTRACT_ID = "platform-datasets"


@lru_cache(maxsize=8)
def _load_cached(stamp: tuple[tuple[str, float], ...]) -> tuple[Contract, ...]:
    return tuple(parse_contract(Path(path)) for path, _ in stamp)


def load_contracts(directory: Path) -> tuple[Contract, ...]:
    """Every contract in the folder, plus the shipped platform datasets contract when the folder has
    no ``platform_datasets.yaml`` of its own (cached until a file changes)."""
    files = sorted(directory.glob("*.yaml"))
    if not any(path.name == PLATFORM_CONTRACT_FILE.name for path in files) and PLATFORM_CONTRACT_FILE.exists():
        files.append(PLATFORM_CONTRACT_FILE)
    stamp = tuple((str(path), path.stat().st_mtime) for path in files)
    return _load_cached(stamp)


def platform_contract(directory: Path) -> Contract:
    """The platform's own datasets contract (retention, what is published) for a contracts folder."""
    found = next((contract for contract in load_contracts(directory) if contract.contract_id == PLATFORM_CONTRACT_ID), None)
    if found is None:
        raise ContractError(f"no {PLATFORM_CONTRACT_ID} contract in {directory}")
    return found


def operator_contracts(directory: Path, feed: str = "events") -> dict[str, Contract]:
    """Operator -> contract for one feed (by name). Operators are whoever has a contract: no list in
    code. Every event feed of an operator: :func:`event_contracts`."""
    return {
        contract.operator: contract
        for contract in load_contracts(directory)
        if contract.operator and contract.feed == feed
    }


def event_contracts(directory: Path) -> dict[str, dict[str, Contract]]:
    """Operator -> {feed: contract} of its event-kind feeds (``events``, ``sms``, ...), feeds sorted."""
    found: dict[str, dict[str, Contract]] = {}
    for contract in sorted(load_contracts(directory), key=lambda item: item.feed):
        if contract.operator and contract.operator != "*" and contract.kind == EVENTS_KIND:
            found.setdefault(contract.operator, {})[contract.feed] = contract
    return found


def operator_contract(feeds: dict[str, Contract]) -> Contract:
    """The contract holding an operator's own properties (market share): its ``events`` feed's,
    else its first event feed's that declares a market share, else its first."""
    if EVENTS_KIND in feeds:
        return feeds[EVENTS_KIND]
    return next((contract for contract in feeds.values() if contract.market_share is not None), next(iter(feeds.values())))


def operator_event_contracts(directory: Path) -> dict[str, Contract]:
    """Operator -> the contract of its own properties, for every operator with an event feed."""
    return {operator: operator_contract(feeds) for operator, feeds in sorted(event_contracts(directory).items())}


def contract_for(directory: Path, operator: str, feed: str) -> Contract | None:
    """The contract of an operator's feed: its own, else a shared one (operator ``*``)."""
    own = operator_contracts(directory, feed).get(operator)
    if own is not None or operator not in event_contracts(directory):
        return own
    # Shared feeds (e.g. cells) have one contract for every operator that has an event feed.
    for contract in load_contracts(directory):
        if contract.feed == feed and contract.operator in (None, "*"):
            return contract
    return None


def operator_feeds(directory: Path, operator: str) -> dict[str, str]:
    """Feed -> kind of every feed an operator may deliver (its own contracts and shared ones)."""
    if operator not in event_contracts(directory):
        return {}
    return {contract.feed: contract.kind for contract in load_contracts(directory)
            if contract.operator in (None, "*", operator) and contract.kind in (EVENTS_KIND, CELLS_KIND)
            and contract_for(directory, operator, contract.feed) is contract}
