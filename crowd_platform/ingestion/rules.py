"""Contract quality rules, compiled once and run by two engines.

``compile_rules`` turns the ODCS quality section of a contract into ``RuleSpec`` objects.
From those, ``run_duckdb_rules`` builds SQL over the staging Parquet (exact counts and up to
five example row numbers, one scan for all row-level rules), and ``build_gx_suite`` /
``run_gx_rules`` build and run the equivalent Great Expectations 1.x suite on a pandas frame.
Both engines measure; the same threshold function decides pass/fail, so they agree by
construction on what "pass" means (tests check they agree on real drops).

Results hold counts and row numbers only, never values (docs/design.md section 4.2).
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from crowd_platform.common.contracts import Contract, ContractError
from crowd_platform.ingestion.layout import sql_ident, sql_literal

MAX_EXAMPLES = 5
THRESHOLD_KEYS = (
    "mustBe", "mustNotBe", "mustBeGreaterThan", "mustBeGreaterOrEqualTo", "mustBeGreaterThanOrEqualTo",
    "mustBeLessThan", "mustBeLessOrEqualTo", "mustBeLessThanOrEqualTo", "mustBeBetween", "mustNotBeBetween",
)
CUSTOM_RULES = ("row_count_matches_manifest", "event_time_in_window", "event_time_not_future", "unknown_cell_share",
                "max_rows_per_key")
# A column declared ``required: true`` gets a rule of this name (unless the contract names one so):
# a null, empty or blank value is missing.
REQUIRED_RULE_SUFFIX = "_required"
REQUIRED_REASON = "missing_required_value"
BLANK_REGEX = r"^\s*$"
# Helper columns the GX engine derives (same measure as the DuckDB SQL), never values in results.
_GX_REQUIRED_PREFIX = "__required__"
_GX_ROWS_PER_KEY_PREFIX = "__rows_per_key__"
# Regex features outside the common subset of DuckDB (RE2), Polars (Rust regex) and Python.
UNPORTABLE_REGEX = re.compile(r"\(\?[=!<]|\(\?<[=!]|\\[1-9]|\(\?P=|\\k<|\(\?>|[*+?}]\+")


@dataclass(frozen=True)
class RuleSpec:
    name: str
    column: str | None
    kind: str            # null | required | pattern | forbidden | valid_set | range | duplicate | row_count | custom rule name
    params: dict[str, Any]
    threshold: tuple[str, Any]
    measure: str         # rows (unexpected rows) | ratio (unexpected / rows) | count (row count) | diff
    severity: str
    quarantine_reason: str | None = None


@dataclass
class RuleContext:
    """What a drop's rules need besides the data: its manifest and the clock."""

    window_start: datetime
    window_end: datetime
    declared_rows: int
    operator: str
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class RuleResult:
    rule: str
    engine: str
    passed: bool
    element_count: int | None
    unexpected_count: int | None
    example_rows: list[int]
    details: str
    evaluated: bool = True


def portable_regex_problem(pattern: str) -> str | None:
    """Why a regex is outside the DuckDB/Polars/Python common subset, or None."""
    if UNPORTABLE_REGEX.search(pattern):
        return "uses look-around, back-reference, atomic group or possessive quantifier"
    try:
        re.compile(pattern)
    except re.error as error:
        return f"does not compile ({error})"
    return None


def _threshold(rule: dict[str, Any]) -> tuple[str, Any]:
    for key in THRESHOLD_KEYS:
        if key in rule:
            return key, rule[key]
    return "mustBe", 0


def threshold_passes(threshold: tuple[str, Any], measured: float) -> bool:
    op, expected = threshold
    if op == "mustBe":
        return measured == expected
    if op == "mustNotBe":
        return measured != expected
    if op == "mustBeGreaterThan":
        return measured > expected
    if op in ("mustBeGreaterOrEqualTo", "mustBeGreaterThanOrEqualTo"):
        return measured >= expected
    if op == "mustBeLessThan":
        return measured < expected
    if op in ("mustBeLessOrEqualTo", "mustBeLessThanOrEqualTo"):
        return measured <= expected
    if op == "mustBeBetween":
        return expected[0] <= measured <= expected[1]
    if op == "mustNotBeBetween":
        return not expected[0] <= measured <= expected[1]
    raise ContractError(f"unknown threshold {op}")


