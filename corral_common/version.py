"""Corral's version, from the installed package's metadata (pyproject.toml's ``version``).

``importlib.metadata`` costs tens of milliseconds to import, so it is imported only when a
version is asked for (``--version``, ``corral-oci features``), never when this module is.
"""

from __future__ import annotations

DIST = "corral"
UNKNOWN = "0+unknown"  # a source tree that was never installed has no metadata


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DIST)
    except PackageNotFoundError:
        return UNKNOWN
