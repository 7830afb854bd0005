"""Code version for provenance: a hash of the package source, SQL models and contracts.

Deterministic without git (CI clones, wheels), so an auditor can recompute it from a checkout.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from crowd_platform.common.settings import CONTRACTS_DIR, PROJECT_ROOT, SQL_DIR


@lru_cache(maxsize=1)
def code_version() -> str:
    digest = hashlib.sha256()
    roots = (PROJECT_ROOT / "crowd_platform", SQL_DIR, CONTRACTS_DIR, PROJECT_ROOT / "config")
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in {".py", ".sql", ".yaml", ".yml"}:
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# What each domain's assets depend on besides its own package: its SQL models, and for ingestion
# the data contracts it validates against.
_DOMAIN_INPUTS = {"ingestion": (CONTRACTS_DIR,)}


@lru_cache(maxsize=None)
def domain_code_version(domain: str) -> str:
    """Dagster ``code_version`` of every asset of a domain: a hash of the domain's package, its
    SQL models (``sql/<domain>/``) and declared inputs. Editing density code marks density assets
    changed in the UI, not every asset of the platform; records (audit log, alert rows,
    metadata) carry the whole-platform :func:`code_version` an auditor recomputes."""
    digest = hashlib.sha256()
    roots = (PROJECT_ROOT / "crowd_platform" / domain, SQL_DIR / domain, *_DOMAIN_INPUTS.get(domain, ()))
    for root in roots:
        for path in sorted(root.rglob("*")) if root.exists() else ():
            if path.is_file() and path.suffix in {".py", ".sql", ".yaml", ".yml"}:
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
                digest.update(path.read_bytes())
    return f"{domain}-{digest.hexdigest()[:12]}"
