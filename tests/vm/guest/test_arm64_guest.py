"""Corral on Linux arm64: run inside the arm64 VM (tests/vm/test_arm64.py boots it, after the
guest's gcc built the cffi core, the monitor and corral-exec from this checkout).

Each test checks what is architecture-specific on the real thing: the C core's clone and
cgroup v2 limits on an arm64 kernel, a seccomp filter built for arm64's syscall numbers (a
blocked call answers with the configured errno), a pod from an arm64 image with its network,
image import choosing linux/arm64/v8 from an index and refusing amd64, and what
``corral-oci features`` reports. Elsewhere (not aarch64, not root, no unified
cgroup2) they skip.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.cgroups import Layout, detect_layout
from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar
from tests.conftest import Runtime
from tests.integration.test_pods import (  # noqa: F401  (pods is a fixture)
    IMAGE,
    Pods,
    pods,
    sh,
    until,
)

MiB = 1 << 20


def _why_not() -> str | None:
    if platform.machine() != "aarch64":
        return f"runs on arm64 only (tests/vm/test_arm64.py boots it); this is {platform.machine()}"
    if os.geteuid() != 0:
        return "needs root"
    if detect_layout("/sys/fs/cgroup") is not Layout.UNIFIED:
        return "needs a unified cgroup v2 host (the arm64 VM is one)"
    return None


pytestmark = [pytest.mark.root, pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]


def test_features_report_the_arm64_architectures(runtime: Runtime) -> None:
    res = runtime.cli("features")
    assert res.rc == 0, res.err
    seccomp = json.loads(res.out)["linux"]["seccomp"]
    assert {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"} <= set(seccomp["archs"])
    from runtime.seccomp import native_arch

    assert native_arch() == "SCMP_ARCH_AARCH64"  # what libseccomp builds filters for here


def test_run_an_arm64_busybox_with_memory_and_pids_limits(runtime: Runtime) -> None:
    script = (
        "uname -m; cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; "
        "corral-test forkbomb 100; corral-test alloc 128 || echo alloc-failed $?"
    )
    res = runtime.run(
        "sh",
        "-c",
        script,
        resources={"memory": {"limit": 64 * MiB, "swap": 64 * MiB}, "pids": {"limit": 20}},
    )
    lines = res.out.splitlines()
    assert lines[:3] == ["aarch64", str(64 * MiB), "20"], (res.out, res.err)
    forked = int(next(ln for ln in lines if ln.startswith("forked ")).split()[1])
    assert forked < 20 and "fail EAGAIN" in lines  # pids.max stopped the fork bomb
    assert any(ln.startswith("alloc-failed") for ln in lines), res.out  # the OOM killer
    assert "done" not in lines


def test_seccomp_argument_filter_with_arm64_syscall_numbers(runtime: Runtime) -> None:
    # arm64 has no chmod(2): busybox's chmod and the probe both call fchmodat (53 here, 268 on
    # x86_64), mode in argument 2. Only mode 0644 is refused, with ENOMSG; a filter built for
    # the wrong architecture would refuse nothing (or kill the container).
    cid, bundle = runtime.prepare(
        "sh",
        "-c",
        "touch /tmp/f; chmod 600 /tmp/f && echo chmod-600-ok; "
        "chmod 644 /tmp/f || echo chmod-644-refused; "
        "corral-test seccomp-probe fchmodat; corral-test seccomp-probe mkdirat",
    )
    spec = json.loads((bundle / "config.json").read_text())
    spec["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": [
            {
                "names": ["fchmodat", "chmod"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.ENOMSG,
                "args": [{"index": 2, "value": 0o644, "op": "SCMP_CMP_EQ"}],
            }
        ],
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    res = runtime.cli("run", "--bundle", str(bundle), cid)
    assert res.rc == 0, res.err
    assert res.out.splitlines() == [
        "chmod-600-ok",
        "chmod-644-refused",
        "ENOMSG",  # the probe's fchmodat(AT_FDCWD, missing, 0644): refused, as configured
        "EEXIST",  # mkdirat is not filtered: the kernel's own answer
    ], res.out
    assert os.strerror(errno.ENOMSG) in res.err  # busybox chmod's message


def test_import_picks_arm64_v8_from_an_index_and_refuses_amd64(tmp_path: Path) -> None:
    from images import platforms
    from images.errors import ImageError
    from images.store import Store
    from testkit.imagebuild import Entry, oci_files, sha, tar_entries, write_dir

    assert platforms.host() == platforms.Platform("linux", "arm64", "v8")
    layer = tar_entries([Entry("hello", data=b"hi\n")])
    files: dict[str, bytes] = {}
    descs, ids = [], {}
    for arch, variant in (("amd64", ""), ("arm64", "v8")):
        config = {**config_for([layer]), "architecture": arch, "variant": variant}
        fs, built = oci_files([layer], config)
        files.update(fs)
        ids[arch] = built.config_digest
        desc = json.loads(fs["index.json"])["manifests"][0]
        desc["platform"] = {"os": "linux", "architecture": arch, "variant": variant}
        descs.append(desc)
    nested = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": descs}
    ).encode()  # fmt: skip
    files["blobs/sha256/" + sha(nested).split(":")[1]] = nested
    top = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(nested),
           "size": len(nested)}  # fmt: skip
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [top]}).encode()
    store = Store(tmp_path / "store")
    (img,) = store.import_path(write_dir(tmp_path / "layout", files), name="multi:1")
    assert img.id == ids["arm64"]

    amd64 = {**config_for([layer]), "architecture": "amd64"}
    amd64.pop("variant")
    fs, _ = oci_files([layer], amd64, ref_name="x86:1")
    with pytest.raises(ImageError, match="image is for linux/amd64, this host runs linux/arm64/v8"):
        store.import_path(write_dir(tmp_path / "x86", fs))
    assert [i.names for i in store.images()] == [("multi:1",)]


@pytest.fixture(scope="session")
def image_tar(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox + corral-test rootfs (arm64 binaries) as an image for linux/arm64/v8."""
    layer = tar_tree(rootfs)
    config = config_for([layer], Cmd=["sh"])
    config.update(architecture="arm64", variant="v8")
    files, _ = docker_files([layer], config, repo_tags=[IMAGE])
    return write_tar(tmp_path_factory.mktemp("image") / "arm64.tar", files)


