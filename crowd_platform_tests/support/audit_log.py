"""Reading and tampering with a real warehouse's audit chain, for the audit-chain tests."""

from __future__ import annotations

from crowd_platform.common.warehouse import connect
from crowd_platform.governance.audit_chain import VerifyResult, verify_chain


def verify(settings) -> VerifyResult:
    """`audit verify` as the platform runs it: the warehouse's chain against the witness."""
    with connect(settings.warehouse_path, read_only=True) as con:
        return verify_chain(con, settings.witness)


def run_sql(settings, statement: str, params=None) -> None:
    """One statement on the warehouse, as an attacker with write access would."""
    with connect(settings.warehouse_path) as con:
        con.execute(statement, params or [])
