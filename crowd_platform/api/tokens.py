"""Bearer tokens of the published API (docs/api.md, decision 017).

A token is 32 random bytes (``secrets.token_urlsafe``), printed once at issue; the warehouse keeps
only its SHA-256 (``api_tokens``, sql/schema/080_api.sql), its name (who, in every audit record)
and its scope (published dataset names, or ``*``). Issue and revoke are audited in the hash
chain. After every change the CLI writes the whole table, hashes and all, to
``CROWD_HOME/api/tokens.json`` (temporary file, fsync, atomic rename); the server re-reads that
file within a second of it changing, so a revocation takes effect without the server ever
opening the warehouse read-write or waiting for a writer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crowd_platform.common import audit
from crowd_platform.common.settings import Settings
from crowd_platform.common.timeutil import utcnow
from crowd_platform.common.warehouse import connect, fetch_dicts, transaction

ALL = "*"
TOKEN_PREFIX = "cp_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class TokenError(ValueError):
    """A one-line reason (unknown dataset, bad name, unknown token)."""


def tokens_file(settings: Settings) -> Path:
    return settings.home / "api" / "tokens.json"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Grant:
    token_id: str
    name: str
    datasets: frozenset[str]

    def allows(self, dataset: str) -> bool:
        return ALL in self.datasets or dataset in self.datasets


def _export(settings: Settings, connection) -> None:
    rows = fetch_dicts(connection, "SELECT token_id, name, token_sha256, datasets, revoked_at IS NOT NULL AS revoked "
                                   "FROM api_tokens ORDER BY issued_at, token_id")
    document = {"tokens": [{"token_id": row["token_id"], "name": row["name"], "sha256": row["token_sha256"],
                            "datasets": list(row["datasets"]), "revoked": bool(row["revoked"])} for row in rows]}
    path = tokens_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _check_datasets(settings: Settings, datasets: list[str] | None, all_datasets: bool) -> list[str]:
    from crowd_platform.api.datasets import published_tables

    if all_datasets:
        if datasets:
            raise TokenError("give --datasets or --all, not both")
        return [ALL]
    if not datasets:
        raise TokenError("give --datasets a,b or --all")
    known = set(published_tables(settings))
    unknown = sorted(set(datasets) - known)
    if unknown:
        raise TokenError(f"not a published dataset: {', '.join(unknown)} (published: {', '.join(sorted(known))})")
    return sorted(set(datasets))


def issue(settings: Settings, name: str, datasets: list[str] | None, all_datasets: bool = False,
          actor: str | None = None) -> tuple[str, dict[str, Any]]:
    """Create a token; returns (the token, printed once and never stored; its public record)."""
    if not NAME.match(name or ""):
        raise TokenError("--name: letters, digits, _ . @ - (up to 64), starting with a letter or digit")
    scope = _check_datasets(settings, datasets, all_datasets)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = {"token_id": uuid.uuid4().hex[:12], "name": name, "token_sha256": token_hash(token), "datasets": scope,
              "issued_at": utcnow(), "issued_by": actor or audit.default_actor()}
    with connect(settings.warehouse_path) as connection:
        with transaction(connection):
            connection.execute("INSERT INTO api_tokens (token_id, name, token_sha256, datasets, issued_at, issued_by) "
                               "VALUES (?, ?, ?, ?, ?, ?)", list(record.values()))
            audit.append(connection, "api_token_issued", purpose=settings.purpose, actor=record["issued_by"],
                         object_kind="api_token", object_id=record["token_id"],
                         details={"name": name, "datasets": scope})
        _export(settings, connection)
    return token, {key: value for key, value in record.items() if key != "token_sha256"}


def revoke(settings: Settings, token_id_or_name: str, actor: str | None = None) -> list[str]:
    """Revoke by token id, or every live token of a name; returns the revoked token ids."""
    actor = actor or audit.default_actor()
    with connect(settings.warehouse_path) as connection:
        with transaction(connection):
            ids = [row[0] for row in connection.execute(
                "SELECT token_id FROM api_tokens WHERE revoked_at IS NULL AND (token_id = ? OR name = ?) ORDER BY token_id",
                [token_id_or_name, token_id_or_name]).fetchall()]
            if not ids:
                raise TokenError("no live token with that id or name")
            now = utcnow()
            for token_id in ids:
                connection.execute("UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE token_id = ?",
                                   [now, actor, token_id])
                audit.append(connection, "api_token_revoked", purpose=settings.purpose, actor=actor,
                             object_kind="api_token", object_id=token_id, details={})
        _export(settings, connection)
    return ids


def list_tokens(settings: Settings) -> list[dict[str, Any]]:
    """Every token's public record (never its hash); also re-writes the server's tokens file."""
    with connect(settings.warehouse_path) as connection:
        rows = fetch_dicts(connection, "SELECT token_id, name, datasets, issued_at, issued_by, revoked_at, revoked_by "
                                       "FROM api_tokens ORDER BY issued_at, token_id")
        _export(settings, connection)
    return rows


class TokenStore:
    """The server's view of the tokens file, re-read when it changes (stat at most every
    ``check_interval_s``). A missing or unreadable file means no token is valid."""

    def __init__(self, path: Path, check_interval_s: float = 0.5) -> None:
        self.path = path
        self.check_interval_s = check_interval_s
        self._by_hash: dict[str, Grant] = {}
        self._signature: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_interval_s:
            return
        with self._lock:
            if now - self._checked < self.check_interval_s:
                return
            self._checked = now
            try:
                info = self.path.stat()
                signature = (info.st_mtime_ns, info.st_size, info.st_ino)
            except FileNotFoundError:
                self._by_hash, self._signature = {}, None
                return
            if signature == self._signature:
                return
            try:
                document = json.loads(self.path.read_text(encoding="utf-8"))
                grants = {entry["sha256"]: Grant(entry["token_id"], entry["name"], frozenset(entry["datasets"]))
                          for entry in document.get("tokens", []) if not entry.get("revoked")}
            except (OSError, ValueError, KeyError, TypeError):
                grants = {}  # fail closed
            self._by_hash, self._signature = grants, signature

    def lookup(self, token: str | None) -> Grant | None:
        """The grant of a presented token, or None. Compared by hash, in constant time."""
        self._reload_if_changed()
        if not token:
            return None
        digest = token_hash(token)
        found = None
        for stored, grant in self._by_hash.items():
            if hmac.compare_digest(stored, digest):
                found = grant
        return found
