"""The platform's one way to read and write instants: UTC, ISO-8601.

Every stored or exchanged time is UTC. Text without an offset is read as UTC unless the
caller says an offset is required (manifests: an operator must say which zone it means).
"""

from __future__ import annotations

from datetime import date, datetime, timezone


class TimeParseError(ValueError):
    """A value that is not an ISO-8601 instant; the message names the value's role, not the value."""


def parse_utc(value: str | datetime | date, *, what: str = "time", require_offset: bool = False) -> datetime:
    """An ISO-8601 text (``Z`` or an offset; naive = UTC unless ``require_offset``) or a datetime, in UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise TimeParseError(f"{what} is not an ISO-8601 timestamp (e.g. 2020-04-01T02:00:00Z)") from None
    if parsed.tzinfo is None:
        if require_offset:
            raise TimeParseError(f"{what} has no time zone")
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def parse_utc_or_none(value: str | datetime | None, *, what: str = "time") -> datetime | None:
    return None if value in (None, "") else parse_utc(value, what=what)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso_z(moment: datetime) -> str:
    """Second-precision UTC text with a ``Z`` (manifests, reports, outbox files)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