def compile_rules(contract: Contract) -> list[RuleSpec]:
    """Every quality rule of the contract as a RuleSpec; raises ContractError on unknown rules."""
    specs: list[RuleSpec] = []
    for column, rule in contract.rules():
        name = str(rule.get("name") or f"{column or 'table'}_{rule.get('metric') or rule.get('type')}")
        threshold = _threshold(rule)
        severity = str(rule.get("severity", "error"))
        custom = {item.get("property"): item.get("value") for item in rule.get("customProperties") or []}
        reason = custom.get("quarantine_reason")
        arguments = dict(rule.get("arguments") or {})
        metric = rule.get("metric")
        if rule.get("type") == "custom":
            implementation = dict(rule.get("implementation") or {})
            if not any(key in rule for key in THRESHOLD_KEYS):
                # ODCS custom rules may keep their threshold inside implementation.
                threshold = _threshold(implementation)
            kind = implementation.get("rule")
            if kind not in CUSTOM_RULES:
                raise ContractError(f"{contract.contract_id}: rule {name}: unknown custom rule {kind!r}")
            measure = "ratio" if kind == "unknown_cell_share" else ("diff" if kind == "row_count_matches_manifest" else "rows")
            if kind == "max_rows_per_key":
                max_rows = implementation.get("max_rows")
                if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1 or column is None:
                    raise ContractError(f"{contract.contract_id}: rule {name}: max_rows_per_key needs a column and a positive integer max_rows")
            specs.append(RuleSpec(name, column, kind, implementation, threshold, measure, severity, reason))
        elif metric == "nullValues":
            specs.append(RuleSpec(name, column, "null", {}, threshold, _unit(rule), severity, reason))
        elif metric == "invalidValues":
            if "pattern" in arguments:
                kind, params = "pattern", {"pattern": str(arguments["pattern"])}
            elif "forbiddenPattern" in arguments:
                kind, params = "forbidden", {"pattern": str(arguments["forbiddenPattern"])}
            elif "validValues" in arguments:
                # Rules are written in the operator's codes; staging holds canonical values,
                # so the valid set goes through the column's value_map as the data did.
                value_map = _value_map(contract, column)
                kind, params = "valid_set", {"values": [str(value_map.get(str(value), value)) for value in arguments["validValues"]]}
            elif "minimum" in arguments or "maximum" in arguments:
                kind, params = "range", {"minimum": arguments.get("minimum"), "maximum": arguments.get("maximum")}
            else:
                raise ContractError(f"{contract.contract_id}: rule {name}: invalidValues needs pattern, forbiddenPattern, validValues or minimum/maximum")
            if "pattern" in params:
                problem = portable_regex_problem(params["pattern"])
                if problem:
                    raise ContractError(f"{contract.contract_id}: rule {name}: regex {problem}")
            if column is None:
                raise ContractError(f"{contract.contract_id}: rule {name}: invalidValues must be on a column")
            specs.append(RuleSpec(name, column, kind, params, threshold, _unit(rule), severity, reason))
        elif metric == "duplicateValues":
            columns = [str(value) for value in arguments.get("properties") or ([column] if column else [])]
            if not columns:
                raise ContractError(f"{contract.contract_id}: rule {name}: duplicateValues needs properties")
            specs.append(RuleSpec(name, column, "duplicate", {"columns": columns}, threshold, _unit(rule), severity, reason))
        elif metric == "rowCount":
            specs.append(RuleSpec(name, None, "row_count", {}, threshold, "count", severity, reason))
        else:
            raise ContractError(f"{contract.contract_id}: rule {name}: unsupported rule (metric {metric!r}, type {rule.get('type')!r})")
    specs.extend(_required_specs(contract, specs))
    known = {spec.name for spec in contract.columns}
    for spec in specs:
        for referenced in [spec.column, *spec.params.get("columns", [])]:
            if referenced is not None and referenced not in known:
                raise ContractError(f"{contract.contract_id}: rule {spec.name}: unknown column {referenced}")
    return specs


