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
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from crowd_platform.common.storage import Location

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
    # Storage root of landing/raw/quarantine/lake/outbox: None = CROWD_HOME (lib/storage.py).
    storage_url: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # ---- storage layout (DESIGN.md section 5) ----
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


def load_config(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def get_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Settings from the environment: CROWD_HOME (default ./.crowd), CROWD_CONFIG, CROWD_CONTRACTS,
    CROWD_STORAGE_URL (default: storage.url of the config, else CROWD_HOME itself)."""
    home_path = Path(home or os.environ.get("CROWD_HOME") or Path.cwd() / ".crowd").resolve()
    config_path = Path(os.environ.get("CROWD_CONFIG") or DEFAULT_CONFIG).resolve()
    contracts_dir = Path(os.environ.get("CROWD_CONTRACTS") or CONTRACTS_DIR).resolve()
    raw_config = load_config(config_path)
    storage = dict(raw_config.get("storage") or {})
    return Settings(
        home=home_path,
        config_path=config_path,
        contracts_dir=contracts_dir,
        raw_config=raw_config,
        storage_url=os.environ.get("CROWD_STORAGE_URL") or storage.get("url") or None,
        storage_options=dict(storage.get("options") or {}),
    )
