"""The registry fixtures' servers (``testkit.registry``), with a missing tool made a skip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from testkit import registry as _r
from testkit.registry import (
    Fault,
    FaultProxy,
    Pki,
    Registry,
    Seen,
    TokenServer,
    blob_fault,
    held_blob,
    manifest_fault,
)

__all__ = [
    "Fault",
    "FaultProxy",
    "Pki",
    "Registry",
    "Seen",
    "TokenServer",
    "blob_fault",
    "held_blob",
    "htpasswd_file",
    "make_pki",
    "manifest_fault",
    "need",
    "start_registry",
]

T = TypeVar("T")


def _skipping(f: Callable[..., T]) -> Callable[..., T]:
    def run(*args: Any, **kw: Any) -> T:
        try:
            return f(*args, **kw)
        except _r.Missing as e:
            pytest.skip(str(e))

    run.__doc__ = f.__doc__
    return run


need = _skipping(_r.need)
start_registry = _skipping(_r.start_registry)
htpasswd_file = _skipping(_r.htpasswd_file)
make_pki = _skipping(_r.make_pki)
