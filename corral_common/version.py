"""Corral's version, from the installed package's metadata (pyproject.toml's ``version``).

Read only when a version is asked for (``--version``, ``corral-oci features``, the agent's
Node), never when this module is imported: from the name of the ``corral-VERSION.dist-info``
directory pip made, where ``importlib.metadata`` would find it; ``importlib.metadata`` itself
(tens of milliseconds to import; with zipfile and csv, about 1 MiB a long-running process such
as the agent would keep) only where that directory is not the first metadata on sys.path.
"""

from __future__ import annotations

import os
import sys

DIST = "corral"
UNKNOWN = "0+unknown"  # a source tree that was never installed has no metadata
_DIST_INFO = ".dist-info"


def _dist_info_version() -> str | None:
    """The version in the name of the first ``corral-VERSION.dist-info`` directory (with its
    METADATA) on sys.path; None if other metadata of corral (an egg-info) comes first, or
    none is found."""
    prefix = f"{DIST}-"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if not name.startswith((prefix, f"{DIST}.")):
                continue
            if name.endswith(".egg-info"):
                return None
            if name.endswith(_DIST_INFO) and os.path.isfile(
                os.path.join(entry or ".", name, "METADATA")
            ):
                return name[len(prefix) : -len(_DIST_INFO)]
    return None


def version() -> str:
    found = _dist_info_version()
    if found is not None:
        return found
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DIST)
    except PackageNotFoundError:
        return UNKNOWN
