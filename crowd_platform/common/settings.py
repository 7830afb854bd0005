"""Platform settings: where things live (CROWD_HOME) and the typed configuration file.

One place resolves paths and parses ``config/platform.yaml`` (or CROWD_CONFIG) into frozen,
validated sections, once, at start: a wrong key or value stops the platform with a one-line
error naming the file and the key, before any run starts. Every ``CROWD_*`` environment
override is listed in :data:`ENVIRONMENT` and read through :func:`env` only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crowd_platform.common.timeutil import parse_utc

if TYPE_CHECKING:
    from crowd_platform.common.storage import Location

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "platform.yaml"
CONTRACTS_DIR = PROJECT_ROOT / "data_contracts"
SQL_DIR = PROJECT_ROOT / "sql"

# Every environment variable the platform reads, and what it overrides. Nothing else reads
# CROWD_* variables (crowd_platform_tests/test_layout.py checks it).
ENVIRONMENT: dict[str, str] = {
    "CROWD_HOME": "storage root on local disk (default ./.crowd)",
    "CROWD_CONFIG": "platform configuration file (default config/platform.yaml)",
    "CROWD_CONTRACTS": "data contracts folder (default data_contracts/)",
    "CROWD_STORAGE_URL": "object-storage root for landing/raw/quarantine/lake/outbox (overrides storage.url)",
    "CROWD_ALERT_RULES": "alert rules file (overrides alerts.rules_file; sampled populations use config/alert_rules_sampled.yaml)",
    "CROWD_BROADCAST_URL_<OPERATOR>": "HTTP endpoint of an operator's broadcast requests (overrides broadcast.http)",
    "CROWD_DUCKDB_MEMORY_LIMIT": "memory limit of every warehouse connection, e.g. 4GB (default: DuckDB's 80 % of RAM)",
    "CROWD_WITNESS": "audit witness checkpoints: a folder or object-storage URL outside CROWD_HOME (overrides governance.witness_path)",
    "CROWD_ACTOR": "who runs a command, recorded in the audit log (default: the OS user)",
    "CROWD_LOG_LEVEL": "console log level of runs started by the CLI (default WARNING)",
    "CROWD_EXECUTOR": "executor of the computing jobs: unset = Dagster's default (multiprocess, one host); "
                      "k8s = one pod per step (dagster-k8s, deploy/k8s/executor.yaml)",
    "CROWD_CRASH_AT": "crash-safety tests only: kill the process at a named point (common/crashpoints.py)",
}


def env(name: str) -> str | None:
    """The value of a listed CROWD_* variable (empty counts as unset)."""
    listed = name in ENVIRONMENT or any(key.endswith("_<OPERATOR>") and name.startswith(key[: -len("<OPERATOR>")])
                                        for key in ENVIRONMENT)
    if not listed:
        raise KeyError(f"{name} is not a documented CROWD_* variable (common/settings.py ENVIRONMENT)")
    return os.environ.get(name) or None


def env_with_prefix(prefix: str) -> dict[str, str]:
    """Listed variables starting with ``prefix`` (e.g. CROWD_BROADCAST_URL_), name -> value."""
    if not any(key.startswith(prefix) for key in ENVIRONMENT):
        raise KeyError(f"no documented CROWD_* variable starts with {prefix}")
    return {name: value for name, value in os.environ.items() if name.startswith(prefix) and value}


class SettingsError(ValueError):
    """A configuration problem, one line: file, key, what is wrong."""


# ---------------------------------------------------------------- typed sections
class _Section(BaseModel):
    """Frozen, and unknown keys are errors: a misspelt key must not be silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class EmergencyConfig(_Section):
    name: str = ""
    start: datetime
    end: datetime
    purpose: str = "crowd-monitoring"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _utc(cls, value: Any) -> datetime:
        return parse_utc(value, what="emergency time")

    @model_validator(mode="after")
    def _ordered(self) -> "EmergencyConfig":
        if self.end <= self.start:
            raise ValueError("emergency.end must be after emergency.start")
        return self


class PrivacyConfig(_Section):
    k_anonymity: int = Field(15, ge=1)


class BoundaryLevel(_Section):
    level: str
    file: Path
    code: str
    name: str | None = None
    parent: str | None = None
    code_kemendagri: str | None = None
    is_admin_unit: str = "is_admin_unit"


class PopulationConfig(_Section):
    file: Path | None = None
    code_bps: str = "kode_bps_2020"
    total: str = "total"
    level: str | None = None


