"""subPath, subPathExpr and hostPath types with real pods (issue #24 section 2, the
CVE-2017-1002101 class): a subPath that an earlier container turned into a symlink out of the
volume must not give a container the host's files.

Each attack is made by an init container in an emptyDir (as a pod would), then an app
container mounts the volume with the subPath: its start fails (StartError) with a message
naming the volume and the subPath, it never runs, and nothing is left mounted. Legitimate
subPaths (made by an init container, a file, a missing directory, a symlink that stays
inside) still work, and a restart resolves the subPath again. The ``pods`` fixture of
test_pods.py checks after each test that no mount, cgroup or process is left.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from corral_common import hostsys
from runtime.pod import api
from runtime.pod.prepare import PrepareError, mounts_under
from tests.integration import test_pods as tp
from tests.integration.test_pods import Pods, sh, until

image_tar = tp.image_tar  # the fixtures of test_pods.py
pods = tp.pods

pytestmark = pytest.mark.root

HOST_MARK = "host-only-file-of-the-test"


def _mark_host(pods: Pods) -> str:
    """A file only the host has: a container that sees it has escaped."""
    (pods.tmp / HOST_MARK).write_text("secret\n")
    return str(pods.tmp / HOST_MARK)


def _attack(pods: Pods, name: str, init_script: str, mount: dict[str, Any], **kw: Any) -> str:
    """An init container prepares the volume, the app mounts ``mount`` of it and looks for
    the host's files. Returns the pod uid once it finished."""
    raw = pods.manifest(
        name,
        [
            sh(
                "app",
                f"echo app-ran; ls /x; cat /x/{HOST_MARK} /x/tmp/*/{HOST_MARK} /x/hostname",
                volumeMounts=[{"name": "v", "mountPath": "/x", **mount}],
                **kw,
            )
        ],
        restartPolicy="Never",
        volumes=[{"name": "v", "emptyDir": {}}],
        initContainers=[sh("init", init_script, volumeMounts=[{"name": "v", "mountPath": "/v"}])],
    )
    uid = pods.run(raw)
    return uid


@pytest.mark.parametrize(
    ("init_script", "mount", "env"),
    [
        ("ln -s / /v/esc", {"subPath": "esc"}, []),
        ("ln -s /etc /v/esc", {"subPath": "esc"}, []),
        ("mkdir -p /v/d && ln -s ../../.. /v/d/up", {"subPath": "d/up"}, []),
        ("mkdir -p /v/d && ln -s ../.. /v/d/up", {"subPath": "d/up/tmp"}, []),
        ("ln -s / /v/esc", {"subPathExpr": "$(WHERE)"}, [{"name": "WHERE", "value": "esc"}]),
        ("true", {"subPathExpr": "$(WHERE)"}, [{"name": "WHERE", "value": "../../.."}]),
        ("true", {"subPathExpr": "a/$(WHERE)"}, [{"name": "WHERE", "value": "/../.."}]),
        ("true", {"subPathExpr": "$(WHERE)"}, [{"name": "WHERE", "value": "/etc"}]),
        ("true", {"subPathExpr": "$(NOWHERE)"}, []),
    ],
    ids=[
        "symlink-to-root",
        "symlink-to-etc",
        "relative-chain",
        "relative-chain-below",
        "expr-to-symlink",
        "expr-dotdot",
        "expr-dotdot-inside",
        "expr-absolute",
        "expr-missing",
    ],
)
def test_a_subpath_out_of_the_volume_fails_the_start(
    pods: Pods, init_script: str, mount: dict[str, Any], env: list[dict[str, str]]
) -> None:
    _mark_host(pods)
    uid = _attack(pods, "esc", init_script, mount, env=env)
    st = pods.wait(uid)
    assert [c.reason for c in st.init_containers] == ["Completed"], st
    app = st.container("app")
    assert (app.state, app.reason, app.exit_code) == ("Terminated", "StartError", 128), app
    sub = mount.get("subPath") or mount["subPathExpr"]
    assert "volume 'v'" in app.message, app.message
    if "subPath" in mount:
        assert f"subPath {sub!r}" in app.message, app.message
    else:
        assert "subPath" in app.message, app.message
    assert "container app" in app.message, app.message
    logs = "\n".join(api.logs(uid, pods.opts, "app"))
    assert "app-ran" not in logs and "secret" not in logs, logs
    assert st.phase == "Failed"