def _required_specs(contract: Contract, specs: list[RuleSpec]) -> list[RuleSpec]:
    """``required: true`` enforced: one rule per required column, for what its own rules miss.

    A null is missing, and so is an empty or blank string in a text column. One cause, one rule:
    nulls are left to the column's nullValues rule if it has one, blanks to a pattern or valid
    set of its own that already refuses them; a column with both needs no extra rule.
    """
    names = {spec.name for spec in specs}
    extra = []
    for column in contract.columns:
        name = f"{column.name}{REQUIRED_RULE_SUFFIX}"
        if not column.required or name in names:
            continue
        own = [spec for spec in specs if spec.column == column.name]
        nulls = not any(spec.kind == "null" and spec.threshold == ("mustBe", 0) for spec in own)
        blanks = column.logical_type == "string" and not any(_refuses_blanks(spec) for spec in own)
        if nulls or blanks:
            extra.append(RuleSpec(name, column.name, "required", {"nulls": nulls, "blanks": blanks},
                                  ("mustBe", 0), "rows", "error", REQUIRED_REASON))
    return extra


def _refuses_blanks(spec: RuleSpec) -> bool:
    """Whether a rule of the column already fails every empty or blank string."""
    if spec.threshold != ("mustBe", 0):
        return False
    if spec.kind == "pattern":
        return not any(re.search(spec.params["pattern"], blank) for blank in ("", " ", "\t"))
    if spec.kind == "valid_set":
        return not any(str(value).strip() == "" for value in spec.params["values"])
    return False


def _value_map(contract: Contract, column: str | None) -> dict[str, str]:
    for spec in contract.columns:
        if spec.name == column:
            return {str(code): str(value) for code, value in (spec.custom.get("value_map") or {}).items()}
    return {}


def _unit(rule: dict[str, Any]) -> str:
    return "ratio" if rule.get("unit") in ("ratio", "percent") else "rows"


def _measured(spec: RuleSpec, elements: int, unexpected: int, declared_rows: int) -> float:
    if spec.measure == "ratio":
        return (unexpected / elements) if elements else 0.0
    if spec.measure == "count":
        return elements
    return unexpected


# ---------------------------------------------------------------- DuckDB engine
def _row_condition(spec: RuleSpec, context: RuleContext) -> str | None:
    """SQL boolean that is true for an unexpected row, or None for non-row rules."""
    column = sql_ident(spec.column) if spec.column else None
    if spec.kind == "null":
        return f"{column} IS NULL"
    if spec.kind == "required":
        parts = [f"{column} IS NULL"] if spec.params.get("nulls") else []
        if spec.params.get("blanks"):
            parts.append(f"({column} IS NOT NULL AND regexp_matches(CAST({column} AS VARCHAR), {sql_literal(BLANK_REGEX)}))")
        return "(" + " OR ".join(parts) + ")"
    if spec.kind == "pattern":
        return f"{column} IS NOT NULL AND NOT regexp_matches({column}, {sql_literal(spec.params['pattern'])})"
    if spec.kind == "forbidden":
        return f"{column} IS NOT NULL AND regexp_matches({column}, {sql_literal(spec.params['pattern'])})"
    if spec.kind == "valid_set":
        values = ", ".join(sql_literal(value) for value in spec.params["values"])
        return f"{column} IS NOT NULL AND {column} NOT IN ({values})"
    if spec.kind == "range":
        parts = []
        if spec.params.get("minimum") is not None:
            parts.append(f"{column} < {float(spec.params['minimum'])}")
        if spec.params.get("maximum") is not None:
            parts.append(f"{column} > {float(spec.params['maximum'])}")
        return f"{column} IS NOT NULL AND ({' OR '.join(parts)})"
    if spec.kind == "event_time_in_window":
        low, high = _window_limits(spec, context)
        return f"{column} IS NOT NULL AND ({column} < {_ts(low)} OR {column} >= {_ts(high)})"
    if spec.kind == "event_time_not_future":
        return f"{column} IS NOT NULL AND {column} > {_ts(_future_limit(spec, context))}"
    return None


