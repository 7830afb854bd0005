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