def test_a_failed_subpath_unmounts_the_ones_made_before_it(pods: Pods) -> None:
    """Two subPaths, the second escapes: after the StartError (while the pod still runs, kept
    by a second container) nothing is mounted below volume-subpaths/."""
    raw = pods.manifest(
        "half",
        [
            sh(
                "app",
                "echo app-ran",
                volumeMounts=[
                    {"name": "v", "mountPath": "/good", "subPath": "good"},
                    {"name": "v", "mountPath": "/bad", "subPath": "esc"},
                ],
            ),
            sh("keeper", "sleep 600"),
        ],
        restartPolicy="Never",
        volumes=[{"name": "v", "emptyDir": {}}],
        initContainers=[
            sh(
                "init",
                "mkdir /v/good && ln -s / /v/esc",
                volumeMounts=[{"name": "v", "mountPath": "/v"}],
            )
        ],
    )
    uid = pods.run(raw)
    pods.running_pid(uid, "keeper")
    app = until(
        "the app's StartError",
        lambda: (c := pods.container(uid, "app")).reason == "StartError" and c,
    )
    assert "volume 'v' subPath 'esc'" in app.message, app.message
    pod_dir = Path(pods.opts.root) / "run" / uid
    assert (pod_dir / "volumes" / "v" / "good").is_dir()
    assert not mounts_under(pod_dir / "volume-subpaths"), mounts_under(pod_dir)
    api.stop(uid, pods.opts, grace=0)


# ============================================================================= legitimate


def _mount_count(below: Path) -> int:
    """Mounts at or below ``below``, stacked ones counted each."""
    return sum(1 for m in hostsys.mountinfo() if hostsys.mounts_under(below, [m]))


def test_legitimate_subpaths_still_work(pods: Pods) -> None:
    init = (
        "mkdir -p /v/data/dir && echo made-by-init > /v/data/dir/file && "
        "ln -s data/dir /v/inlink && ln -s ./dir/../dir/file /v/data/flink"
    )
    mounts = [
        {"name": "v", "mountPath": "/d", "subPath": "data/dir"},
        {"name": "v", "mountPath": "/f", "subPath": "data/dir/file", "readOnly": True},
        {"name": "v", "mountPath": "/l", "subPath": "inlink"},
        {"name": "v", "mountPath": "/fl", "subPath": "data/flink"},
        {"name": "v", "mountPath": "/n", "subPath": "new/sub"},
        {"name": "v", "mountPath": "/e", "subPathExpr": "per-pod/$(POD_NAME)"},
        {"name": "v", "mountPath": "/all"},
    ]
    script = (
        "cat /d/file /f /l/file /fl; echo w > /n/x; echo e > /e/y; "
        "test -f /all/new/sub/x && test -f /all/per-pod/legit/y && echo ok; "
        "{ echo no >> /f; } 2>/dev/null || echo read-only"
    )
    raw = pods.manifest(
        "legit",
        [
            sh(
                "app",
                script,
                volumeMounts=mounts,
                env=[
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ],
            )
        ],
        restartPolicy="Never",
        volumes=[{"name": "v", "emptyDir": {}}],
        initContainers=[sh("init", init, volumeMounts=[{"name": "v", "mountPath": "/v"}])],
    )
    uid = pods.run(raw)
    st = pods.wait(uid)
    assert st.phase == "Succeeded", (st, api.logs(uid, pods.opts, "app"))
    out = api.logs(uid, pods.opts, "app")
    assert out[:5] == ["made-by-init"] * 4 + ["ok"], out
    assert out[5:] == ["read-only"], out


