"""Platform settings: where things live (CROWD_HOME) and the configuration file.

One place resolves paths so that every asset, sensor, CLI command and test agrees on the
storage layout of DESIGN.md section 5.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "platform.yaml"
CONTRACTS_DIR = PROJECT_ROOT / "data_contracts"
SQL_DIR = PROJECT_ROOT / "sql"


def _parse_utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :func:`get_settings` (reads the environment)."""

    home: Path
    config_path: Path = DEFAULT_CONFIG
    contracts_dir: Path = CONTRACTS_DIR
    raw_config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # ---- storage layout (DESIGN.md section 5) ----
    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def raw(self) -> Path:
        return self.home / "raw"

    @property
    def staging(self) -> Path:
        """Write-audit-publish: parsed drops wait here until their checks pass."""
        return self.home / "staging"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def events_lake(self) -> Path:
        return self.lake / "events"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def outbox(self) -> Path:
        return self.home / "outbox"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def geo_cache(self) -> Path:
        """Derived geometry (coverage polygons, maps) rebuilt from reference data."""
        return self.home / "geo"

    @property
    def witness(self) -> Path:
        """Daily audit checkpoints, meant to be published outside the platform."""
        return self.home / "witness"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    # ---- configuration ----
    def section(self, name: str) -> dict[str, Any]:
        return dict(self.raw_config.get(name) or {})

    @cached_property
    def emergency_start(self) -> datetime:
        return _parse_utc(self.section("emergency")["start"])

    @cached_property
    def emergency_end(self) -> datetime:
        return _parse_utc(self.section("emergency")["end"])

    @property
    def purpose(self) -> str:
        return str(self.section("emergency").get("purpose", "crowd-monitoring"))

    @property
    def window_minutes(self) -> int:
        return int(self.raw_config.get("window_minutes", 15))

    @property
    def k_anonymity(self) -> int:
        return int(self.section("privacy").get("k_anonymity", 15))

    def project_path(self, relative: str) -> Path:
        """Config paths are relative to the project root unless absolute."""
        path = Path(relative)
        return path if path.is_absolute() else PROJECT_ROOT / path

    def stored(self, path: Path) -> str:
        """How a path under CROWD_HOME is recorded in the warehouse: relative to the root, so
        a storage root can be moved, restored from backup or copied without rewriting rows."""
        try:
            return str(Path(path).resolve().relative_to(self.home))
        except ValueError:
            return str(path)

    def resolve(self, stored: str | None) -> Path | None:
        """The file system path of a recorded path (relative to CROWD_HOME, or absolute)."""
        if not stored:
            return None
        path = Path(stored)
        return path if path.is_absolute() else self.home / path

    def ensure_dirs(self) -> None:
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
            path.mkdir(parents=True, exist_ok=True)


def load_config(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def get_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Settings from the environment: CROWD_HOME (default ./.crowd), CROWD_CONFIG, CROWD_CONTRACTS."""
    home_path = Path(home or os.environ.get("CROWD_HOME") or Path.cwd() / ".crowd").resolve()
    config_path = Path(os.environ.get("CROWD_CONFIG") or DEFAULT_CONFIG).resolve()
    contracts_dir = Path(os.environ.get("CROWD_CONTRACTS") or CONTRACTS_DIR).resolve()
    return Settings(
        home=home_path,
        config_path=config_path,
        contracts_dir=contracts_dir,
        raw_config=load_config(config_path),
    )
