"""One audit record per API request, in JSON lines under ``CROWD_HOME/api_audit/`` (decision 017).

The warehouse's hash chain is written inside the writers' transactions, and the server never
opens the warehouse read-write (it would block the pipeline), so requests go to their own
append-only files: ``api_audit/YYYY-MM-DD.<pid>.jsonl`` (UTC day of the request; one file per
server process, so several workers never interleave lines). A background thread appends what
the request threads queue and fsyncs each batch (at most every 0.5 s); ``close()`` drains the
queue. A record holds who (token name, or ``-``), what (method, route, dataset, parameters,
never the token), when and the status.

Once its UTC day is over, the governance step ``audit_log_checkpoint`` seals each file into the
warehouse's hash chain (crowd_platform/governance/api_audit.py: bytes, sha256, line count, first
and last request time), so a later edit, truncation or deletion fails ``audit verify``; retention
deletes sealed files past the period ``data_contracts/platform_datasets.yaml`` declares for
``api_audit``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


AUDIT_FOLDER = "api_audit"
# api_audit/YYYY-MM-DD.<pid>.jsonl: the UTC day of the requests, the writing process.
FILE_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(\d+)\.jsonl$")


def audit_dir(home: Path) -> Path:
    return home / AUDIT_FOLDER


class AccessLog:
    def __init__(self, home: Path, flush_interval_s: float = 0.5) -> None:
        self.directory = audit_dir(home)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.flush_interval_s = flush_interval_s
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="api-audit-writer", daemon=True)
        self._handle = None
        self._day = None
        self._thread.start()

    def record(self, entry: dict[str, Any]) -> None:
        entry.setdefault("at", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        self._queue.put(entry)

    def _file_for(self, at: str):
        day = at[:10]
        if day != self._day:
            if self._handle is not None:
                self._handle.close()
            path = self.directory / f"{day}.{os.getpid()}.jsonl"  # FILE_NAME
            self._handle = open(path, "a", encoding="utf-8")
            self._day = day
        return self._handle

    def _write(self, batch: list[dict[str, Any]]) -> None:
        touched = []
        for entry in batch:
            handle = self._file_for(entry["at"])
            handle.write(json.dumps(entry, separators=(",", ":"), sort_keys=True, default=str) + "\n")
            if handle not in touched:
                touched.append(handle)
        for handle in touched:
            if handle.closed:
                continue
            handle.flush()
            os.fsync(handle.fileno())

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[dict[str, Any]] = []
            try:
                item = self._queue.get(timeout=self.flush_interval_s)
            except queue.Empty:
                continue
            while True:
                if item is None:
                    stop = True
                    break
                batch.append(item)
                if len(batch) >= 5000:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self._write(batch)
                except OSError:
                    pass  # a full disk must not take the API down; the next batch retries the file
        if self._handle is not None:
            self._handle.close()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
