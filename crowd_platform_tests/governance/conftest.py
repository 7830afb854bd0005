"""Fixtures shared by the governance tests."""

from __future__ import annotations

import pytest

from crowd_platform.common.settings import get_settings


@pytest.fixture()
def witnessed_home(tmp_path, monkeypatch):
    """Settings of a fresh CROWD_HOME whose witness folder lies outside it, as in production."""
    monkeypatch.setenv("CROWD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CROWD_WITNESS", str(tmp_path / "witness"))  # outside CROWD_HOME
    settings = get_settings()
    settings.ensure_dirs()
    return settings
