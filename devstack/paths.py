"""Well-known locations inside the repository checkout."""

from __future__ import annotations

import os
from pathlib import Path

# devstack is installed in editable mode from the checkout, so the repository
# root is simply the parent of this package.
REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Where downloaded artefacts (the Kafka jars) are kept between runs."""
    override = os.environ.get("RAPPORT_CACHE_DIR")
    return Path(override) if override else REPO_ROOT / ".rapport" / "cache"


def data_dir() -> Path:
    """Where ``make up`` keeps its persistent state."""
    override = os.environ.get("RAPPORT_DATA_DIR")
    return Path(override) if override else REPO_ROOT / ".rapport" / "data"
