"""The package layout is a contract: who may import whom, and how Dagster loads the location.

Rooms (see docs/architecture.md): `common/` is infrastructure and imports no domain; the
domains (ingestion, geography, density, publication, alerts, governance) import `common/` and
domains upstream of them in the data flow, never the code location, the runner or the CLI;
the runner sits between the CLI and the code location. CROWD_* variables are read only by
`common/settings.py`, so the list of them there is complete.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "crowd_platform"
# Data-flow order: a drop is ingested, placed, counted, alerted on, governed.
FLOW = ("ingestion", "geography", "density", "indicators", "alerts", "governance")
# k-anonymisation is a library every domain that publishes uses; it imports only common/.
LIBRARIES = ("publication",)
DOMAINS = FLOW + LIBRARIES
ABOVE_DOMAINS = ("crowd_platform.definitions", "crowd_platform.runner", "crowd_platform.cli")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every crowd_platform module a file imports, at module level or inside functions."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names if alias.name.startswith("crowd_platform"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("crowd_platform"):
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    return imported


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


MODULES = _modules()


def _violations(rooms: tuple[str, ...], forbidden) -> list[str]:
    problems = []
    for module, path in sorted(MODULES.items()):
        if _room(module) not in rooms:
            continue
        for target in sorted(_imports(path)):
            if forbidden(target):
                problems.append(f"{module} imports {target}")
    return problems


def test_common_imports_no_domain_and_nothing_above():
    def forbidden(target: str) -> bool:
        room = _room(target)
        return room in DOMAINS or target.startswith(ABOVE_DOMAINS) or room in ("simulator", "jobs")

    assert _violations(("common",), forbidden) == []


def test_domains_do_not_import_the_location_runner_or_cli():
    assert _violations(DOMAINS, lambda target: target.startswith(ABOVE_DOMAINS)) == []


def test_domain_imports_follow_the_data_flow():
    """A domain may import domains before it in the flow; an import back up would be a cycle
    waiting to happen (governance reads every domain, nothing reads governance)."""
    order = {room: rank for rank, room in enumerate(FLOW)}
    problems = []
    for module, path in sorted(MODULES.items()):
        source_room = _room(module)
        for target in _imports(path):
            target_room = _room(target)
            if source_room in order and target_room in order and order[target_room] > order[source_room]:
                problems.append(f"{module} imports {target} (downstream of {source_room})")
            if source_room in LIBRARIES and target_room in DOMAINS and target_room != source_room:
                problems.append(f"{module} imports {target} (a library imports only common/)")
    assert problems == []


def test_the_api_reaches_nothing_but_common():
    """The published API reads its own in-memory copy of the published tables (api/snapshot.py):
    it imports no domain, so no code path from a request can reach an internal table."""
    problems = [f"{module} imports {target}" for module, path in sorted(MODULES.items()) if _room(module) == "api"
                for target in sorted(_imports(path)) if _room(target) not in ("api", "common")]
    assert problems == []


def test_cli_modules_reach_domains_only_through_their_public_functions():
    """The CLI parses arguments and prints; it runs no SQL of its own, read or write."""
    problems = []
    for module, path in sorted(MODULES.items()):
        if _room(module) != "cli":
            continue
        source = path.read_text(encoding="utf-8")
        for statement in ("BEGIN", "COMMIT", "INSERT INTO", "UPDATE ", "DELETE FROM", "SELECT ", "SET "):
            if re.search(rf"[\"']\s*{statement}", source):
                problems.append(f"{module} writes SQL ({statement.strip()})")
    assert problems == []


def test_crowd_variables_are_read_only_by_settings():
    """Reads in any form (environ.get, getenv, environ[...] on the right-hand side); writes that
    set a variable for a child process or the rest of a CLI command are allowed."""
    settings_module = PACKAGE / "common" / "settings.py"
    problems = []
    for path in PACKAGE.rglob("*.py"):
        if path == settings_module:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv", "os.environ.pop") \
                    and node.args and "CROWD_" in ast.unparse(node.args[0]):
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
            if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" \
                    and isinstance(node.ctx, ast.Load) and "CROWD_" in ast.unparse(node.slice):
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert problems == []


def test_cross_domain_jobs_import_only_common():
    """jobs.py selects assets by key: the ingestion sensor imports it, so any domain import here
    would be a cycle."""
    problems = [target for target in _imports(PACKAGE / "jobs.py")
                if _room(target) not in ("common",) and target != "crowd_platform.common"]
    assert problems == []


def test_every_documented_variable_is_read_somewhere():
    from crowd_platform.common.settings import ENVIRONMENT

    sources = "\n".join(path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py"))
    unused = [name for name in ENVIRONMENT
              if sources.count(name.replace("<OPERATOR>", "")) < 2]  # listed once, read at least once
    assert unused == []


def test_dagster_loads_exactly_one_definitions_from_the_code_location():
    """What `dagster-webserver -w workspace.yaml` does, without the webserver: the module must
    hold exactly one Definitions at module scope, or the location fails to load in the UI."""
    from dagster._core.workspace.autodiscovery import loadable_targets_from_python_module

    targets = loadable_targets_from_python_module("crowd_platform.definitions", str(PACKAGE.parent))
    assert [target.attribute for target in targets] == ["defs"]


@pytest.mark.parametrize("room", DOMAINS)
def test_every_domain_has_one_home(room):
    home = PACKAGE / room
    assert home.is_dir(), f"{room} has no package"
    if room != "publication":
        assert (home / "defs.py").exists(), f"{room} has no defs.py wiring its Dagster objects"


TESTS = Path(__file__).resolve().parent


def test_tests_live_by_domain_and_only_pipeline_tests_run_the_pipeline():
    """Unit tests sit in their domain's folder and build what they need; the simulated week
    (`pipeline_home`, minutes of work) is for pipeline/ only, so a domain's tests stay fast."""
    flat = sorted(path.name for path in TESTS.glob("test_*.py"))
    assert flat == ["test_definitions.py", "test_layout.py"], f"tests outside a domain folder: {flat}"
    outside = sorted(str(path.relative_to(TESTS)) for path in TESTS.rglob("test_*.py")
                     if path.parent.name not in ("pipeline", TESTS.name)
                     and "pipeline_home" in path.read_text(encoding="utf-8"))
    assert outside == []
    helpers_in_tests = sorted(str(path.relative_to(TESTS)) for path in TESTS.rglob("test_*.py")
                              if re.search(r"from crowd_platform_tests\.\w+\.test_", path.read_text(encoding="utf-8")))
    assert helpers_in_tests == [], "shared helpers belong in crowd_platform_tests/support/"