def test_a_restart_resolves_the_subpath_again(pods: Pods) -> None:
    """The first run swaps its subPath for a symlink to / and fails: the restart's create
    resolves it again and fails with the volume and subPath named; nothing stays mounted."""
    script = (
        "if [ -e /all/swapped ]; then echo second-run; ls /s; exit 0; fi; "
        "touch /all/swapped; echo first-run; rm -rf /all/s; ln -s / /all/s; exit 1"
    )
    raw = pods.manifest(
        "swap",
        [
            sh(
                "app",
                script,
                volumeMounts=[
                    {"name": "v", "mountPath": "/s", "subPath": "s"},
                    {"name": "v", "mountPath": "/all"},
                ],
            ),
            sh("keeper", "sleep 600"),
        ],
        restartPolicy="OnFailure",
        volumes=[{"name": "v", "emptyDir": {}}],
        initContainers=[sh("init", "mkdir /v/s", volumeMounts=[{"name": "v", "mountPath": "/v"}])],
    )
    uid = pods.run(raw)

    def refused() -> list[str]:
        lines = api.logs(uid, pods.opts, "app")
        return lines if any("subPath 's': resolves outside the volume" in x for x in lines) else []

    lines = until("the restart to be refused", refused)
    assert not any("second-run" in x for x in lines), lines
    assert pods.container(uid, "app").restart_count >= 1
    pod_dir = Path(pods.opts.root) / "run" / uid
    assert _mount_count(pod_dir / "volume-subpaths") == 0
    api.stop(uid, pods.opts, grace=0)


def test_a_restarted_container_gets_its_subpath_once(pods: Pods) -> None:
    """Each create unmounts the previous run's subPath mounts: the third run sees one."""
    script = "echo x >> /s/runs; [ $(wc -l < /s/runs) -ge 3 ] || exit 1; sleep 600"
    raw = pods.manifest(
        "again",
        [sh("app", script, volumeMounts=[{"name": "v", "mountPath": "/s", "subPath": "s"}])],
        restartPolicy="OnFailure",
        volumes=[{"name": "v", "emptyDir": {}}],
    )
    uid = pods.run(raw)
    pods.running_pid(uid, "app")
    until("the third run", lambda: pods.container(uid, "app").restart_count >= 2)
    pods.running_pid(uid, "app")
    pod_dir = Path(pods.opts.root) / "run" / uid
    assert (pod_dir / "volumes" / "v" / "s" / "runs").read_text() == "x\n" * 3
    assert _mount_count(pod_dir / "volume-subpaths") == 1
    assert mounts_under(pod_dir / "volume-subpaths") == [str(pod_dir / "volume-subpaths/v/app/0")]
    api.stop(uid, pods.opts, grace=0)


# ============================================================================= hostPath


def _host_object(kind: str, path: Path) -> None:
    if kind == "dir":
        path.mkdir()
    elif kind == "file":
        path.write_text("host file\n")
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "block":
        os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 250))
    elif kind == "char":
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # as /dev/null


@pytest.mark.parametrize(
    ("type_", "kind", "flag"),
    [
        ("Directory", "dir", "-d"),
        ("File", "file", "-f"),
        ("DirectoryOrCreate", "dir", "-d"),
        ("DirectoryOrCreate", None, "-d"),
        ("FileOrCreate", "file", "-f"),
        ("FileOrCreate", None, "-f"),
        ("Socket", "socket", "-S"),
        ("CharDevice", "char", "-c"),
        ("BlockDevice", "block", "-b"),
    ],
)
def test_host_path_types(pods: Pods, type_: str, kind: str | None, flag: str) -> None:
    host = pods.tmp / "host" / "obj"
    host.parent.mkdir()
    if kind is not None:
        _host_object(kind, host)
    raw = pods.manifest(
        "hp",
        [
            sh(
                "app",
                f"test {flag} /h && stat -c %i /h",
                volumeMounts=[{"name": "h", "mountPath": "/h"}],
            )
        ],
        restartPolicy="Never",
        volumes=[{"name": "h", "hostPath": {"path": str(host), "type": type_}}],
    )
    uid = pods.run(raw)
    st = pods.wait(uid)
    assert st.phase == "Succeeded", (st, api.logs(uid, pods.opts, "app"))
    # what was checked is what the container got
    assert api.logs(uid, pods.opts, "app") == [str(os.stat(host).st_ino)]
    if kind is None:
        assert stat.S_IMODE(os.stat(host).st_mode) == (0o755 if flag == "-d" else 0o644)


