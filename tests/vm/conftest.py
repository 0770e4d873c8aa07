"""Fixtures for the VM tests: ``vm`` runs a command in a fresh throwaway VM (one boot per call).

The VM tests skip, with the reason, where this host cannot boot the VM (no qemu, no kernel
image, no static busybox, not x86_64) or when not root (the guest reads the host's root
filesystem through qemu, which must be able to read every file). The arm64 VM
(tests/vm/test_arm64.py) has a fixture of its own: it needs qemu-system-aarch64 and its
userland, not the host's kernel.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytest

from tests.vm import harness

Runner = Callable[..., harness.Result]


@pytest.fixture(scope="session")
def vm_boot_files() -> harness.BootFiles:
    if os.geteuid() != 0:
        pytest.skip("needs root (qemu exports the host's root filesystem to the guest)")
    try:
        harness.qemu_binary()
        return harness.boot_files()
    except harness.VMUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def vm(vm_boot_files: harness.BootFiles) -> Runner:
    """``vm(argv, cwd=..., env=..., timeout=...)``: boot, run, return a harness.Result.

    harness.run kills qemu and removes its temp dir itself, on timeout too."""

    def run(argv: Sequence[str], **kwargs: object) -> harness.Result:
        return harness.run(argv, **kwargs)  # type: ignore[arg-type]

    return run
