"""Pods get their images from a registry by imagePullPolicy: a real docker-registry (Debian's,
distribution 2.8) on 127.0.0.1 behind a counting proxy (``tests.registryserver``), real pods
(``tests.integration.test_pods``'s fixture, which checks nothing is left behind). The pod
options name a registries.conf that makes the proxy an insecure registry and its only
unqualified-search registry, so manifests may name ``corral/<repo>:<tag>``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from images.pull import Options
from images.push import push
from images.regconf import RegistriesConf
from images.store import Store
from runtime.pod import api
from runtime.pod.imagepull import ErrImageNeverPull, ErrImagePull, ImagePullBackOff
from runtime.pod.manifest import parse_pod
from runtime.pod.prepare import PodOptions
from tests.integration.test_pods import IMAGE, Pods, image_tar, pods, sh  # noqa: F401
from tests.registryserver import FaultProxy, Registry, start_registry

pytestmark = pytest.mark.root


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = start_registry(tmp_path / "registry")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    p = FaultProxy(registry.port).start()
    try:
        yield p
    finally:
        p.stop()


class Remote:
    """The registry as the pods see it, and a way to put images there."""

    def __init__(self, pods: Pods, proxy: FaultProxy) -> None:  # noqa: F811
        self.pods = pods
        self.proxy = proxy
        self.source = Store(pods.opts.image_root)  # holds IMAGE, from the fixture's tarball
        conf = pods.tmp / "registries.conf"
        conf.write_text(
            f'unqualified-search-registries = ["{proxy.host}"]\n'
            f'[[registry]]\nlocation = "{proxy.host}"\ninsecure = true\n'
        )
        self.conf = conf
        # the pods' store starts empty: every image they run comes from the registry
        pods.opts = PodOptions(
            **{
                **pods.opts.to_json(),
                "runtime": (),
                "image_root": str(pods.tmp / "node-images"),
                "registries_conf": str(conf),
                "auth_file": str(pods.tmp / "auth.json"),
            }
        )
        self.store = Store(pods.opts.image_root)

    def push(self, repo_tag: str) -> str:
        o = Options(conf=RegistriesConf(), tls_verify=False, auth_file=str(self.conf) + ".auth")
        # straight to the registry, not through the proxy that counts the pods' requests
        return push(self.source, IMAGE, f"127.0.0.1:{self.proxy.upstream}/{repo_tag}", o)

    def manifest(self, name: str, image: str, **container: Any) -> dict[str, Any]:
        c = sh("app", "echo pulled-and-ran", image=image, **container)
        return self.pods.manifest(name, [c], restartPolicy="Never")

    def requests(self, kind: str = "") -> list[str]:
        return [f"{s.method} {s.path}" for s in self.proxy.seen if kind in s.path]


@pytest.fixture
def remote(pods: Pods, proxy: FaultProxy) -> Remote:  # noqa: F811
    return Remote(pods, proxy)


def test_a_pod_pulls_its_image_then_reuses_it_by_policy(remote: Remote) -> None:
    node_pods = remote.pods
    digest = remote.push("corral/app:1")
    uid = node_pods.run(remote.manifest("first", "corral/app:1"))  # IfNotPresent (tagged)
    st = node_pods.wait(uid)
    assert st.phase == "Succeeded", st
    assert api.logs(uid, node_pods.opts) == ["pulled-and-ran"]
    stored = remote.store.get(f"{remote.proxy.host}/corral/app:1")
    assert stored.manifest_digest == digest
    assert api.image_id("corral/app:1", node_pods.opts) == stored.id  # found by its short name
    assert remote.requests("/blobs/sha256:")  # the layer came from the registry

    remote.proxy.seen.clear()
    st = node_pods.wait(node_pods.run(remote.manifest("again", "corral/app:1")))
    assert st.phase == "Succeeded", st
    assert remote.requests() == []  # IfNotPresent and present: the registry is not asked

    two = [sh(n, "true", image="corral/app:1", imagePullPolicy="Always") for n in ("a", "b")]
    st = node_pods.wait(node_pods.run(node_pods.manifest("always", two, restartPolicy="Never")))
    assert st.phase == "Succeeded", st
    # Always asks for the manifest again, once for the pod's two containers ...
    assert len(remote.requests("/manifests/1")) == 1
    assert remote.requests("/blobs/sha256:") == []  # ... and fetches no blob it has


def test_a_missing_image_is_err_image_pull_then_backs_off_then_is_pulled(remote: Remote) -> None:
    node_pods, clock = remote.pods, Clock()
    node = api.NodePods(node_pods.opts, api.PullBackoff(clock=clock))
    raw = remote.manifest("late", "corral/late:1")
    raw["metadata"]["uid"] = "late-pod-uid"
    pod = parse_pod(raw, base_dir=str(node_pods.tmp))

    with pytest.raises(ErrImagePull) as e:
        node.create(pod, raw)
    assert e.value.reason == "ErrImagePull"
    assert e.value.message.startswith('Failed to pull image "corral/late:1": ')
    assert "(404)" in e.value.message and "unknown" in e.value.message  # the registry's words
    assert api.list_pods(node_pods.opts) == []  # nothing of the pod was left on the host
    st = node.status("late")
    assert (st.uid, st.phase, st.location) == ("late-pod-uid", "Pending", "none")
    waiting = st.container("app")
    assert (waiting.state, waiting.reason, waiting.message) == (
        "Waiting",
        "ErrImagePull",
        e.value.message,
    )
    assert [p.uid for p in node.list()] == ["late-pod-uid"]

    remote.proxy.seen.clear()
    with pytest.raises(ImagePullBackOff) as b:
        node.create(pod, raw)
    assert remote.requests() == []  # held off: the registry was not asked
    assert b.value.remaining == 10
    assert node.status("late-pod-uid").container("app").reason == "ImagePullBackOff"
    assert node.status("late-pod-uid").container("app").message == (
        'Back-off pulling image "corral/late:1"'
    )

    clock.now += 10
    with pytest.raises(ErrImagePull):  # tried again, still missing: now 20 s
        node.create(pod, raw)
    assert remote.requests("/manifests/1")
    clock.now += 10
    with pytest.raises(ImagePullBackOff):
        node.create(pod, raw)

    remote.push("corral/late:1")
    clock.now += 10
    assert node.create(pod, raw) == "late-pod-uid"
    assert node.status("late").location == "prepared"  # the real pod, no more waiting
    node.start("late-pod-uid")
    st = node_pods.wait("late-pod-uid")
    assert st.phase == "Succeeded", st
    assert api.logs("late-pod-uid", node_pods.opts) == ["pulled-and-ran"]


def test_never_pull_a_forgotten_waiting_pod_and_one_without_a_uid(remote: Remote) -> None:
    node_pods = remote.pods
    remote.push("corral/app:1")
    node = api.NodePods(node_pods.opts)
    raw = remote.manifest("never", "corral/app:1", imagePullPolicy="Never")
    pod = parse_pod(raw, base_dir=str(node_pods.tmp))
    with pytest.raises(ErrImageNeverPull) as e:
        node.create(pod, raw)
    assert e.value.message == (
        'Container image "corral/app:1" is not present with pull policy of Never'
    )
    assert remote.requests() == []
    uid = node.status("never").uid
    assert node.status("default/never").container("app").reason == "ErrImageNeverPull"
    assert node.remove("never") == uid
    with pytest.raises(api.PodError, match="no such pod"):
        node.status("never")

    # a pod without a uid keeps the one its first attempt got: its back-off carries over
    raw = remote.manifest("nouid", "corral/nope:1")
    pod = parse_pod(raw, base_dir=str(node_pods.tmp))
    with pytest.raises(ErrImagePull):
        node.create(pod, raw)
    first = node.status("nouid").uid
    remote.proxy.seen.clear()
    with pytest.raises(ImagePullBackOff) as b:
        node.create(pod, raw)
    assert b.value.pod == first and remote.requests() == []
    assert [st.uid for st in node.list()] == [first]


def test_cli_pod_run_pulls_and_says_why_it_cannot(remote: Remote) -> None:
    node_pods = remote.pods
    remote.push("corral/app:1")
    good = node_pods.tmp / "good.yaml"
    good.write_text(yaml.safe_dump(remote.manifest("cli", "corral/app:1")))
    r = node_pods.cli("run", str(good))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["pulled-and-ran"]
    assert remote.store.get(f"{remote.proxy.host}/corral/app:1")

    bad = node_pods.tmp / "bad.yaml"
    bad.write_text(yaml.safe_dump(remote.manifest("nope", "corral/nope:1")))
    r = node_pods.cli("run", str(bad))
    assert r.returncode == 1
    assert r.stderr.startswith("corral: pod run nope: ")
    assert 'ErrImagePull: Failed to pull image "corral/nope:1": ' in r.stderr
    ls = node_pods.cli("ls", "--json")
    assert [p["metadata"]["name"] for p in yaml.safe_load(ls.stdout)] == ["cli"]