def _ts(moment: datetime) -> str:
    return f"TIMESTAMPTZ {sql_literal(moment.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S.%f+00'))}"


def _window_limits(spec: RuleSpec, context: RuleContext) -> tuple[datetime, datetime]:
    tolerance = timedelta(seconds=float(spec.params.get("tolerance_seconds", 0)))
    return context.window_start - tolerance, context.window_end + tolerance


def _future_limit(spec: RuleSpec, context: RuleContext) -> datetime:
    return context.now + timedelta(seconds=float(spec.params.get("tolerance_seconds", 0)))


def registry_available(connection: duckdb.DuckDBPyConnection, operator: str) -> bool:
    return bool(connection.execute("SELECT count(*) FROM bts_registry WHERE operator = ?", [operator]).fetchone()[0])


def run_duckdb_rules(
    connection: duckdb.DuckDBPyConnection, parquet: Path, specs: list[RuleSpec], context: RuleContext,
    table: str | None = None,
) -> list[RuleResult]:
    """Every rule over the staged drop: one scan for row rules, one query per set rule.

    ``table``: the temp table stage_drop parsed the drop into (rows in file order, rowid + 1 =
    data row), read instead of the staging Parquet: the same rows, without a second pass over
    the file."""
    if table:
        source = f"(SELECT *, rowid + 1 AS _row FROM temp.{sql_ident(table)})"
    else:
        source = f"(SELECT *, file_row_number + 1 AS _row FROM read_parquet({sql_literal(str(parquet))}, file_row_number = true))"
    row_specs = [(spec, _row_condition(spec, context)) for spec in specs]
    selects = ["count(*)"]
    for spec, condition in row_specs:
        if condition is not None:
            selects.append(f"count(*) FILTER (WHERE {condition})")
            selects.append(f"min_by(_row, _row, {MAX_EXAMPLES}) FILTER (WHERE {condition})")
    aggregate = connection.execute(f"SELECT {', '.join(selects)} FROM {source}").fetchone()
    total = int(aggregate[0])
    results: list[RuleResult] = []
    position = 1
    for spec, condition in row_specs:
        if condition is not None:
            unexpected, examples = int(aggregate[position]), list(aggregate[position + 1] or [])
            position += 2
            results.append(_result(spec, "duckdb", total, unexpected, examples, context))
        elif spec.kind == "duplicate":
            keys = ", ".join(sql_ident(column) for column in spec.params["columns"])
            # Prefilter on a 64-bit hash of the key (half the cost of grouping the strings): no
            # colliding hash means no duplicate, exactly. Only then group the real keys.
            colliding = connection.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {source} GROUP BY hash({keys}) HAVING count(*) > 1)"
            ).fetchone()[0]
            unexpected = 0
            if colliding:
                unexpected = int(connection.execute(
                    f"SELECT coalesce(sum(copies), 0) FROM (SELECT count(*) AS copies FROM {source} GROUP BY {keys} HAVING count(*) > 1)"
                ).fetchone()[0])
            examples: list[int] = []
            if unexpected:
                examples = list(connection.execute(
                    f"SELECT min_by(_row, _row, {MAX_EXAMPLES}) FROM "
                    f"(SELECT _row, count(*) OVER (PARTITION BY {keys}) AS copies FROM {source}) WHERE copies > 1"
                ).fetchone()[0] or [])
            results.append(_result(spec, "duckdb", total, unexpected, examples, context))
        elif spec.kind == "max_rows_per_key":
            results.append(_max_rows_per_key_duckdb(connection, source, spec, total, context))
        elif spec.kind == "row_count":
            results.append(_result(spec, "duckdb", total, 0, [], context))
        elif spec.kind == "row_count_matches_manifest":
            results.append(_result(spec, "duckdb", total, abs(total - context.declared_rows), [], context))
        elif spec.kind == "unknown_cell_share":
            if not registry_available(connection, context.operator):
                results.append(RuleResult(spec.name, "duckdb", True, total, None, [], "not evaluated: no bts_registry rows for this operator yet", evaluated=False))
                continue
            column = sql_ident(spec.column or "cell_id")
            row = connection.execute(
                f"SELECT count(*) FILTER (WHERE NOT known), min_by(_row, _row, {MAX_EXAMPLES}) FILTER (WHERE NOT known) FROM "
                f"(SELECT s._row, EXISTS (SELECT 1 FROM bts_registry r WHERE r.operator = ? AND r.cell_id = s.{column} "
                "AND r.valid_from <= s.event_time AND (r.valid_to IS NULL OR r.valid_to > s.event_time)) AS known "
                f"FROM {source} s)",
                [context.operator],
            ).fetchone()
            results.append(_result(spec, "duckdb", total, int(row[0]), list(row[1] or []), context))
        else:
            raise ContractError(f"rule {spec.name}: kind {spec.kind} has no DuckDB implementation")
    return skip_dependents(specs, results)


