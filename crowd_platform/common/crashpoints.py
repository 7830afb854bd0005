"""Fault injection for crash-safety tests: kill -9 the process at a named point.

`CROWD_CRASH_AT=<point>` makes the process SIGKILL itself the first time it reaches
`crash_point("<point>")`; nothing happens otherwise. The points sit where a crash hurts
most (between a file move and the transaction that records it, inside a transaction), so
the tests in crowd_platform_tests/runner/test_crash_safety.py prove that a rerun repairs it.
"""

from __future__ import annotations

import os
import signal

from crowd_platform.common.settings import env

POINTS = (
    "ingest_received",      # drop copied to raw/ and recorded, landing copy removed, not validated
    "publish_moved",        # staging file moved into the lake, drop not yet marked accepted
    "density_writing",      # inside district_density's transaction
    "alerts_writing",       # inside crowd_alerts' transaction
    "broadcast_written",    # outbox file written, request not yet recorded
    "retention_deleting",   # retention removed a first object, before its certificate
)


def crash_point(name: str) -> None:
    if env("CROWD_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
