"""Retention: delete what is past its period, prove it, and leave no bytes behind.

One module per step of a run, each importing only the ones before it:
- ``policy``: the periods, read from the data contracts only;
- ``plan``: what is expired (drops, orphaned files, warehouse rows), decided before deleting;
- ``delete``: the run (``apply_retention``): unlink + fsync, DELETE, certificates, audit-log
  pruning, then a rebuild of the warehouse file;
- ``verify``: after the rebuild, each certificate's verification, and the run's summary;
- ``purge``: the sunset (``sunset``): the purge of every personal datum when the emergency
  ends, then a scan proving none is left. (Not named ``sunset.py``: the package attribute
  ``sunset`` is the function.)
"""

from crowd_platform.governance.retention.delete import apply_retention, compact_warehouse
from crowd_platform.governance.retention.plan import Deletion, RetentionOutcome
from crowd_platform.governance.retention.policy import RetentionPolicy, load_policy
from crowd_platform.governance.retention.purge import SunsetReport, sunset
from crowd_platform.governance.retention.verify import outcome_summary, summary_json

__all__ = [
    "Deletion",
    "RetentionOutcome",
    "RetentionPolicy",
    "SunsetReport",
    "apply_retention",
    "compact_warehouse",
    "load_policy",
    "outcome_summary",
    "summary_json",
    "sunset",
]