def _connect(ns: str, ip: str, port: int) -> bytes:
    from runtime.network import in_netns

    def go() -> bytes:
        with socket.create_connection((ip, port), timeout=10) as s:
            return s.recv(100)

    return in_netns(ns, go)


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except OSError:
        return None


def test_a_pod_from_an_arm64_image_with_its_network(pods: Pods) -> None:  # noqa: F811
    from images.store import Store

    store = Store(pods.opts.image_root)
    cfg = store.config(store.get(IMAGE))
    assert (cfg["architecture"], cfg.get("variant")) == ("arm64", "v8")
    node = pods.with_network()
    server = sh("srv", "uname -m; while true; do echo pong | nc -l -p 8080; done")
    a = pods.run(pods.manifest("a", [server]))
    ip_a = pods.status(a).pod_ip
    assert ip_a is not None
    pods.running_pid(a, "srv")  # fails saying why (the status, the monitor's log)
    reply = until("a reply from pod a", lambda: _try(lambda: _connect(node.path, ip_a, 8080)))
    assert reply == b"pong\n"
    client = sh("cli", f"until nc {ip_a} 8080 </dev/null; do sleep 0.2; done")
    b = pods.run(pods.manifest("b", [client], restartPolicy="Never"))
    st = pods.wait(b)
    assert st.phase == "Succeeded"
    from runtime.pod import api

    assert api.logs(b, pods.opts, "cli") == ["pong"]
    assert api.logs(a, pods.opts, "srv")[0] == "aarch64"
    api.stop(a, pods.opts, grace=0)
