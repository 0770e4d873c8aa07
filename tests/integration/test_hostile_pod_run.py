"""Hostile manifests given to the node runtime directly (``corral pod run``,
runtime.pod.api): a memory-backed emptyDir is sized as the kubelet sizes it, whatever
sizeLimit says (1e40 bytes once made a tmpfs promising exabytes, 0 one with the kernel's
default)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import pytest

from runtime.pod import api
from runtime.pod.hostfacts import memory_capacity
from runtime.pod.prepare import mounts_under
from tests.integration import test_pods as tp
from tests.integration.test_pods import Pods, sh

image_tar = tp.image_tar  # the fixtures of test_pods.py
pods = tp.pods

pytestmark = pytest.mark.root

MIB = 1024 * 1024


def kib(size: int) -> int:
    """What /proc/mounts shows for a tmpfs of ``size`` bytes (whole pages, in KiB)."""
    return math.ceil(size / 4096) * 4


@pytest.mark.parametrize(
    ("size_limit", "memory_limit", "want"),
    [
        ("1e40", None, None),  # more than the node has: the node's memory
        ("1Ei", None, None),
        ("0", None, None),  # not a limit
        ("64Mi", None, 64 * MIB),
        ("64Mi", "32Mi", 32 * MIB),  # the pod may not use more than its limit
        ("16Mi", "32Mi", 16 * MIB),
        ("1e40", "32Mi", 32 * MIB),
    ],
)
def test_memory_empty_dir_is_sized_as_the_kubelet_does(
    pods: Pods, size_limit: str, memory_limit: str | None, want: int | None
) -> None:
    app: dict[str, Any] = sh(
        "app", "grep ' /m ' /proc/mounts", volumeMounts=[{"name": "m", "mountPath": "/m"}]
    )
    if memory_limit:
        app["resources"] = {"limits": {"memory": memory_limit}}
    raw = pods.manifest(
        "mem",
        [app],
        volumes=[{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": size_limit}}],
        restartPolicy="Never",
    )
    uid = pods.run(raw)
    st = pods.wait(uid)
    assert st.container("app").reason == "Completed", st
    line = "\n".join(api.logs(uid, pods.opts, "app"))
    m = re.search(r"\bsize=(\d+)k\b", line)
    assert m is not None, line
    assert int(m.group(1)) == kib(want or memory_capacity()), line


def test_memory_empty_dir_size_limit_is_checked_before_the_node(tmp_path: Path) -> None:
    from runtime.pod.errors import ManifestError
    from runtime.pod.manifest import parse_pod

    raw = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "neg"},
        "spec": {
            "containers": [{"name": "c", "image": "x"}],
            "volumes": [{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "-1"}}],
        },
    }
    with pytest.raises(ManifestError) as info:
        parse_pod(raw, str(tmp_path))
    assert info.value.field == "spec.volumes[0].emptyDir.sizeLimit"


def test_streams_name_only_the_pods_own_containers_and_ports(pods: Pods) -> None:
    """logs, exec, attach and port-forward through runtime.pod.api with a container name
    that is a path, or a port out of range: refused, naming the pod's containers."""
    from runtime.pod.store import PodError

    raw = pods.manifest("streams", [sh("app", "trap 'exit 0' TERM; while :; do sleep 0.2; done")])
    uid = pods.run(raw)
    pods.running_pid(uid, "app")
    calls = {
        "logs": lambda c: api.logs(uid, pods.opts, c),
        "log_lines": lambda c: api.log_lines(uid, pods.opts, c),
        "exec": lambda c: api.exec_in(uid, pods.opts, ["true"], c),
        "attach": lambda c: api.attach(uid, pods.opts, c),
    }
    for what, call in calls.items():
        for name in ("../app", "app/../app", "/app", "app\x00", ".."):
            with pytest.raises(PodError) as info:
                call(name)
            assert f"no container {name!r} (the pod has app)" in str(info.value), (what, info)
    for port in (0, -1, 65536, 2**31):
        with pytest.raises(PodError, match="is not a TCP port"):
            api.port_connect(uid, pods.opts, port)
    api.stop(uid, pods.opts)