def _max_rows_per_key_duckdb(connection: duckdb.DuckDBPyConnection, source: str, spec: RuleSpec, total: int,
                             context: RuleContext) -> RuleResult:
    """Rows under keys that carry more than max_rows rows (null keys are the null rules' business)."""
    key, limit = sql_ident(spec.column), int(spec.params["max_rows"])
    # One grouping finds whether any key is over the limit; only then are its rows located.
    # First on a 64-bit hash of the key (fixed width, cheaper than grouping the strings): a hash
    # group holds every row of its keys, so no hash over the limit means no key over it, exactly.
    # Only when a hash is over it are the real keys grouped.
    over = connection.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {key} IS NOT NULL GROUP BY hash({key}) HAVING count(*) > {limit})"
    ).fetchone()[0]
    if over:
        over = connection.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {key} IS NOT NULL GROUP BY {key} HAVING count(*) > {limit})"
        ).fetchone()[0]
    if not over:
        return _result(spec, "duckdb", total, 0, [], context)
    row = connection.execute(
        f"SELECT count(*), min_by(_row, _row, {MAX_EXAMPLES}) FROM "
        f"(SELECT _row, count(*) OVER (PARTITION BY {key}) AS copies FROM {source} WHERE {key} IS NOT NULL) WHERE copies > {limit}"
    ).fetchone()
    return _result(spec, "duckdb", total, int(row[0]), list(row[1] or []), context)


def rule_dependencies(spec: RuleSpec) -> list[str]:
    """Columns a set-level rule measures over: with values missing there, its verdict means nothing."""
    if spec.kind == "duplicate":
        return list(spec.params["columns"])
    if spec.kind == "unknown_cell_share":
        # The registry lookup is by cell AND time (a cell's validity period).
        return [spec.column or "cell_id", "event_time"]
    if spec.kind == "max_rows_per_key":
        return [spec.column] if spec.column else []
    return []


def skip_dependents(specs: list[RuleSpec], results: list[RuleResult]) -> list[RuleResult]:
    """A rule whose columns have missing values (e.g. times that could not be parsed: the column's
    nullValues rule failed) is reported as not evaluated, so the report names the real cause only
    (duplicates of null times, unknown cells at no time...) and both engines say the same."""
    by_name = {spec.name: spec for spec in specs}
    missing: dict[str, str] = {}  # column -> failed rule that found its values missing
    for result in results:
        spec = by_name.get(result.rule)
        if spec is None or spec.column is None or result.passed or not result.evaluated:
            continue
        if spec.kind == "null" or (spec.kind == "required" and spec.params.get("nulls")):
            missing.setdefault(spec.column, result.rule)
    if not missing:
        return results
    kept = []
    for result in results:
        spec = by_name.get(result.rule)
        blocked = [column for column in (rule_dependencies(spec) if spec else []) if column in missing]
        if blocked and result.evaluated:
            column = blocked[0]
            result = RuleResult(result.rule, result.engine, True, result.element_count, None, [],
                                f"not evaluated: {column} has missing or unparsable values ({missing[column]} failed)",
                                evaluated=False)
        kept.append(result)
    return kept


