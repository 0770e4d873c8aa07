"""Ephemeral containers added to running pods (``runtime.pod.api.add_ephemeral_container``):
the monitor takes them from ``ephemeral.conf`` at SIGHUP and runs them once, in the pod's
network, IPC and UTS namespaces, with the target container's PID namespace when one is named.
The ``pods`` fixture (tests/integration/test_pods.py) checks that nothing is left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.pod import api
from tests.integration import test_pods
from tests.integration.test_pod_attach import read_until
from tests.integration.test_pods import IMAGE, Pods, sh, until

pods, image_tar = test_pods.pods, test_pods.image_tar

pytestmark = pytest.mark.root


def _ephemeral(pods: Pods, uid: str, name: str) -> api.ContainerStatus:
    st = pods.status(uid)
    pods.pids.update(c.pid for c in st.ephemeral_containers if c.pid)
    return st.container(name)


def _ns(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def test_ephemeral_container_targets_a_container(pods: Pods) -> None:
    """With targetContainerName: the target's pid namespace (its processes seen), the pod's
    net, ipc and uts; run once (never restarted); its status, logs; the pod's own state and
    phase untouched by its end."""
    uid = pods.run(pods.manifest("tgt", [sh("app", "echo marker-$$ >/dev/null; sleep 3600")]))
    app = pods.running_pid(uid, "app")
    script = "ps -o pid,args; hostname; exit 7"
    api.add_ephemeral_container(
        uid,
        pods.opts,
        {
            "name": "dbg",
            "image": IMAGE,
            "command": ["sh", "-c", script],
            "targetContainerName": "app",
        },
    )
    until("dbg ended", lambda: _ephemeral(pods, uid, "dbg").state == "Terminated")
    cs = _ephemeral(pods, uid, "dbg")
    assert (cs.kind, cs.exit_code, cs.restart_count) == ("ephemeral", 7, 0), cs
    out = "\n".join(api.logs(uid, pods.opts, "dbg"))
    assert "sleep 3600" in out, out  # the app's processes
    assert "tgt" in out  # the pod's hostname (its UTS namespace)
    st = pods.status(uid)
    assert st.phase == "Running" and st.container("app").state == "Running"
    assert [c.name for c in st.containers] == ["app"]
    assert st.to_json()["status"]["ephemeralContainerStatuses"][0]["name"] == "dbg"
    pod_dir = Path(pods.opts.root) / "run" / uid
    assert "kind ephemeral" in (pod_dir / "ephemeral.conf").read_text()
    assert _ephemeral(pods, uid, "dbg").restart_count == 0  # Always: still not restarted
    del app


def test_ephemeral_container_shares_the_pods_namespaces(pods: Pods) -> None:
    """Without a target: a pid namespace of its own; net, ipc, uts the app's; a second one
    added later; adding one again changes nothing; attach to its stdin and tty."""
    uid = pods.run(pods.manifest("ns", [sh("app", "sleep 3600")]))
    app = pods.running_pid(uid, "app")
    api.add_ephemeral_container(
        uid, pods.opts, {"name": "d1", "image": IMAGE, "command": ["sleep", "3600"]}
    )
    d1 = until("d1 running", lambda: _ephemeral(pods, uid, "d1").pid)
    for kind in ("net", "ipc", "uts"):
        assert _ns(d1, kind) == _ns(app, kind), kind
    assert _ns(d1, "pid") != _ns(app, "pid")
    shell = {"name": "d2", "image": IMAGE, "command": ["sh"], "stdin": True, "tty": True,
             "targetContainerName": "app"}  # fmt: skip
    api.add_ephemeral_container(uid, pods.opts, shell)
    d2 = until("d2 running", lambda: _ephemeral(pods, uid, "d2").pid)
    assert _ns(d2, "pid") == _ns(app, "pid")
    api.add_ephemeral_container(uid, pods.opts, shell)  # again: nothing new
    assert _ephemeral(pods, uid, "d2").pid == d2
    with api.attach(uid, pods.opts, "d2", stdin=True) as att:
        att.send_stdin(b"echo $((6*7))\n")
        assert b"42" in read_until(att, b"42")[1]
    st = pods.status(uid)
    assert [c.name for c in st.ephemeral_containers] == ["d1", "d2"]
    assert all(c.state == "Running" for c in st.ephemeral_containers)
    api.stop(uid, pods.opts, grace=0)  # the pod's end ends them
    st = pods.status(uid)
    assert all(c.state == "Terminated" for c in st.ephemeral_containers), st


def test_ephemeral_container_mounts_only_the_volumes_it_names(pods: Pods) -> None:
    uid = pods.run(
        pods.manifest(
            "vol",
            [
                sh(
                    "app",
                    "echo hi >/data/f; sleep 3600",
                    volumeMounts=[{"name": "data", "mountPath": "/data"}],
                )
            ],  # fmt: skip
            volumes=[{"name": "data", "emptyDir": {}}, {"name": "other", "emptyDir": {}}],
        )
    )
    pods.running_pid(uid, "app")
    api.add_ephemeral_container(
        uid,
        pods.opts,
        {
            "name": "d",
            "image": IMAGE,
            "command": ["sh", "-c", "cat /mnt/f; ls /data || true"],
            "volumeMounts": [{"name": "data", "mountPath": "/mnt"}],
        },  # fmt: skip
    )
    until("d ended", lambda: _ephemeral(pods, uid, "d").state == "Terminated")
    logs = api.logs(uid, pods.opts, "d")
    assert logs[0] == "hi", logs
    assert _ephemeral(pods, uid, "d").exit_code == 0


def test_a_pod_with_only_ephemeral_containers_left_ends(pods: Pods) -> None:
    """The pod's own containers over (Never): a debugger still running is stopped and the
    phase is the app's (Succeeded), not the debugger's."""
    uid = pods.run(pods.manifest("end", [sh("app", "sleep 2")], restartPolicy="Never"))
    pods.running_pid(uid, "app")
    api.add_ephemeral_container(
        uid, pods.opts, {"name": "d", "image": IMAGE, "command": ["sleep", "3600"]}
    )
    st = pods.wait(uid)
    assert st.phase == "Succeeded", st
    assert st.container("d").state == "Terminated", st


def test_adding_to_a_pod_that_is_not_running_is_refused(pods: Pods) -> None:
    uid = pods.run(pods.manifest("gone", [sh("app", "true")], restartPolicy="Never"))
    pods.wait(uid)
    api.stop(uid, pods.opts, grace=0)
    with pytest.raises(api.PodError, match="cannot add a container"):
        api.add_ephemeral_container(uid, pods.opts, {"name": "d", "image": IMAGE})


def test_a_bad_ephemeral_conf_is_warned_about_and_the_pod_runs_on(pods: Pods) -> None:
    """An error in ephemeral.conf (a pod key; a probe) is a line in monitor.log, not the
    monitor's end: the pod runs on and a good file read at the next SIGHUP is taken."""
    import signal

    uid = pods.run(pods.manifest("bad", [sh("app", "sleep 3600")]))
    pods.running_pid(uid, "app")
    pod_dir = Path(pods.opts.root) / "run" / uid
    monitor = pods.status(uid).monitor_pid
    assert monitor
    for text, why in (
        ("grace_s 1\n", "'grace_s': only container sections are added"),
        ("container x\nkind ephemeral\nprobe liveness\n", "an ephemeral container has no probes"),
        ("container x\nkind app\n", "kind: want ephemeral, not 'app'"),
    ):
        (pod_dir / "ephemeral.conf").write_text(text)
        os.kill(monitor, signal.SIGHUP)
        until(why, lambda why=why: why in (pod_dir / "monitor.log").read_text())
        assert pods.status(uid).phase == "Running"
    (pod_dir / "ephemeral.conf").unlink()
    api.add_ephemeral_container(uid, pods.opts, {"name": "d", "image": IMAGE, "command": ["true"]})
    until("d ended", lambda: _ephemeral(pods, uid, "d").state == "Terminated")
    assert [c.name for c in pods.status(uid).ephemeral_containers] == ["d"]


def test_an_add_that_failed_half_way_is_finished_by_the_next(
    pods: Pods, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded, then its bundle failed: the next add makes the rest (not a SIGHUP alone for
    a container the monitor was never told about)."""
    import runtime.pod.bundle

    uid = pods.run(pods.manifest("half", [sh("app", "sleep 3600")]))
    pods.running_pid(uid, "app")
    real = runtime.pod.bundle.container_config

    def broken(*a: object, **kw: object) -> object:
        raise OSError(5, "injected")

    monkeypatch.setattr(runtime.pod.bundle, "container_config", broken)
    ec = {"name": "d", "image": IMAGE, "command": ["sh", "-c", "echo made"]}
    with pytest.raises(api.PodError, match="bundle d"):
        api.add_ephemeral_container(uid, pods.opts, ec)
    assert [c.name for c in pods.status(uid).ephemeral_containers] == ["d"]  # recorded
    monkeypatch.setattr(runtime.pod.bundle, "container_config", real)
    api.add_ephemeral_container(uid, pods.opts, ec)
    until("d ended", lambda: _ephemeral(pods, uid, "d").state == "Terminated")
    assert api.logs(uid, pods.opts, "d") == ["made"]