@pytest.mark.parametrize(
    ("type_", "kind", "why"),
    [
        ("Directory", None, "does not exist"),
        ("Directory", "file", "is not a directory"),
        ("File", "dir", "is not a regular file"),
        ("DirectoryOrCreate", "file", "is not a directory"),
        ("FileOrCreate", "dir", "is not a regular file"),
        ("FileOrCreate", "no-parent", "its directory does not exist"),
        ("Socket", "file", "is not a socket"),
        ("CharDevice", "block", "is not a character device"),
        ("BlockDevice", "char", "is not a block device"),
    ],
)
def test_host_path_type_mismatch_fails_and_leaves_nothing(
    pods: Pods, type_: str, kind: str | None, why: str
) -> None:
    host = pods.tmp / "host" / "obj"
    host.parent.mkdir()
    if kind == "no-parent":
        host = pods.tmp / "host" / "missing" / "obj"
    elif kind is not None:
        _host_object(kind, host)
    raw = pods.manifest(
        "hp",
        [sh("app", "echo app-ran", volumeMounts=[{"name": "h", "mountPath": "/h"}])],
        restartPolicy="Never",
        volumes=[{"name": "h", "hostPath": {"path": str(host), "type": type_}}],
    )
    with pytest.raises(PrepareError) as e:
        pods.run(raw)
    msg = str(e.value)
    assert "volume h" in msg and why in msg, msg
    assert not (pods.tmp / "host" / "missing").exists()
    assert api.list_pods(pods.opts) == []
    assert not mounts_under(pods.tmp)


def test_host_path_swapped_after_its_check_is_not_mounted(pods: Pods) -> None:
    """The type check and the mount are of one opened object: a path swapped between
    create (the check) and start (the containers) does not reach the containers."""
    from runtime.pod.manifest import parse_pod

    host = pods.tmp / "host" / "obj"
    host.mkdir(parents=True)
    (host / "checked").write_text("the checked directory\n")
    _mark_host(pods)
    raw = pods.manifest(
        "hp",
        [sh("app", "ls /h", volumeMounts=[{"name": "h", "mountPath": "/h"}])],
        restartPolicy="Never",
        volumes=[{"name": "h", "hostPath": {"path": str(host), "type": "Directory"}}],
    )
    pd = api.create(parse_pod(raw, base_dir=str(pods.tmp)), pods.opts, raw, str(pods.tmp))
    host.rename(pods.tmp / "host" / "was-checked")
    host.symlink_to(pods.tmp)  # what an attacker would swap in
    api.start(pd.uid, pods.opts)
    st = pods.wait(pd.uid)
    assert st.phase == "Succeeded", st
    assert api.logs(pd.uid, pods.opts, "app") == ["checked"]


def test_removing_a_pod_never_deletes_through_a_mount(pods: Pods) -> None:
    """A pod directory removed while a hostPath bind is still mounted in it (a teardown that
    did not finish) unmounts first: the host's files stay."""
    from runtime.pod.manifest import parse_pod

    host = pods.tmp / "host"
    host.mkdir()
    (host / "keep").write_text("host data\n")
    raw = pods.manifest(
        "rm",
        [sh("app", "true", volumeMounts=[{"name": "h", "mountPath": "/h"}])],
        volumes=[{"name": "h", "hostPath": {"path": str(host), "type": "Directory"}}],
    )
    pd = api.create(parse_pod(raw, base_dir=str(pods.tmp)), pods.opts, raw, str(pods.tmp))
    assert str(pd.path / "volumes" / "h") in mounts_under(pd.path)
    pd.remove()  # no teardown first
    assert (host / "keep").read_text() == "host data\n"
    assert not pd.path.exists() and not mounts_under(pods.tmp)
