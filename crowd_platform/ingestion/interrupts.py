"""Telling "the process is being stopped" apart from "this drop is bad".

Ingestion quarantines a drop when its parse or validation fails, so those steps catch every
Exception. A SIGTERM (Dagster run termination, a pod eviction, Ctrl-C) that arrives while DuckDB
runs a query does not surface as the signal handler's exception: DuckDB interrupts the query and
raises ``RuntimeError('Query interrupted')`` (or ``duckdb.InterruptException``) instead, and the
original exception is lost (measured with DuckDB 2.0.1). Caught like any failure, that would
quarantine a good drop. An interrupt is a crash, not a verdict: the drop stays 'received' and
crash recovery re-lands it (runner/recovery.py).
"""

from __future__ import annotations

import duckdb


class IngestInterrupted(KeyboardInterrupt):
    """The process was asked to stop while a drop was being parsed or validated.

    A BaseException (via KeyboardInterrupt), so no ``except Exception`` on the way up turns it
    into a quarantine or a failed check: the run stops as interrupted runs do.
    """


def is_interrupt(error: BaseException) -> bool:
    """True for DuckDB's report of a query interrupted by a signal or by ``connection.interrupt()``."""
    if isinstance(error, duckdb.InterruptException):
        return True
    return type(error) is RuntimeError and str(error).strip() == "Query interrupted"


def reraise_if_interrupt(error: BaseException, while_doing: str) -> None:
    """Raise IngestInterrupted when ``error`` is DuckDB's report of a stop; otherwise return.

    Called first in every handler that would turn a failure into a verdict on the drop."""
    if is_interrupt(error):
        raise IngestInterrupted(f"interrupted while {while_doing}") from None