def _result(spec: RuleSpec, engine: str, total: int, unexpected: int, examples: list[int], context: RuleContext) -> RuleResult:
    measured = _measured(spec, total, unexpected, context.declared_rows)
    passed = threshold_passes(spec.threshold, measured)
    op, expected = spec.threshold
    label = {"ratio": "share", "count": "rows", "diff": "row difference vs manifest", "rows": "unexpected rows"}[spec.measure]
    details = f"{label} {measured:.4g} ({op} {expected})"
    return RuleResult(spec.name, engine, passed, total, unexpected, [int(row) for row in examples[:MAX_EXAMPLES]], details)


# ---------------------------------------------------------------- Great Expectations engine
_gx_lock = threading.Lock()
_gx_state: dict[str, Any] = {}


def _gx_batch_definition():
    """One ephemeral GX context per process, reused (creating one costs more than a small drop)."""
    with _gx_lock:
        if "batch_definition" not in _gx_state:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            logging.getLogger("great_expectations").setLevel(logging.WARNING)
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            source = context.data_sources.add_pandas("staged_drops")
            asset = source.add_dataframe_asset("staged_drop")
            _gx_state["batch_definition"] = asset.add_batch_definition_whole_dataframe("whole_drop")
        return _gx_state["batch_definition"]


def _epoch_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def build_gx_suite(specs: list[RuleSpec], context: RuleContext, known_cells: list[str] | None):
    """Map compiled contract rules to GX expectations; returns (suite, rule name per expectation)."""
    import great_expectations as gx

    expectations = gx.expectations
    suite = gx.ExpectationSuite(name=f"contract_{context.operator}")
    names: list[str] = []
    for spec in specs:
        column = spec.column
        if spec.kind == "null":
            expectation = expectations.ExpectColumnValuesToNotBeNull(column=column)
        elif spec.kind == "required":
            if not spec.params.get("blanks"):
                expectation = expectations.ExpectColumnValuesToNotBeNull(column=column)
            elif not spec.params.get("nulls"):
                expectation = expectations.ExpectColumnValuesToNotMatchRegex(column=column, regex=BLANK_REGEX)
            else:
                # Derived by run_gx_rules: the column with blank strings as nulls.
                expectation = expectations.ExpectColumnValuesToNotBeNull(column=_GX_REQUIRED_PREFIX + column)
        elif spec.kind == "max_rows_per_key":
            # Derived by run_gx_rules: per row, how many rows its key has (null for a null key).
            expectation = expectations.ExpectColumnValuesToBeBetween(
                column=_GX_ROWS_PER_KEY_PREFIX + column, max_value=int(spec.params["max_rows"]))
        elif spec.kind == "pattern":
            expectation = expectations.ExpectColumnValuesToMatchRegex(column=column, regex=spec.params["pattern"])
        elif spec.kind == "forbidden":
            expectation = expectations.ExpectColumnValuesToNotMatchRegex(column=column, regex=spec.params["pattern"])
        elif spec.kind == "valid_set":
            expectation = expectations.ExpectColumnValuesToBeInSet(column=column, value_set=spec.params["values"])
        elif spec.kind == "range":
            expectation = expectations.ExpectColumnValuesToBeBetween(
                column=column, min_value=spec.params.get("minimum"), max_value=spec.params.get("maximum")
            )
        elif spec.kind == "duplicate":
            columns = spec.params["columns"]
            expectation = (
                expectations.ExpectCompoundColumnsToBeUnique(column_list=columns, ignore_row_if="never")
                if len(columns) > 1
                else expectations.ExpectColumnValuesToBeUnique(column=columns[0])
            )
        elif spec.kind == "row_count":
            expectation = expectations.ExpectTableRowCountToBeBetween(min_value=0)
        elif spec.kind == "row_count_matches_manifest":
            expectation = expectations.ExpectTableRowCountToEqual(value=context.declared_rows)
        elif spec.kind == "event_time_in_window":
            low, high = _window_limits(spec, context)
            # Timestamps go to GX as epoch microseconds: comparisons of tz-aware values differ
            # between pandas versions, integers do not. strict_max: the window end is exclusive.
            expectation = expectations.ExpectColumnValuesToBeBetween(
                column=column, min_value=_epoch_us(low), max_value=_epoch_us(high), strict_max=True
            )
        elif spec.kind == "event_time_not_future":
            expectation = expectations.ExpectColumnValuesToBeBetween(column=column, max_value=_epoch_us(_future_limit(spec, context)))
        elif spec.kind == "unknown_cell_share":
            if known_cells is None:
                continue
            expectation = expectations.ExpectColumnValuesToBeInSet(column=column, value_set=known_cells)
        else:
            raise ContractError(f"rule {spec.name}: kind {spec.kind} has no GX expectation")
        suite.add_expectation(expectation)
        names.append(spec.name)
    return suite, names


