"""FlowKit's public one-day CDR sample onboarded as a new operator in a new country, the way
docs/onboarding.md tells an operator and a data engineer to do it: configuration and contracts
only (deployments/nepal_flowkit/), the operator-side tools, then `crowd-platform run`.

Each step is the real command in its own process: the deployment's configuration is read at
start (partitions span its emergency period), so it cannot share the test process's Jakarta one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FLOWKIT = PROJECT_ROOT.parent / "shared" / "data" / "peer" / "flowkit"
DEPLOYMENT = PROJECT_ROOT / "deployments" / "nepal_flowkit"
LOCAL_TIMEZONE = "Asia/Kathmandu"
KEY_ID = "flowkit-20160101"
EVENT_FEEDS = {"calls": "records/calls_20160101.csv", "sms": "records/sms_20160101.csv"}
CELLS = "infrastructure/cells.csv"


@dataclass(frozen=True)
class FlowkitDeployment:
    home: Path
    environment: dict[str, str]
    outputs: dict[str, str]  # step -> what the command printed

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"


def crowd_platform(environment: dict[str, str], *arguments: str) -> str:
    """Run one `crowd-platform` command as a user would; its output, or the failure with stderr."""
    result = subprocess.run([sys.executable, "-m", "crowd_platform", *arguments], env=environment, cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise AssertionError(f"crowd-platform {arguments[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def onboard_flowkit(workdir: Path) -> FlowkitDeployment:
    home = workdir / "home"
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("CROWD_", "DAGSTER_"))},
        "CROWD_HOME": str(home),
        "CROWD_CONFIG": str(DEPLOYMENT / "platform.yaml"),
        "CROWD_CONTRACTS": str(DEPLOYMENT / "data_contracts"),
        "CROWD_WITNESS": str(workdir / "witness"),
        "CROWD_ACTOR": "pytest-onboarding",
    }
    outputs: dict[str, str] = {}
    # Operator side: a daily HMAC key (never leaves the operator), both identifier columns
    # pseudonymized, then the exports cut into drops in the landing folder.
    key = workdir / "operator" / "hmac.key"
    key.parent.mkdir(parents=True)
    key.write_text(os.urandom(32).hex())
    landing = home / "landing"
    outputs["cells"] = crowd_platform(
        environment, "package", "--operator", "flowkit", "--feed", "cells", "--input", str(FLOWKIT / CELLS),
        "--landing", str(landing), "--valid-from-column", "date_of_first_service",
        "--valid-to-column", "date_of_last_service", "--timezone", LOCAL_TIMEZONE)
    # The reference data first, as an operator being onboarded delivers it: both cell-list versions
    # make the geography (registry, coverage, weights) before any event is counted.
    outputs["run cells"] = crowd_platform(environment, "run", "--purpose", "onboarding-proof")
    for feed, source in EVENT_FEEDS.items():
        export = FLOWKIT / source
        for column in ("msisdn", "msisdn_counterpart"):
            target = workdir / "operator" / f"{feed}_{column}.csv"
            outputs[f"pseudonymize {feed} {column}"] = crowd_platform(
                environment, "pseudonymize", "--key-file", str(key), "--input", str(export), "--column", column,
                "--id-rule", "string", "--output", str(target))
            export = target
        outputs[feed] = crowd_platform(environment, "package", "--operator", "flowkit", "--feed", feed,
                                       "--input", str(export), "--landing", str(landing), "--key-id", KEY_ID)
    # Platform side: one command processes everything that landed.
    outputs["run"] = crowd_platform(environment, "run", "--purpose", "onboarding-proof")
    return FlowkitDeployment(home=home, environment=environment, outputs=outputs)