class GeographySection(_Section):
    name: str = "area"
    levels: tuple[BoundaryLevel, ...] = Field(min_length=1)  # finest first
    population: PopulationConfig = PopulationConfig()
    area_crs: str = "EPSG:6933"
    weights_method: Literal["voronoi_area", "point_in_polygon"] = "voronoi_area"
    weight_by_population: bool = False
    cells_reference: Path | None = None
    area_buffer_m: float = Field(1000.0, ge=0)     # cells this close to a district still count as inside
    # Registry screening box: the bounding box of the configured boundaries grown by this margin;
    # cells outside it are `outside_area` (and it decides `swapped_lon_lat`). Nothing is hard-coded.
    bounds_margin_m: float = Field(10_000.0, ge=0)
    move_threshold_m: float = Field(50.0, ge=0)    # a cell moved further than this is a new version
    site_decimals: int = Field(4, ge=0, le=7)      # co-located cells: same rounded lon/lat -> one site
    # co-located sites of all operators within this distance are one physical place (site alerts)
    colocation_radius_m: float = Field(100.0, ge=0)


class DensitySection(_Section):
    location_rule: Literal["any", "last", "modal"] = "last"
    multi_sim_factor: float = Field(1.0, gt=0)
    baseline_weeks: int = Field(4, ge=1)
    baseline_min_obs: int = Field(3, ge=3)
    baseline_bootstrap_days: int = Field(7, ge=0)  # most recent earlier days of the same day type
    # The deployment's area, required (never a code default): its IANA time zone (local days,
    # time of day, day types) and the python-holidays country of its public holidays.
    local_timezone: str
    holidays_country: str
    extra_holidays: tuple[date, ...] = ()  # local dates typed 'holiday' besides python-holidays (cuti bersama)

    @field_validator("local_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Asia/Kathmandu)") from None
        return value

    @field_validator("holidays_country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        import holidays

        if value not in holidays.list_supported_countries():
            raise ValueError(f"python-holidays has no country {value!r} (ISO 3166-1 alpha-2, e.g. NP)")
        return value


class AlertsSection(_Section):
    rules_file: Path = Path("config/alert_rules.yaml")
    # An incomplete window (an operator missing after its contract's latency) is evaluated only if
    # the operators that reported cover at least this share of the expected market share.
    min_market_share: float = Field(0.9, gt=0, le=1)


class HttpTargetConfig(_Section):
    url: str
    timeout_s: float = Field(5.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)


class BroadcastSection(_Section):
    templates_file: Path = Path("config/broadcast_templates.yaml")
    http: dict[str, HttpTargetConfig] = {}  # operator -> endpoint; empty: outbox files only


class IngestionSection(_Section):
    gx_max_rows: int = Field(100_000, ge=0)       # GX cross-checks drops up to this many rows
    gx_drops_per_run: int = Field(40, ge=0)       # and at most this many drops per run (decision 004)
    parse_workers: int = Field(4, ge=1, le=64)    # drops of a run parsed side by side (one DuckDB cursor each)


class StorageSection(_Section):
    url: str | None = None
    options: dict[str, Any] = {}


class GovernanceSection(_Section):
    # Audit witness checkpoints: a local path (relative to the project root) or an object-storage
    # URL, outside CROWD_HOME (decision 014). None: CROWD_HOME/witness, which `audit verify` warns about.
    witness_path: str | None = None


class IndicatorsSection(_Section):
    """Mobility indicators (docs/indicators.md): local hours of the within-day flow windows and the
    daily-location rule flows use. Optional: the defaults are FlowKit-like morning and evening."""

    flow_rule: Literal["last", "modal"] = "last"
    # The one boundary level whose flows are published (a geography.levels name); None: the finest.
    flow_level: str | None = None
    # [start, end) local hours (density.local_timezone) of the morning and evening windows
    morning_hours: tuple[int, int] = (6, 10)
    evening_hours: tuple[int, int] = (16, 20)

    @field_validator("morning_hours", "evening_hours")
    @classmethod
    def _hour_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        start, end = value
        if not 0 <= start < end <= 24:
            raise ValueError("hours must be [start, end) with 0 <= start < end <= 24")
        return value

    @model_validator(mode="after")
    def _disjoint(self) -> "IndicatorsSection":
        if self.morning_hours[1] > self.evening_hours[0]:
            raise ValueError("indicators.morning_hours must end before evening_hours start")
        return self


class PlatformConfig(_Section):
    """The whole configuration file."""

    emergency: EmergencyConfig
    window_minutes: int = Field(15, ge=1, le=60)
    privacy: PrivacyConfig = PrivacyConfig()
    geography: GeographySection
    density: DensitySection  # required: the area's time zone and holiday country
    alerts: AlertsSection = AlertsSection()
    broadcast: BroadcastSection = BroadcastSection()
    ingestion: IngestionSection = IngestionSection()
    storage: StorageSection = StorageSection()
    governance: GovernanceSection = GovernanceSection()
    indicators: IndicatorsSection = IndicatorsSection()

    @field_validator("window_minutes")
    @classmethod
    def _divides_hour(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("window_minutes must divide 60")
        return value


def _resolve_paths(config: PlatformConfig) -> PlatformConfig:
    """Relative file paths in the config are relative to the project root."""

    def resolved(path: Path | None) -> Path | None:
        return None if path is None else (path if path.is_absolute() else PROJECT_ROOT / path)

    geography = config.geography.model_copy(update={
        "levels": tuple(level.model_copy(update={"file": resolved(level.file)}) for level in config.geography.levels),
        "population": config.geography.population.model_copy(update={"file": resolved(config.geography.population.file)}),
        "cells_reference": resolved(config.geography.cells_reference),
    })
    return config.model_copy(update={
        "geography": geography,
        "alerts": config.alerts.model_copy(update={"rules_file": resolved(config.alerts.rules_file)}),
        "broadcast": config.broadcast.model_copy(update={"templates_file": resolved(config.broadcast.templates_file)}),
    })


def _error_line(path: Path, error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    message = first["msg"].removeprefix("Value error, ")
    return f"{path.name}: {key}: {message}{more}"


def load_config(path: Path) -> PlatformConfig:
    """Parse and validate a configuration file (paths resolved); SettingsError names file and key."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle) or {}
    except OSError as error:
        raise SettingsError(f"{path}: cannot read the configuration file ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"{path.name}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(document, dict):
        raise SettingsError(f"{path.name}: the configuration must be a mapping of sections")
    try:
        return _resolve_paths(PlatformConfig.model_validate(document))
    except ValidationError as error:
        raise SettingsError(_error_line(path, error)) from None


@lru_cache(maxsize=16)
def _load_config_cached(path: str, mtime_ns: int) -> PlatformConfig:
    return load_config(Path(path))


# ---------------------------------------------------------------- resolved settings
@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :func:`get_settings` (reads the environment once)."""

    home: Path
    config: PlatformConfig = field(compare=False, repr=False)
    config_path: Path = DEFAULT_CONFIG
    contracts_dir: Path = CONTRACTS_DIR
    # Storage root of landing/raw/quarantine/lake/outbox: None = CROWD_HOME (common/storage.py).
    storage_url: str | None = None
    alert_rules_override: Path | None = None
    witness_override: str | None = None  # CROWD_WITNESS

    def with_config(self, **sections: dict[str, Any]) -> "Settings":
        """A copy with some fields of some sections replaced (benchmarks, tests), validated again."""
        document = self.config.model_dump()
        for name, updates in sections.items():
            document[name] = {**(document.get(name) or {}), **updates}
        try:
            config = _resolve_paths(PlatformConfig.model_validate(document))
        except ValidationError as error:
            raise SettingsError(_error_line(self.config_path, error)) from None
        return Settings(self.home, config, self.config_path, self.contracts_dir, self.storage_url, self.alert_rules_override,
                        self.witness_override)

    # ---- storage layout ----
    @property
    def storage_options(self) -> dict[str, Any]:
        return dict(self.config.storage.options)

    @cached_property
    def root(self) -> "Location":
        """Where landing, raw, quarantine, lake and outbox live: CROWD_HOME or an object store."""
        if not self.storage_url:
            return self.home
        from crowd_platform.common.storage import storage_root

        return storage_root(self.storage_url, self.storage_options)

    @property
    def is_remote(self) -> bool:
        return not isinstance(self.root, Path)

    @property
    def landing(self) -> "Location":
        return self.root / "landing"

    @property
    def raw(self) -> "Location":
        return self.root / "raw"

    @property
    def staging(self) -> Path:
        """Write-audit-publish: parsed drops wait here until their checks pass."""
        return self.home / "staging"

    @property
    def quarantine(self) -> "Location":
        return self.root / "quarantine"

    @property
    def lake(self) -> "Location":
        return self.root / "lake"

    @property
    def events_lake(self) -> "Location":
        return self.lake / "events"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def outbox(self) -> "Location":
        return self.root / "outbox"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def geo_cache(self) -> Path:
        """Derived geometry (coverage polygons, maps) rebuilt from reference data."""
        return self.home / "geo"

    @cached_property
    def witness(self) -> "Location":
        """Audit witness checkpoints: CROWD_WITNESS, else governance.witness_path (a path relative to
        the project root, or an object-storage URL), else CROWD_HOME/witness."""
        value = self.witness_override or self.config.governance.witness_path
        if not value:
            return self.home / "witness"
        if "://" in value and not value.startswith("file://"):
            from crowd_platform.common.storage import storage_root

            return storage_root(value, self.storage_options)
        return self.project_path(value.removeprefix("file://")).resolve()

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    # ---- configuration shortcuts ----
    @property
    def emergency_start(self) -> datetime:
        return self.config.emergency.start

    @property
    def emergency_end(self) -> datetime:
        return self.config.emergency.end

    @property
    def purpose(self) -> str:
        return self.config.emergency.purpose

    @property
    def window_minutes(self) -> int:
        return self.config.window_minutes

    @property
    def k_anonymity(self) -> int:
        return self.config.privacy.k_anonymity

    @property
    def alert_rules_file(self) -> Path:
        """CROWD_ALERT_RULES (runs on a sampled population: demo, tests) or alerts.rules_file."""
        return self.alert_rules_override or self.config.alerts.rules_file

    def project_path(self, relative: str | Path) -> Path:
        """Paths given on the command line or in other files are relative to the project root."""
        path = Path(relative)
        return path if path.is_absolute() else PROJECT_ROOT / path

    def stored(self, path: "Location") -> str:
        """How a path under the storage root is recorded in the warehouse: relative to the root,
        so a storage root can be moved (even to an object store), restored from backup or copied
        without rewriting rows."""
        if not isinstance(path, Path):
            try:
                return path.relative_to(self.root).as_posix()
            except (ValueError, TypeError):
                return str(path)
        base = self.root if isinstance(self.root, Path) else self.home
        try:
            return str(Path(path).resolve().relative_to(base))
        except ValueError:
            return str(path)

    def resolve(self, stored: str | None) -> "Location | None":
        """The location of a recorded path (relative to the storage root, absolute, or a URL)."""
        if not stored:
            return None
        if "://" in stored:
            from crowd_platform.common.storage import location

            return location(stored, self.storage_options)
        path = Path(stored)
        return path if path.is_absolute() else self.root / stored

    def ensure_dirs(self) -> None:
        from crowd_platform.common.storage import ensure_dir

        for path in (
            self.landing,
            self.raw,
            self.staging,
            self.quarantine,
            self.events_lake,
            self.outbox,
            self.reports,
            self.geo_cache,
            self.witness,
        ):
            ensure_dir(path)  # object stores have no folders


def config_at(path: Path) -> PlatformConfig:
    """The validated configuration of a file, parsed once per version of the file."""
    resolved = Path(path).resolve()
    try:
        stamp = resolved.stat().st_mtime_ns
    except OSError:
        stamp = -1
    return _load_config_cached(str(resolved), stamp)


def get_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Settings from the environment (see ENVIRONMENT): CROWD_HOME (default ./.crowd), CROWD_CONFIG,
    CROWD_CONTRACTS, CROWD_STORAGE_URL (default: storage.url of the config, else CROWD_HOME),
    CROWD_ALERT_RULES."""
    home_path = Path(home or env("CROWD_HOME") or Path.cwd() / ".crowd").resolve()
    config_path = Path(env("CROWD_CONFIG") or DEFAULT_CONFIG).resolve()
    contracts_dir = Path(env("CROWD_CONTRACTS") or CONTRACTS_DIR).resolve()
    config = config_at(config_path)
    rules = env("CROWD_ALERT_RULES")
    witness = env("CROWD_WITNESS")
    return Settings(
        home=home_path,
        config=config,
        config_path=config_path,
        contracts_dir=contracts_dir,
        storage_url=env("CROWD_STORAGE_URL") or config.storage.url or None,
        alert_rules_override=(Path(rules) if Path(rules).is_absolute() else PROJECT_ROOT / rules) if rules else None,
        witness_override=(witness if "://" in witness else str(Path(witness).resolve())) if witness else None,
    )