def test_a_subpath_swapped_for_a_symlink_after_it_was_resolved_is_not_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CVE-2021-25741 race made deterministic: between resolving a subPath and mounting
    it, the volume's owner swaps the directory for a symlink out of the volume. What is
    mounted is the directory that was resolved (held open), never the symlink's target."""
    from runtime.pod import subpath
    from runtime.pod.prepare import umount_all

    pod, vol, outside = tmp_path / "pod", tmp_path / "vol", tmp_path / "outside"
    (vol / "sub").mkdir(parents=True)
    (vol / "sub" / "inside").write_text("volume\n")
    outside.mkdir()
    (outside / "host-file").write_text("host\n")
    cdir = pod / "containers" / "app"
    cdir.mkdir(parents=True)
    target = pod / subpath.SUBPATH_DIR / "v" / "app" / "0"
    subpath.write_plan(cdir, [subpath.SubPathMount("v", "sub", str(vol), str(target))])
    place = subpath._placeholder

    def swap_then_place(where: Path, is_dir: bool) -> None:
        os.rename(vol / "sub", vol / "moved")
        os.symlink(outside, vol / "sub")
        place(where, is_dir)

    monkeypatch.setattr(subpath, "_placeholder", swap_then_place)
    try:
        subpath.mount_all(pod, "app")
        assert mounts_under(target) == [str(target)]
        assert os.listdir(target) == ["inside"]
    finally:
        umount_all(pod)
    assert not mounts_under(tmp_path)


@pytest.mark.parametrize(
    "path",
    [
        "/proc/self/exe",  # the runtime's own binary (the agent's python, corral-oci)
        "/proc/thread-self/exe",
        "/proc/self/fd/0",
        "/dev/stdin",  # a symlink to /proc/self/fd/0
        "/proc/self/root/etc",
        "/proc/self/cwd",
    ],
)
@pytest.mark.parametrize("type_", ["", "File", "Directory"])
def test_a_host_path_through_a_magic_link_is_refused(pods: Pods, path: str, type_: str) -> None:
    """A hostPath through /proc/<pid>/{exe,fd,root,cwd} names what the process resolving it
    holds: a container got the runtime's own binary, writable, from /proc/self/exe (type
    File). The node refuses it by name, whatever the type, and leaves nothing."""
    from runtime.pod.prepare import PrepareError

    app = sh("app", "echo ran", volumeMounts=[{"name": "h", "mountPath": "/h"}])
    host_path = {"path": path, **({"type": type_} if type_ else {})}
    raw = pods.manifest("magic", [app], volumes=[{"name": "h", "hostPath": host_path}])
    with pytest.raises(PrepareError) as info:
        pods.run(raw)
    assert f"volume h: hostPath {path} goes through a process's magic link" in str(info.value)
    assert api.list_pods(pods.opts) == []
    assert not mounts_under(pods.tmp)


def test_a_host_path_through_plain_symlinks_is_mounted(pods: Pods, tmp_path: Path) -> None:
    """Symlinks of the host are followed as before (/var/run -> /run and the like)."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "file").write_text("through links\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "rel").symlink_to("link")
    for type_ in ("", "Directory"):
        host_path = {"path": str(tmp_path / "rel"), **({"type": type_} if type_ else {})}
        app = sh("app", "cat /h/file", volumeMounts=[{"name": "h", "mountPath": "/h"}])
        raw = pods.manifest(
            "links", [app], volumes=[{"name": "h", "hostPath": host_path}], restartPolicy="Never"
        )
        uid = pods.run(raw)
        assert pods.wait(uid).container("app").reason == "Completed"
        assert api.logs(uid, pods.opts, "app") == ["through links"]
        api.remove(uid, pods.opts)


def test_a_container_s_deep_trees_do_not_stop_the_pod_s_removal(pods: Pods) -> None:
    """A container makes trees 1200 directories deep in an emptyDir and in its own rootfs
    (the overlay's upper dir): removing the pod recursed once per level in shutil.rmtree, a
    RecursionError even with ignore_errors, and left the pod's directory behind."""
    work = [{"name": "work", "mountPath": "/work"}]
    deep = "i=0; while [ $i -lt 1200 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done; : > f"
    raw = pods.manifest(
        "deep",
        [sh("app", f"(cd /work && {deep}) && (mkdir /deep && cd /deep && {deep})",
            volumeMounts=work)],
        restartPolicy="Never",
        volumes=[{"name": "work", "emptyDir": {}}],
    )  # fmt: skip
    uid = pods.run(raw)
    st = pods.wait(uid)
    assert st.phase == "Succeeded", st
    from runtime.pod.store import PodStore

    path = PodStore(pods.opts.root).get(uid).path
    api.remove(uid, pods.opts, force=True)
    assert not path.exists()
    assert not any(p.name.startswith(uid) for p in Path(pods.opts.root).rglob("*") if p.is_dir())
