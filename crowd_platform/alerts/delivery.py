"""Delivery of broadcast requests: outbox files and optional HTTP POST to the operator.

Both are idempotent on the request id: the outbox file is created only if absent (written to
a temporary name, then hard-linked into place, which fails if the name exists), and the HTTP
request carries ``Idempotency-Key: <request_id>`` so an operator endpoint that already
accepted it can answer 2xx/409 without sending a second SMS blast.

The endpoint is trusted only as configured: https is required (plain http only to a loopback
host: 127.0.0.0/8, ::1, localhost, for local tests and a sidecar), and redirects are never
followed. A 3xx is a failed delivery recorded with its status: following it would post the
request to a host nobody configured (and to http, an alert body in clear text).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from crowd_platform.common import storage
from crowd_platform.common.settings import env_with_prefix

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
ALREADY_ACCEPTED_STATUS = 409  # the endpoint has this idempotency key already


@dataclass(frozen=True)
class HttpTarget:
    url: str
    timeout_s: float = 5.0
    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass(frozen=True)
class DeliveryResult:
    http_status: str          # e.g. "202", "409", "503", "307", "error:ConnectionError", "refused:plain-http"
    attempts: int
    delivered_at: datetime | None
    reason: str | None = None  # one line, when not delivered for a reason the status alone does not say

    @property
    def delivered(self) -> bool:
        return self.delivered_at is not None


def http_targets(settings: Any) -> dict[str, HttpTarget]:
    """Operator -> endpoint from config broadcast.http, overridden by CROWD_BROADCAST_URL_<OPERATOR>."""
    targets: dict[str, HttpTarget] = {
        operator: HttpTarget(url=entry.url, timeout_s=entry.timeout_s, max_attempts=entry.max_attempts,
                             backoff_base_s=entry.backoff_base_s, backoff_max_s=entry.backoff_max_s)
        for operator, entry in settings.config.broadcast.http.items()
    }
    prefix = "CROWD_BROADCAST_URL_"
    for name, value in env_with_prefix(prefix).items():
        if value:
            operator = name[len(prefix):].lower()
            base = targets.get(operator)
            targets[operator] = HttpTarget(url=value, timeout_s=base.timeout_s if base else 5.0,
                                           max_attempts=base.max_attempts if base else 5,
                                           backoff_base_s=base.backoff_base_s if base else 0.5,
                                           backoff_max_s=base.backoff_max_s if base else 30.0)
    return targets


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): uniform(0, min(max, base * 2^n))."""
    ceiling = min(max_s, base_s * (2 ** (attempt - 1)))
    return (rng or random).uniform(0, ceiling)


def _is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_problem(url: str) -> str | None:
    """Why an endpoint URL is refused before any connection (one line), or None when it may be used."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "endpoint URL is malformed"
    if parts.scheme not in ("https", "http") or not host:
        return "endpoint URL must be https://<host>/..."
    if parts.scheme == "http" and not _is_loopback(host):
        return "endpoint uses plain http to a non-loopback host; https is required"
    return None


def post_with_retries(
    target: HttpTarget,
    payload: dict[str, Any],
    idempotency_key: str,
    *,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> DeliveryResult:
    """POST ``payload`` as JSON until a 2xx (or 409: already accepted), a non-retryable status, or attempts run out.

    Refused without any connection when the endpoint is not https (loopback excepted). A 3xx is
    never followed and not retried within this call: a redirect is the endpoint's configuration,
    the same URL answers the same way a second later. The request stays undelivered, so the next
    run of broadcast_requests tries again, as after any failure.
    """
    problem = endpoint_problem(target.url)
    if problem:
        return DeliveryResult("refused:plain-http" if "plain http" in problem else "refused:invalid-url", 0, None, problem)
    http = session or requests.Session()
    headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
    body = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    status = "error:not-attempted"
    for attempt in range(1, target.max_attempts + 1):
        try:
            response = http.post(target.url, data=body, headers=headers, timeout=target.timeout_s, allow_redirects=False)
            status = str(response.status_code)
            if 200 <= response.status_code < 300 or response.status_code == ALREADY_ACCEPTED_STATUS:
                return DeliveryResult(status, attempt, datetime.now(timezone.utc))
            if 300 <= response.status_code < 400:
                return DeliveryResult(status, attempt, None, "endpoint answered with a redirect; redirects are never followed")
            if response.status_code not in RETRYABLE_STATUS:
                return DeliveryResult(status, attempt, None)
        except requests.RequestException as error:  # connection refused, timeout: worth retrying
            status = f"error:{type(error).__name__}"
        if attempt < target.max_attempts:
            sleep(backoff_delay(attempt, target.backoff_base_s, target.backoff_max_s, rng))
    return DeliveryResult(status, target.max_attempts, None)


def write_outbox_file(path: Path, payload: dict[str, Any]) -> bool:
    """Create ``path`` with the JSON payload only if it does not exist. True if this call created it."""
    if not storage.is_local(path):
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, indent=2)
        return storage.create_exclusive(path, text.encode("utf-8"))
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, sort_keys=True, ensure_ascii=False, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temporary, path)  # atomic and exclusive: fails if another writer got there first
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)


# --------------------------------------------------------------------------- requests and messages
def request_id_for(alert_id: str, transition: str, window_start: datetime, operator: str) -> str:
    """Idempotent id: the same alert transition for the same operator is one request, forever."""
    import hashlib

    stamp = window_start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    return hashlib.sha256(f"{alert_id}|{transition}|{stamp}|{operator}".encode()).hexdigest()[:32]


def load_templates(settings: Any) -> dict[str, Any]:
    import yaml

    with open(settings.config.broadcast.templates_file, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def render_messages(templates: dict[str, Any], transition: str, level: str, place_name: str,
                    place_id: str, severity: int) -> dict[str, str]:
    """Message per language ('id', 'en') for a transition, from config/broadcast_templates.yaml."""
    messages = (templates.get("messages") or {}).get(transition)
    if not messages:
        raise ValueError(f"broadcast templates: no message for transition {transition!r}")
    rendered = {}
    for language in ("id", "en"):
        level_name = ((templates.get("levels") or {}).get(level) or {}).get(language, level)
        severity_label = ((templates.get("severity_labels") or {}).get(severity) or {}).get(language, str(severity))
        rendered[language] = messages[language].format(place_name=place_name, level=level_name, place_id=place_id,
                                                       severity_label=severity_label)
    return rendered
