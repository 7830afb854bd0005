"""The one Dagster resource every domain uses: settings plus warehouse access."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from crowd_platform.common import warehouse
from crowd_platform.common.settings import Settings, get_settings


class CrowdPlatform(dg.ConfigurableResource):
    """Storage root and warehouse. ``home`` empty means $CROWD_HOME (default ./.crowd)."""

    home: str = ""

    @property
    def settings(self) -> Settings:
        settings = get_settings(self.home or None)
        settings.ensure_dirs()
        return settings

    @contextmanager
    def warehouse(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connect(self.settings.warehouse_path, read_only=read_only) as connection:
            yield connection

    @contextmanager
    def warehouse_when_free(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The warehouse for a step outside the warehouse pool (it computes away from the
        warehouse and opens it only to read inputs and write results): waits as long as a pool
        step may hold it (up to ~20 minutes), not the ~2 minutes a command waits."""
        with warehouse.connect(self.settings.warehouse_path, wait_s=WAIT_OUTSIDE_POOL_S) as connection:
            yield connection


WAIT_OUTSIDE_POOL_S = 20 * 60
