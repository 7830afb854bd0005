"""The drop manifest (docs/design.md section 6): parsing and verification.

A manifest that cannot even say which window/operator it belongs to is *unroutable*
(handled by the sensor and ``quarantine_unroutable_job``); every other problem is found by
``operator_drops`` and quarantines that drop only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from crowd_platform.common.text import has_control_chars
from crowd_platform.common.timeutil import TimeParseError, parse_utc

MANIFEST_SUFFIX = ".manifest.json"
# Feed -> kind an operator may deliver when the caller does not say (its contracts do:
# common/contracts.operator_feeds); a feed name is short lowercase letters, digits and '_'.
FEEDS = {"events": "events", "cells": "cells"}
FEED_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# Manifests are a few hundred bytes; anything far larger is not a manifest.
MAX_MANIFEST_BYTES = 64 * 1024
REQUIRED_FIELDS = {
    "manifest_version": int,
    "operator": str,
    "feed": str,
    "contract_version": str,
    "file": str,
    "sha256": str,
    "bytes": int,
    "row_count": int,
    "window_start": str,
    "window_end": str,
    "delivery": int,
}
PSEUDONYMIZATION_SCHEME = "hmac-sha256"
# The key id names the operator's HMAC key. Any key id must be safe to store and print; its
# naming is the operator's, declared by its contract's ``key_id_pattern`` custom property, and by
# default "<operator short name>-<YYYYMMDD, the key's UTC day>", e.g. "tsel-20200331"
# (docs/design.md section 6, simulator/keys.py).
KEY_ID_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")
DEFAULT_KEY_ID_PATTERN = r"[a-z][a-z0-9]{0,15}-[0-9]{8}"


class ManifestError(ValueError):
    """A manifest that fails verification; the message is one line and holds no data values."""


@dataclass(frozen=True)
class Manifest:
    operator: str
    feed: str
    contract_version: str
    file: str
    sha256: str
    bytes: int
    row_count: int
    window_start: datetime
    window_end: datetime
    delivery: int
    key_id: str | None
    created_at: str | None
    raw: dict[str, Any]

    @property
    def drop_id(self) -> str:
        return drop_id(self.operator, self.feed, self.window_start, self.delivery, self.sha256)


def drop_id(operator: str, feed: str, window_start: datetime, delivery: int, sha256: str) -> str:
    return f"{operator}_{feed}_{window_start.astimezone(timezone.utc):%Y%m%dT%H%MZ}_d{delivery}_{sha256[:12]}"


def _parse_time(value: str, field: str) -> datetime:
    # An operator must say which zone it means: a naive time is refused, not assumed UTC.
    try:
        return parse_utc(value, what=f"manifest {field}", require_offset=True)
    except TimeParseError as error:
        raise ManifestError(str(error)) from None


def safe_file_name(name: str) -> bool:
    """A bare file name: no directory part, no traversal, printable UTF-8 (no control characters)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or has_control_chars(name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return name == Path(name).name and not name.startswith(".")


def parse_manifest_bytes(payload: bytes, *, folder_operator: str, window_minutes: int = 15,
                         feeds: dict[str, str] | None = None) -> Manifest:
    """Verify a manifest's content (schema, alignment, scheme). Raises ManifestError.

    ``feeds``: feed -> kind of the feeds this operator has a contract for (default: events, cells)."""
    document = _load_document(payload)
    _check_strings(document)
    feeds = FEEDS if feeds is None else feeds
    _check_values(document, folder_operator, feeds)
    start, end = _window(document, window_minutes)
    key_id = _pseudonymization_key_id(document, feeds[document["feed"]])
    return Manifest(
        operator=document["operator"],
        feed=document["feed"],
        contract_version=document["contract_version"],
        file=document["file"],
        sha256=document["sha256"],
        bytes=document["bytes"],
        row_count=document["row_count"],
        window_start=start,
        window_end=end,
        delivery=document["delivery"],
        key_id=key_id,
        created_at=document.get("created_at") if isinstance(document.get("created_at"), str) else None,
        raw=document,
    )


def _load_document(payload: bytes) -> dict[str, Any]:
    """The manifest's JSON object, with every required field present and of its type."""
    if len(payload) > MAX_MANIFEST_BYTES:
        raise ManifestError("manifest larger than 64 KiB")
    try:
        document = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ManifestError("manifest is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise ManifestError("manifest is not a JSON object")
    missing = sorted(field for field in REQUIRED_FIELDS if field not in document)
    if missing:
        raise ManifestError(f"manifest misses fields: {', '.join(missing)}")
    for field, kind in REQUIRED_FIELDS.items():
        value = document[field]
        # bool is an int subclass in Python; a JSON true is not a count.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ManifestError(f"manifest field {field} must be {kind.__name__}")
    return document


def _check_strings(value: Any, where: str = "") -> None:
    """No control or format character (newline, ESC, bidi override...) in any key or string value."""
    if isinstance(value, str):
        if has_control_chars(value):
            raise ManifestError(f"manifest field {where or '(root)'} contains control characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            if has_control_chars(key):
                raise ManifestError(f"a manifest field name{' in ' + where if where else ''} contains control characters")
            _check_strings(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_strings(item, f"{where}[{index}]")


def _check_values(document: dict[str, Any], folder_operator: str, feeds: dict[str, str]) -> None:
    """Field values: version, operator folder, feed, bare file name, sha256, counts, delivery."""
    if document["manifest_version"] != 1:
        raise ManifestError("unsupported manifest_version (expected 1)")
    if document["operator"] != folder_operator:
        raise ManifestError("manifest operator does not match its landing folder")
    if not FEED_NAME.fullmatch(document["feed"]):
        raise ManifestError("manifest feed is not a feed name (lowercase letters, digits and '_', at most 32)")
    if document["feed"] not in feeds:
        raise ManifestError(f"manifest feed {document['feed']} has no data contract for this operator "
                            f"(feeds: {', '.join(sorted(feeds)) or 'none'})")
    if not safe_file_name(document["file"]):
        raise ManifestError("manifest file is not a bare file name (path traversal refused)")
    # Hex is case-insensitive: Windows' Get-FileHash prints upper case. Normalised to lower case
    # (the form the platform computes and stores) before anything compares it.
    sha = document["sha256"].lower()
    if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
        raise ManifestError("manifest sha256 is not 64 hex digits")
    document["sha256"] = sha
    if document["bytes"] < 0 or document["row_count"] < 0:
        raise ManifestError("manifest bytes/row_count must not be negative")
    if document["delivery"] < 1:
        raise ManifestError("manifest delivery must be >= 1")


def _window(document: dict[str, Any], window_minutes: int) -> tuple[datetime, datetime]:
    """(window_start, window_end): zone-explicit, aligned, exactly one window long."""
    start = _parse_time(document["window_start"], "window_start")
    end = _parse_time(document["window_end"], "window_end")
    if start.second or start.microsecond or start.minute % window_minutes:
        raise ManifestError(f"manifest window_start is not aligned to {window_minutes} minutes")
    if end - start != timedelta(minutes=window_minutes):
        raise ManifestError(f"manifest window is not exactly {window_minutes} minutes")
    return start, end


def _pseudonymization_key_id(document: dict[str, Any], kind: str) -> str | None:
    """The pseudonymization key id, if any; an event feed's manifest must declare HMAC-SHA256 and its key id."""
    pseudo = document.get("pseudonymization")
    if kind == "events":
        # Events carry subscriber keys: only HMAC-SHA256 pseudonyms are accepted (docs/design.md 4.1).
        if not isinstance(pseudo, dict) or pseudo.get("scheme") != PSEUDONYMIZATION_SCHEME:
            raise ManifestError(f"manifest pseudonymization.scheme must be {PSEUDONYMIZATION_SCHEME}")
        if "key_id" not in pseudo:
            raise ManifestError("manifest pseudonymization.key_id is missing")
    if not isinstance(pseudo, dict) or "key_id" not in pseudo:
        return None
    key_id = pseudo["key_id"]
    # Only its shape here (safe to store and print); the operator's own naming is its contract's
    # key_id_pattern, checked once the contract is known (ingest._check_manifest).
    if not isinstance(key_id, str) or not KEY_ID_SAFE.fullmatch(key_id):
        raise ManifestError("manifest pseudonymization.key_id must be 1-64 letters, digits, '.', '_' or '-'")
    return key_id