def run_gx_rules(frame, specs: list[RuleSpec], context: RuleContext, known_cells: list[str] | None) -> list[RuleResult]:
    """Validate a pandas frame of the staged drop with the contract's GX suite."""
    frame = frame.copy(deep=False)
    for name in frame.columns:
        if str(frame[name].dtype).startswith("datetime64"):
            frame[name] = _to_epoch_us(frame[name])
    frame = _gx_derived(frame, specs)
    batch_definition = _gx_batch_definition()  # creates the context the suite binds to
    suite, names = build_gx_suite(specs, context, known_cells)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    with warnings.catch_warnings():
        # pandas warns that contract regexes have groups (it wants str.extract); harmless here.
        warnings.simplefilter("ignore", UserWarning)
        outcome = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES})
    by_name = {spec.name: spec for spec in specs}
    results: list[RuleResult] = []
    total = len(frame)
    for name, result in zip(names, outcome.results):
        spec = by_name[name]
        summary = result.result or {}
        # Only counts and index positions are read: GX's partial_unexpected_list holds values.
        unexpected = int(summary.get("unexpected_count") or 0)
        indexes = [int(index) + 1 for index in (summary.get("partial_unexpected_index_list") or [])][:MAX_EXAMPLES]
        if spec.kind in ("row_count", "row_count_matches_manifest"):
            unexpected = abs(total - context.declared_rows) if spec.kind == "row_count_matches_manifest" else 0
        if result.exception_info and result.exception_info.get("raised_exception"):
            results.append(RuleResult(name, "gx", False, total, None, [], "GX raised an exception"))
            continue
        results.append(_result(spec, "gx", total, unexpected, indexes, context))
    return skip_dependents(specs, results)


def _gx_derived(frame, specs: list[RuleSpec]):
    """Helper columns for rules GX has no single expectation for, measured in pandas."""
    for spec in specs:
        if spec.kind == "required" and spec.params.get("nulls") and spec.params.get("blanks"):
            values = frame[spec.column]
            blank = values.astype("string").str.fullmatch(BLANK_REGEX[1:-1]).fillna(True).astype(bool)
            frame[_GX_REQUIRED_PREFIX + spec.column] = values.mask(blank)
        elif spec.kind == "max_rows_per_key":
            values = frame[spec.column]
            frame[_GX_ROWS_PER_KEY_PREFIX + spec.column] = values.map(values.value_counts(dropna=True)).astype(float)
    return frame


def _to_epoch_us(series):
    """datetime64 column (tz-aware or not) -> nullable Int64 epoch microseconds, NaT kept null."""
    import pandas as pd

    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    missing = series.isna()
    values = series.to_numpy(dtype="datetime64[us]").astype("int64")
    return pd.Series(values, index=series.index).astype("Int64").mask(missing)
