"""OCI hooks: each kind runs at its time, in its namespace, with the state on stdin."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Runtime

pytestmark = pytest.mark.root


def _hook(log: Path, kind: str, extra: str = "") -> dict[str, Any]:
    """A host shell hook that appends "<kind> <mount ns> <state json>" to ``log``."""
    script = f'state=$(cat); echo "{kind} $(readlink /proc/self/ns/mnt) $state" >> {log}; {extra}'
    return {"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["A=1"], "timeout": 10}


def _entries(log: Path) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for line in log.read_text().splitlines():
        kind, ns, state = line.split(" ", 2)
        out.append((kind, ns, json.loads(state)))
    return out


def test_hooks_run_in_order_with_state(runtime: Runtime, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    out = tmp_path / "out"
    out.mkdir()
    cid, bundle = runtime.prepare("true")
    spec = json.loads((bundle / "config.json").read_text())
    spec["mounts"].append(
        {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind", "rw"]}
    )
    spec["hooks"] = {
        "prestart": [_hook(log, "prestart")],
        "createRuntime": [_hook(log, "createRuntime")],
        "createContainer": [_hook(log, "createContainer")],
        "startContainer": [
            {
                "path": "/bin/sh",
                "args": ["sh", "-c", "cat > /out/start-state; echo $B > /out/start-env"],
                "env": ["B=inside"],
            }
        ],
        "poststart": [_hook(log, "poststart")],
        "poststop": [_hook(log, "poststop")],
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    host_ns = os.readlink("/proc/self/ns/mnt")

    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    pid = runtime.state(cid)["pid"]
    container_ns = os.readlink(f"/proc/{pid}/ns/mnt")
    kinds = [k for k, _, _ in _entries(log)]
    assert kinds == ["prestart", "createRuntime", "createContainer"]
    for kind, ns, state in _entries(log):
        assert state["id"] == cid and state["pid"] == pid and state["bundle"] == str(bundle)
        assert ns == (container_ns if kind == "createContainer" else host_ns)

    runtime.cli("start", cid, check=True)
    assert [k for k, _, _ in _entries(log)][-1] == "poststart"
    assert (out / "start-env").read_text().strip() == "inside"
    assert json.loads((out / "start-state").read_text())["id"] == cid

    runtime.cli("delete", "--force", cid, check=True)
    kind, _, state = _entries(log)[-1]
    assert kind == "poststop" and state["id"] == cid


def test_failing_prestart_hook_fails_create_and_runs_poststop(
    runtime: Runtime, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.log"
    cid, bundle = runtime.prepare("true")
    spec = json.loads((bundle / "config.json").read_text())
    spec["hooks"] = {
        "prestart": [_hook(log, "prestart", "exit 3")],
        "poststop": [_hook(log, "poststop")],
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    res = runtime.cli("create", "--bundle", str(bundle), cid)
    assert res.rc != 0
    assert "prestart hook #0 (/bin/sh): exit status 3" in res.err
    assert [k for k, _, _ in _entries(log)] == ["prestart", "poststop"]
    assert not (runtime.root / cid).exists()


def test_hook_timeout(runtime: Runtime, tmp_path: Path) -> None:
    cid, bundle = runtime.prepare("true")
    spec = json.loads((bundle / "config.json").read_text())
    spec["hooks"] = {
        "createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "100"], "timeout": 1}]
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    res = runtime.cli("create", "--bundle", str(bundle), cid)
    assert res.rc != 0 and "timed out after 1s" in res.err
    assert not (runtime.root / cid).exists()


def test_failing_poststart_is_a_warning(runtime: Runtime, tmp_path: Path) -> None:
    cid, bundle = runtime.prepare("true")
    spec = json.loads((bundle / "config.json").read_text())
    spec["hooks"] = {"poststart": [{"path": "/bin/false"}]}
    (bundle / "config.json").write_text(json.dumps(spec))
    res = runtime.cli("run", "--bundle", str(bundle), cid)
    assert res.rc == 0
    assert "warning: poststart hook #0 (/bin/false)" in res.err
