"""Fixtures of the indicator tests (helpers in area.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform_tests.indicators.area import Lake, build_geography


@pytest.fixture()
def area(tmp_path: Path):
    """(home, settings, open connection, Lake) with the geography in place."""
    settings = get_settings(tmp_path)
    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        build_geography(con)
        yield tmp_path, settings, con, Lake(tmp_path, con)
