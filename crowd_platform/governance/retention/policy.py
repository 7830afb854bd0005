"""Retention periods come from the data contracts only, so the contract a reviewer reads is the
policy that runs: ``data_contracts/platform_datasets.yaml`` dates every dataset (slaProperties)
and, per warehouse table, names the column that dates a row; for a drop, the contract of its own
feed wins (``events.subscriber_key`` for an event feed; the feed's element, e.g. ``cells``, for
a cell list), then the operator's, then the platform's value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from crowd_platform.common.contracts import (
    Contract,
    contract_for,
    custom_properties,
    load_contracts,
    operator_event_contracts,
    platform_contract,
)
from crowd_platform.common.erasure import FILE_METHOD  # noqa: F401 - the one file-deletion method name
from crowd_platform.common.settings import Settings

DROP_ELEMENT = "events.subscriber_key"
ROWS_METHOD = "DELETE + rebuild (COPY FROM DATABASE to fresh file, atomic replace)"
SAMPLE_KEYS_PER_FILE = 5

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Rule:
    contract_id: str
    element: str
    hours: float

    @property
    def policy(self) -> str:
        return f"{self.contract_id}#retention:{self.element}"

    @property
    def period(self) -> str:
        hours = self.hours
        if hours >= 24 * 365 and hours % (24 * 365) == 0:
            return f"{int(hours // (24 * 365))}y"
        if hours >= 168 and hours % 168 == 0:
            return f"{int(hours // 168)}w"
        if hours >= 24 and hours % 24 == 0:
            return f"{int(hours // 24)}d"
        return f"{hours:g}h"


@dataclass(frozen=True)
class TableRule:
    table: str
    column: str
    rule: Rule
    published: bool
    keep_at_sunset: bool


@dataclass(frozen=True)
class RetentionPolicy:
    platform: Contract
    operators: dict[str, Contract]
    tables: tuple[TableRule, ...]
    feeds: dict[tuple[str, str], Contract] = field(default_factory=dict)   # (operator, feed) -> its contract

    def rule(self, element: str) -> Rule:
        return Rule(self.platform.contract_id, element, self.platform.retention_hours(element))

    def keeps_at_sunset(self, element: str) -> bool:
        """The schema object says ``sunset: keep`` (proof kept when the emergency ends)."""
        for obj in self.platform.raw.get("schema") or []:
            if obj.get("name") == element:
                return custom_properties(obj.get("customProperties")).get("sunset") == "keep"
        return False

    def drop_rule(self, operator: str | None, feed: str = "events") -> Rule:
        """The drop's own feed contract wins (two feeds of one operator may keep their drops for
        different periods; a cell list is reference data kept for its own period), then the
        operator's contract, then the platform's value."""
        own = self.feeds.get((operator or "", feed))
        if own is not None:
            for element in (DROP_ELEMENT, own.feed, own.kind):
                if element in own.retention:
                    return Rule(own.contract_id, element, own.retention[element])
        contract = self.operators.get(operator or "")
        if contract is not None and DROP_ELEMENT in contract.retention:
            return Rule(contract.contract_id, DROP_ELEMENT, contract.retention[DROP_ELEMENT])
        return self.rule(DROP_ELEMENT)


def load_policy(settings: Settings) -> RetentionPolicy:
    platform = platform_contract(settings.contracts_dir)
    tables = []
    for obj in platform.raw.get("schema") or []:
        custom = custom_properties(obj.get("customProperties"))
        if custom.get("storage") != "warehouse" or obj["name"] not in platform.retention:
            continue
        tables.append(TableRule(
            table=obj.get("physicalName") or obj["name"],
            column=str(custom["retention_column"]),
            rule=Rule(platform.contract_id, obj["name"], platform.retention[obj["name"]]),
            published=bool(custom.get("published", False)),
            keep_at_sunset=custom.get("sunset") == "keep",
        ))
    operators = operator_event_contracts(settings.contracts_dir)
    feeds = {contract.feed for contract in load_contracts(settings.contracts_dir) if contract.feed}
    by_feed = {(operator, feed): contract for operator in operators for feed in sorted(feeds)
               if (contract := contract_for(settings.contracts_dir, operator, feed)) is not None}
    return RetentionPolicy(platform, operators, tuple(tables), by_feed)
