"""Unit tests for the pod's bundles and monitor.conf (runtime/pod/bundle.py, monconf.py) and the
pod store's state machine (runtime/pod/store.py): no root, no kernel objects."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runtime import config as cfg
from runtime.pod.bundle import (
    DEFAULT_CAPABILITIES,
    BundleContext,
    container_config,
    container_env,
    expand,
)
from runtime.pod.errors import ManifestError
from runtime.pod.logs import LogFollower, parse_line, read_log
from runtime.pod.manifest import Pod, parse_pod
from runtime.pod.monconf import MonitorConf, containers_of, escape, render
from runtime.pod.prepare import PodOptions
from runtime.pod.record import PodRecord
from runtime.pod.store import AlreadyExists, NotFound, PodError, PodState, PodStore

GiB = 2**30
IMAGE = {"config": {"Entrypoint": ["/bin/ep"], "Cmd": ["cmd"], "Env": ["A=image", "B=image"]}}


def pod_of(spec: dict[str, Any], **meta: Any) -> Pod:
    return parse_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "ns1", **meta},
            "spec": spec,
        }
    )


ROOTFS: list[str] = []


@pytest.fixture(autouse=True)
def rootfs(tmp_path: Path) -> None:
    """A rootfs whose /etc/passwd the image user is resolved against."""
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nu:x:1000:1001::/home/u:/\n")
    ROOTFS[:] = [str(root)]


def ctx(**kw: Any) -> BundleContext:
    base: dict[str, Any] = {
        "uid": "abc123",
        "rootfs": ROOTFS[0],
        "image_config": IMAGE,
        "cgroup_parent": "/kubepods",
        "ns_pid": 4242,
        "memory_capacity": 8 * GiB,
        "pod_ip": "10.88.1.5",
        "etc_dir": "/pods/run/abc123/etc",
        "shm_dir": "/pods/run/abc123/shm",
    }
    base.update(kw)
    return BundleContext(**base)


def one(container: dict[str, Any], **spec: Any) -> tuple[Pod, dict[str, Any]]:
    pod = pod_of({"containers": [{"name": "c", "image": "busybox", **container}], **spec})
    conf = container_config(pod, pod.spec.containers[0], ctx())
    cfg.parse_spec(conf)  # the runtime accepts it
    return pod, conf


def test_image_process_and_manifest_overrides() -> None:
    _, conf = one({})
    assert conf["process"]["args"] == ["/bin/ep", "cmd"]
    _, conf = one({"args": ["x", "y"]})
    assert conf["process"]["args"] == ["/bin/ep", "x", "y"]
    _, conf = one({"command": ["/bin/sh", "-c"]})
    assert conf["process"]["args"] == ["/bin/sh", "-c"]  # command drops the image's Cmd
    _, conf = one({"command": ["/bin/sh"], "args": ["-c", "true"], "workingDir": "/w"})
    assert conf["process"]["args"] == ["/bin/sh", "-c", "true"]
    assert conf["process"]["cwd"] == "/w"
    assert conf["process"]["terminal"] is False


def test_env_field_refs_and_expansion() -> None:
    pod, conf = one(
        {
            "env": [
                {"name": "B", "value": "pod"},
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "URL", "value": "http://$(IP):80/$(NOPE)/$$(IP)"},
            ],
            "args": ["$(NAME)", "$(URL)"],
        }
    )
    env = conf["process"]["env"]
    assert "A=image" in env and "B=pod" in env and "B=image" not in env
    for want in ("NAME=web", "NS=ns1", "IP=10.88.1.5", "URL=http://10.88.1.5:80/$(NOPE)/$(IP)"):
        assert want in env
    assert "HOSTNAME=web" in env
    assert conf["process"]["args"] == ["/bin/ep", "web", "http://10.88.1.5:80/$(NOPE)/$(IP)"]
    assert container_env(pod, pod.spec.containers[0], ctx(pod_ip=None))[4] == "IP="


def test_expand() -> None:
    env = {"A": "1", "B": "x"}
    assert expand("$(A)-$(B)", env) == "1-x"
    assert expand("$$(A) $(C) $( $", env) == "$(A) $(C) $( $"


def test_namespaces_join_the_monitor() -> None:
    _, conf = one({})
    ns = {n["type"]: n.get("path") for n in conf["linux"]["namespaces"]}
    assert ns == {
        "mount": None,
        "cgroup": None,
        "pid": None,
        "ipc": "/proc/4242/ns/ipc",
        "network": "/proc/4242/ns/net",
        "uts": "/proc/4242/ns/uts",
    }
    assert conf["hostname"] == "web"
    pod = pod_of(
        {"containers": [{"name": "c", "image": "i"}], "shareProcessNamespace": True},
    )
    conf = container_config(pod, pod.spec.containers[0], ctx(pidns_pid=4243))
    ns = {n["type"]: n.get("path") for n in conf["linux"]["namespaces"]}
    assert ns["pid"] == "/proc/4243/ns/pid"
    pod = pod_of({"containers": [{"name": "c", "image": "i"}], "hostNetwork": True})
    conf = container_config(pod, pod.spec.containers[0], ctx())
    cfg.parse_spec(conf)
    kinds = {n["type"] for n in conf["linux"]["namespaces"]}
    assert "network" not in kinds and "uts" not in kinds and "hostname" not in conf


def test_cgroups_path_resources_and_oom_score_adj() -> None:
    r = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "2Gi"}}
    _, conf = one({"resources": r})
    linux = conf["linux"]
    assert linux["cgroupsPath"] == "/kubepods/burstable/podabc123/c"
    assert linux["resources"]["cpu"] == {"shares": 256, "quota": 50000, "period": 100000}
    assert linux["resources"]["memory"] == {"limit": 2 * GiB}
    assert conf["process"]["oomScoreAdj"] == 1000 - (1000 * GiB) // (8 * GiB)
    g = {"limits": {"cpu": "1", "memory": "1Gi"}}
    _, conf = one({"resources": g})
    assert conf["linux"]["cgroupsPath"] == "/kubepods/podabc123/c"
    assert conf["process"]["oomScoreAdj"] == -998
    _, conf = one({})
    assert conf["linux"]["cgroupsPath"] == "/kubepods/besteffort/podabc123/c"
    assert conf["process"]["oomScoreAdj"] == 1000
    pod = pod_of({"containers": [{"name": "c", "image": "i"}]})
    conf = container_config(pod, pod.spec.containers[0], ctx(cgroup_parent="test-xyz"))
    assert conf["linux"]["cgroupsPath"] == "test-xyz/besteffort/podabc123/c"


def test_security_context() -> None:
    _, conf = one({})
    caps = conf["process"]["capabilities"]
    assert set(caps["bounding"]) == set(DEFAULT_CAPABILITIES) == set(caps["effective"])
    assert conf["process"]["noNewPrivileges"] is False
    assert conf["root"]["readonly"] is False
    assert conf["process"]["user"] == {"uid": 0, "gid": 0}
    _, conf = one(
        {
            "securityContext": {
                "runAsUser": 1000,
                "runAsGroup": 2000,
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["KILL", "CHOWN"]},
            }
        }
    )
    caps = set(conf["process"]["capabilities"]["bounding"])
    assert "CAP_NET_ADMIN" in caps and "CAP_KILL" not in caps and "CAP_CHOWN" not in caps
    assert conf["process"]["user"]["uid"] == 1000 and conf["process"]["user"]["gid"] == 2000
    assert conf["process"]["noNewPrivileges"] is True
    assert conf["root"]["readonly"] is True
    _, conf = one({"securityContext": {"runAsUser": 1000}})
    assert conf["process"]["user"] == {"uid": 1000, "gid": 1001}  # gid from the image
    _, conf = one({"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}})
    assert conf["process"]["capabilities"]["bounding"] == ["CAP_CHOWN"]
    _, conf = one({"securityContext": {"privileged": True}})
    assert "CAP_SYS_ADMIN" in conf["process"]["capabilities"]["bounding"]
    assert conf["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "maskedPaths" not in conf["linux"]


def test_volume_and_etc_mounts() -> None:
    pod = pod_of(
        {
            "containers": [
                {
                    "name": "c",
                    "image": "i",
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data"},
                        {"name": "data", "mountPath": "/sub", "subPath": "a/b", "readOnly": True},
                        {"name": "conf", "mountPath": "/etc/app"},
                    ],
                }
            ],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "conf", "configMap": {"name": "cm", "optional": True}},
            ],
        }
    )
    vols = {"data": "/p/volumes/data", "conf": "/p/volumes/conf"}
    conf = container_config(pod, pod.spec.containers[0], ctx(volume_paths=vols, pod_dir="/p"))
    cfg.parse_spec(conf)
    by_dest = {m["destination"]: m for m in conf["mounts"]}
    assert by_dest["/data"]["source"] == "/p/volumes/data"
    assert "rw" in by_dest["/data"]["options"]
    # the subPath is mounted there at container start (runtime.pod.subpath), never joined
    assert by_dest["/sub"]["source"] == "/p/volume-subpaths/data/c/1"
    assert "ro" in by_dest["/sub"]["options"]
    assert "ro" in by_dest["/etc/app"]["options"]  # projected volumes are read-only
    assert by_dest["/etc/hosts"]["source"] == "/pods/run/abc123/etc/hosts"
    assert by_dest["/etc/resolv.conf"]["source"] == "/pods/run/abc123/etc/resolv.conf"
    assert by_dest["/dev/shm"]["source"] == "/pods/run/abc123/shm"
    assert [m["destination"] for m in conf["mounts"]].count("/dev/shm") == 1


# ----------------------------------------------------------------------------- monitor.conf


def test_monitor_conf() -> None:
    pod = pod_of(
        {
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 5,
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [
                {
                    "name": "web",
                    "image": "i",
                    "ports": [{"containerPort": 80, "name": "http"}],
                    "livenessProbe": {
                        "httpGet": {
                            "port": "http",
                            "path": "/healthz",
                            "httpHeaders": [{"name": "X-A", "value": "b"}],
                        },
                        "periodSeconds": 2,
                    },
                    "readinessProbe": {"tcpSocket": {"port": 80}},
                    "startupProbe": {"exec": {"command": ["cat", "/tmp/a\nb"]}},
                }
            ],
        }
    )
    bundles = {"init": "/p/containers/init", "web": "/p/containers/web"}
    conf = MonitorConf(
        runtime_arg=("/venv/bin/corral-oci",),
        runtime_root="/p/runtime",
        restart_policy=pod.spec.restart_policy.value,
        grace_s=pod.spec.termination_grace_period_seconds,
        finish_arg=("/venv/bin/python", "-m", "runtime.pod.finish", "/p"),
        https_probe_arg=("/venv/bin/python", "-m", "runtime.pod.probe", "https"),
        containers=tuple(
            containers_of(
                pod,
                bundles,
                {"web": "/cg/web/memory.oom_control"},
                lambda name: ("/venv/bin/python", "-m", "runtime.pod.reset", "/p", name),
            )
        ),
        probe_host="10.88.1.5",
    )
    text = render(conf)
    lines = text.splitlines()
    assert lines[:3] == [
        "runtime_arg /venv/bin/corral-oci",
        "runtime_root /p/runtime",
        "restart_policy OnFailure",
    ]
    assert "grace_s 5" in lines
    assert lines.count("finish_arg runtime.pod.finish") == 1
    assert lines.count("https_probe_arg runtime.pod.probe") == 1
    i = lines.index("container init")
    assert lines[i + 1 : i + 4] == ["kind init", "id init", "bundle /p/containers/init"]
    j = lines.index("container web")
    assert j > i and "oom_file /cg/web/memory.oom_control" in lines[j:]
    assert lines[i + 4 : i + 9] == [
        f"prestart_arg {a}" for a in ("/venv/bin/python", "-m", "runtime.pod.reset", "/p", "init")
    ]
    assert "prestart_arg web" in lines[j:]
    assert "probe startup" in lines and "probe_exec /tmp/a\\nb" in lines
    assert "probe_http http 10.88.1.5 80 /healthz" in lines
    assert "probe_http_header X-A: b" in lines
    assert "probe_tcp 10.88.1.5 80" in lines
    assert "probe_period_s 2" in lines and "probe_failure_threshold 3" in lines
    assert not any(line.startswith("net_gate") for line in lines)
    assert "net_gate true" in render(replace(conf, net_gate=True)).splitlines()
    assert escape("a\\b\tc\n") == "a\\\\b\\tc\\n"
    assert not {"stdin true", "stdin_once true", "attach true", "terminal true"} & set(lines)


def test_monitor_conf_stdin_tty_and_attach() -> None:
    """stdin, stdinOnce and tty reach monitor.conf; either of stdin and tty gets an attach
    socket; stdinOnce without stdin means nothing (as in Kubernetes)."""
    pod = pod_of(
        {
            "containers": [
                {"name": "in", "image": "i", "stdin": True, "stdinOnce": True},
                {"name": "tty", "image": "i", "tty": True},
                {"name": "once", "image": "i", "stdinOnce": True},
            ]
        }
    )
    c = pod.spec.containers
    assert (c[0].stdin, c[0].stdin_once, c[2].stdin, c[2].stdin_once) == (True, True, False, False)
    confs = {
        x.name: x for x in containers_of(pod, {n: f"/b/{n}" for n in ("in", "tty", "once")}, {})
    }
    assert (confs["in"].stdin, confs["in"].stdin_once, confs["in"].attach) == (True, True, True)
    assert (confs["tty"].stdin, confs["tty"].terminal, confs["tty"].attach) == (False, True, True)
    assert not (confs["once"].stdin or confs["once"].stdin_once or confs["once"].attach)
    conf = MonitorConf(("oci",), "/r", "Always", 1, containers=tuple(confs.values()))
    lines = render(conf).splitlines()
    i, j, k = (lines.index(f"container {n}") for n in ("in", "tty", "once"))
    assert lines[i:j][-3:] == ["stdin true", "stdin_once true", "attach true"]
    assert lines[j:k][-2:] == ["terminal true", "attach true"]
    assert lines[k:][-1] == "bundle /b/once"


# ----------------------------------------------------------------------------- store


def test_status_does_not_probe_a_starting_pod_s_lock(tmp_path: Path) -> None:
    """Between the rename to run/ and its monitor's flock, a pod's lock is free by design:
    status must not take it then (the monitor's LOCK_NB would fail) nor call the pod lost."""
    from runtime.pod import api

    store = PodStore(tmp_path / "pods")
    pd = store.create("b" * 32)
    pd.write_record(PodRecord(uid=pd.uid, name="p", namespace="default", created=1.0))
    pd.move(PodState.RUNNING)
    pd.unlock()
    opts = PodOptions(root=str(store.root))
    with store.gc_lock(exclusive=False):  # as start() holds it through that window
        st = api.status(pd.uid, opts)
        assert (st.phase, st.reason) == ("Pending", "")
    st = api.status(pd.uid, opts)  # no start: a free lock means the monitor is gone
    assert (st.phase, st.reason) == ("Unknown", "MonitorLost")


def test_store_state_machine(tmp_path: Path) -> None:
    store = PodStore(tmp_path / "pods")
    pd = store.create("a" * 32)
    assert pd.state is PodState.PREPARING and pd.fd is not None
    pd.write_record(PodRecord(uid=pd.uid, name="web", namespace="default", created=1.0))
    with pytest.raises(AlreadyExists):
        store.create("a" * 32)
    other = store.get("a" * 32)
    assert other.is_locked() and not other.try_lock()
    pd.move(PodState.PREPARED)
    assert (tmp_path / "pods/prepared" / ("a" * 32)).is_dir()
    assert pd.state.can_start and not pd.state.can_stop
    pd.unlock()
    assert not other.is_locked()
    assert other.try_lock()  # follows the directory, found again by refresh
    assert other.state is PodState.PREPARED
    other.move(PodState.RUNNING)
    other.unlock()
    assert store.find("web").uid == "a" * 32
    assert store.find("default/web").uid == "a" * 32
    assert store.find("aaaa").uid == "a" * 32
    with pytest.raises(NotFound):
        store.find("nope")
    b = store.create("a" * 31 + "b")
    b.write_record(PodRecord(uid=b.uid, name="web", namespace="default", created=2.0))
    b.move(PodState.EXITED)
    b.unlock()
    assert store.find("web").uid == "a" * 32  # the live one wins over a newer exited one
    with pytest.raises(PodError, match="ambiguous"):
        store.find("aaa")
    assert [p.state for p in store.list()] == [PodState.RUNNING, PodState.EXITED]
    b.remove()
    assert not (tmp_path / "pods/garbage" / b.uid).exists()
    with pytest.raises(PodError):
        store.create("../x")


def test_store_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    store = PodStore(tmp_path / "pods")
    pd = store.create("c" * 32)
    pid = os.fork()
    if pid == 0:  # the child sees the lock held
        os._exit(0 if store.get("c" * 32).is_locked() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    pd.unlock()


def test_options_round_trip() -> None:
    opts = PodOptions(root="/r", cgroup_parent="x", runtime=("a", "b"), network=False)
    assert PodOptions.from_json(opts.to_json()) == opts
    assert PodOptions().runtime_argv()[0]


# ----------------------------------------------------------------------------- logs


def test_cri_log_reading_and_following(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "c"
    logs.mkdir(parents=True)
    t = "2024-01-01T00:00:00.000000000Z"
    (logs / "0.log.1").write_text(f"{t} stdout F one\n{t} stdout P tw\n")
    (logs / "0.log").write_text(f"{t} stdout F o\n{t} stderr F err\n")
    assert parse_line(f"{t} stdout F a b") == (t, "stdout", False, "a b")
    assert [x.text for x in read_log(logs, 0)] == ["one", "two", "err"]
    f = LogFollower(tmp_path / "logs", ["c"])
    assert [x.text for x in f.poll()] == ["one", "two", "err"]
    with open(logs / "0.log", "a") as out:
        out.write(f"{t} stdout F three\n")
    assert [x.text for x in f.poll()] == ["three"]
    os.rename(logs / "0.log", logs / "0.log.2")  # rotation
    (logs / "0.log").write_text(f"{t} stdout F four\n")
    assert [x.text for x in f.poll()] == ["four"]
    (logs / "1.log").write_text(f"{t} stdout F restarted\n")
    assert [x.text for x in f.poll()] == ["restarted"]
    f.close()


def test_logs_keep_carriage_returns(tmp_path: Path) -> None:
    """A terminal writes \r\n, a progress bar a lone \r: both are text of one CRI line."""
    logs = tmp_path / "logs" / "c"
    logs.mkdir(parents=True)
    t = "2024-01-01T00:00:00.000000000Z"
    (logs / "0.log").write_bytes(f"{t} stdout F TTY\r\n{t} stdout F 50%\r60%\n".encode())
    assert [x.text for x in read_log(logs, 0)] == ["TTY\r", "50%\r60%"]
    f = LogFollower(tmp_path / "logs", ["c"])
    assert [x.text for x in f.poll()] == ["TTY\r", "50%\r60%"]
    f.close()


def test_store_names_one_live_pod_per_name(tmp_path: Path) -> None:
    store = PodStore(tmp_path / "pods")
    a = store.create("aaaa")
    store.claim_name("default", "web", "aaaa")
    store.claim_name("default", "web", "aaaa")  # again by its holder: fine
    store.create("bbbb")
    store.claim_name("other", "web", "bbbb")  # another namespace
    store.create("cccc")
    with pytest.raises(AlreadyExists, match="aaaa"):
        store.claim_name("default", "web", "cccc")
    a.move(PodState.EXITED)  # an exited holder no longer holds the name
    store.claim_name("default", "web", "cccc")
    store.release_name("default", "web", "aaaa")  # not the holder any more: no effect
    with pytest.raises(AlreadyExists, match="cccc"):
        store.claim_name("default", "web", "dddd")
    store.release_name("default", "web", "cccc")
    store.claim_name("default", "web", "dddd")
    store.claim_name("other", "db", "eeee")  # a holder with no pod directory is stale
    store.claim_name("other", "db", "ffff")


def test_host_pid_and_host_ipc_join_no_namespace_of_the_pod() -> None:
    """hostPID and hostIPC (``kubectl debug node/NAME``): no pid or ipc entry, so the
    container has the runtime's, the node's (the monitor runs the runtime there)."""
    pod = pod_of({"containers": [{"name": "c", "image": "i"}], "hostPID": True, "hostIPC": True})
    conf = container_config(pod, pod.spec.containers[0], ctx(pidns_pid=4243))
    cfg.parse_spec(conf)
    kinds = {n["type"] for n in conf["linux"]["namespaces"]}
    assert kinds == {"mount", "cgroup", "network", "uts"}


def test_ephemeral_containers_in_the_manifest_and_ephemeral_conf() -> None:
    """ephemeralContainers parse as containers (targetContainerName kept), apart from the
    pod's own; their ephemeral.conf sections say kind ephemeral and have no probes."""
    from runtime.pod.monconf import ContainerConf, render_containers

    pod = pod_of(
        {
            "containers": [{"name": "c", "image": "i"}],
            "ephemeralContainers": [
                {"name": "d", "image": "i", "targetContainerName": "c", "stdin": True, "tty": True}
            ],
        }
    )
    assert [c.name for c in pod.all_containers] == ["c"]
    (d,) = pod.spec.ephemeral_containers
    assert (d.target, d.stdin, d.tty) == ("c", True, True)
    assert pod.container("d") is d
    conf = container_config(pod, d, ctx(pidns_pid=777))
    ns = {n["type"]: n.get("path") for n in conf["linux"]["namespaces"]}
    assert ns["pid"] == "/proc/777/ns/pid" and ns["network"] == "/proc/4242/ns/net"
    text = render_containers(
        [ContainerConf("d", "ephemeral", "d", "/p/containers/d", terminal=True, attach=True)],
        "127.0.0.1",
    )
    assert text.splitlines() == [
        "container d",
        "kind ephemeral",
        "id d",
        "bundle /p/containers/d",
        "terminal true",
        "attach true",
    ]
    with pytest.raises(ManifestError, match="not supported by corral"):
        pod_of({"containers": [{"name": "c", "image": "i"}],
                "ephemeralContainers": [{"name": "d", "image": "i", "lifecycle": {}}]})  # fmt: skip
