"""The no-op `crowd-platform run`: when nothing waits, answer before Dagster is imported.

Importing the definitions and opening the instance cost ~4 s, which a cron job or an operator
polling `run` every minute pays for nothing. The shortcut is taken only when that is provably
safe: landing (a local folder) holds no file at all, and the last `process_pending` ended cleanly.
A run that crashed, was killed or had a failed Dagster run leaves its mark behind, so the next
`run` takes the full path with its recovery (interrupted runs, unfinished drops put back).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from crowd_platform.common.settings import Settings

MARK_FILE = "run_in_progress.json"


def mark_path(settings: Settings) -> Path:
    return settings.home / MARK_FILE


def nothing_pending(settings: Settings) -> bool:
    """True when landing holds no file and no earlier run left work unfinished. Conservative: any
    entry in landing (a drop still waiting for its manifest, a refused link) means the full path."""
    if settings.is_remote or mark_path(settings).exists():
        return False
    try:
        with os.scandir(settings.landing) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    return False
                with os.scandir(entry.path) as inside:
                    if any(True for _ in inside):
                        return False
    except FileNotFoundError:
        return True
    return True


@contextmanager
def run_mark(settings: Settings) -> Iterator[dict]:
    """Hold the mark while runs execute; the caller sets ``state["clean"]`` when every run succeeded
    (only then is the mark removed)."""
    path = mark_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path.write_text(json.dumps(record), encoding="utf-8")
    state = {"clean": False}
    yield state
    if state["clean"]:
        path.unlink(missing_ok=True)
