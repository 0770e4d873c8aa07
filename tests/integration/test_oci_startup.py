"""What corral-oci imports for the commands an engine runs per container, run for real.

The hot commands (create and run; start, state, kill and delete too) are timed against runc
in bench/ (spawn-cli); what keeps them fast is what they do not import, checked here on real
containers (the root-less check of start, state, kill and delete is tests/unit/test_imports.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.startup import command_modules
from tests.conftest import Runtime

pytestmark = pytest.mark.root

# Modules no hot command needs: each would cost a share of milliseconds of every container
# an engine starts (the regex compiler and enum, which dataclasses would bring in; json's
# regexes, the typing and inspect machinery, a thread or subprocess layer, the config
# model's rarely used parts, the orchestrator, the image store, ...).
CREATE_FORBIDDEN = (
    "re", "enum", "click", "json", "typing", "inspect", "ast", "copy", "weakref", "contextlib",
    "subprocess", "threading", "socket", "shutil", "importlib.metadata", "hashlib", "ctypes",
    "logging", "datetime", "pyroute2", "orchestrator", "images", "runtime._config_extra",
    "runtime.hooks", "runtime.cgroups.stats", "encodings.ascii",
)  # fmt: skip
# ... and for those that read the state a create left, nothing of the config model, the
# planner or the C core either, and none of the dataclass machinery.
LIFECYCLE_FORBIDDEN = (
    *CREATE_FORBIDDEN, "dataclasses", "functools", "collections", "types", "signal",
    "runtime.config", "runtime.plan", "runtime._sys", "_cffi_backend", "corral_common.hostsys",
    "runtime.cgroups.layout", "runtime.cgroups.factory",
)  # fmt: skip


def _check(rt: Runtime, argv: list[str], out: Path, forbidden: tuple[str, ...]) -> str:
    proc, mods = command_modules(["--root", str(rt.root), *argv], out)
    assert proc.returncode == 0, (argv, proc.stderr)
    assert "runtime.container" in mods, argv
    imported = [name for name in forbidden if name in mods]
    assert not imported, (argv, imported)
    return str(proc.stdout)


def test_an_engines_commands_import_nothing_heavy(runtime: Runtime, tmp_path: Path) -> None:
    cid, bundle = runtime.prepare("sleep", "60")
    _check(
        runtime,
        ["create", "--bundle", str(bundle), cid],
        tmp_path / "modules-create",
        CREATE_FORBIDDEN,
    )
    assert runtime.state(cid)["status"] == "created"
    out = _check(runtime, ["state", cid], tmp_path / "modules-state", LIFECYCLE_FORBIDDEN)
    assert '"status": "created"' in out
    _check(runtime, ["start", cid], tmp_path / "modules-start", LIFECYCLE_FORBIDDEN)
    assert runtime.state(cid)["status"] == "running"
    _check(runtime, ["kill", "--all", cid, "KILL"], tmp_path / "modules-kill", LIFECYCLE_FORBIDDEN)
    _check(runtime, ["delete", "--force", cid], tmp_path / "modules-delete", LIFECYCLE_FORBIDDEN)
    assert runtime.cli("state", cid).rc == 1


def test_run_imports_what_create_does(runtime: Runtime, tmp_path: Path) -> None:
    cid, bundle = runtime.prepare("true")
    _check(
        runtime, ["run", "--bundle", str(bundle), cid], tmp_path / "modules-run", CREATE_FORBIDDEN
    )
    assert runtime.cli("state", cid).rc == 1  # run deleted it
