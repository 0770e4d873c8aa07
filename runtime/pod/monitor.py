"""Where the per-pod monitor executable is (``csrc/monitor/``, built at install time)."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "CORRAL_MONITOR"
BUILT = Path(__file__).resolve().parent.parent / "_bin" / "corral-monitor"


class MonitorMissing(FileNotFoundError):
    """The corral-monitor executable is not where it should be."""


def monitor_path() -> Path:
    """The corral-monitor executable: ``$CORRAL_MONITOR`` if set, else the one built into the
    package (``runtime/_bin/corral-monitor``)."""
    override = os.environ.get(ENV)
    path = Path(override) if override else BUILT
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = f"${ENV}={override}" if override else str(path)
        raise MonitorMissing(
            f"corral-monitor not found or not executable at {where} "
            "(reinstall corral to build it: pip install -e .)"
        )
    return path
