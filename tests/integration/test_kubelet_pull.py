"""The kubelet has its pods' images pulled by imagePullPolicy: a real docker-registry (Debian's)
on 127.0.0.1 behind a counting proxy (``tests.registryserver``), a real ``corral server`` and
``corral agent --registries-conf`` (``tests.integration.test_kubelet``'s cluster, whose
finalizer checks that nothing is left) with an empty images directory, kubectl 1.32 as the
user. The registries.conf makes the proxy an insecure registry and the only unqualified-search
registry, so manifests name ``corral/<repo>:<tag>``; images are pushed straight to the
registry, so the proxy counts only the node's requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from images.pull import Options
from images.push import push
from images.regconf import RegistriesConf
from images.store import Store
from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar
from tests.integration.test_kubelet import IMAGE, Cluster, cluster_context, manifest, until
from tests.kubeserver import Kubectl
from tests.registryserver import FaultProxy, start_registry

pytestmark = pytest.mark.root


class Remote:
    """The registry as the node sees it (through the proxy), and a way to put images there."""

    def __init__(self, cluster: Cluster, proxy: FaultProxy, source: Store, tmp: Path) -> None:
        self.cluster = cluster
        self.proxy = proxy
        self.source = source  # holds IMAGE
        self.auth_file = str(tmp / "no-auth.json")
        self.store = Store(cluster.agent.data_dir / "store")  # the node's

    def push(self, repo_tag: str) -> str:
        o = Options(conf=RegistriesConf(), tls_verify=False, auth_file=self.auth_file)
        return push(self.source, IMAGE, f"127.0.0.1:{self.proxy.upstream}/{repo_tag}", o)

    def manifests(self, repo: str) -> list[str]:
        """The node's manifest requests for ``repo`` so far (method and path)."""
        return [f"{s.method} {s.path}" for s in self.proxy.seen if f"/{repo}/manifests/" in s.path]

    def node_image(self, repo_tag: str) -> str | None:
        """The manifest digest of the image the node stored as ``repo_tag`` (qualified)."""
        for img in self.store.images():
            if f"{self.proxy.host}/{repo_tag}" in img.names:
                return img.manifest_digest
        return None


@pytest.fixture(scope="module")
def remote(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    tmp = tmp_path_factory.mktemp("kubelet-pull")
    layer = tar_tree(rootfs)
    files, _ = docker_files([layer], config_for([layer], Cmd=["sh"]), repo_tags=[IMAGE])
    write_tar(tmp / "image.tar", files)
    source = Store(tmp / "source")
    source.import_path(str(tmp / "image.tar"))
    registry = start_registry(tmp / "registry")
    try:
        proxy = FaultProxy(registry.port).start()
        try:
            conf = tmp / "registries.conf"
            conf.write_text(
                f'unqualified-search-registries = ["{proxy.host}"]\n'
                f'[[registry]]\nlocation = "{proxy.host}"\ninsecure = true\n'
            )
            extra = ("--registries-conf", str(conf))
            with cluster_context(rootfs, tmp, agent_extra=extra, preload_image=False) as c:
                r = Remote(c, proxy, source, tmp)
                assert r.store.images() == []  # the node starts with no image at all
                yield r
        finally:
            proxy.stop()
    finally:
        registry.stop()


def pod(name: str, image: str, policy: str) -> dict[str, Any]:
    c = {
        "name": "app",
        "image": image,
        "imagePullPolicy": policy,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
    }
    return manifest(name, containers=[c])


def apply(k: Kubectl, *pods: dict[str, Any]) -> None:
    k.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                "items": list(pods)}))  # fmt: skip


def describe_shows(k: Kubectl, name: str, *texts: str) -> str:
    """``kubectl describe pod`` once it shows every one of ``texts`` (events come a little
    after the status)."""
    last = ""

    def shows() -> bool:
        nonlocal last
        last = k.run("describe", "pod", name).stdout
        return all(t in last for t in texts)

    try:
        until(f"{texts} in the description of pod {name}", shows)
    except AssertionError as e:
        raise AssertionError(f"{e}; it is:\n{last}") from None
    return last


def waiting(cluster: Cluster, name: str) -> dict[str, Any]:
    cs = (cluster.pod(name).get("status") or {}).get("containerStatuses") or [{}]
    return cs[0].get("state", {}).get("waiting") or {}


def test_if_not_present_pulls_once_then_uses_the_node_image(remote: Remote) -> None:
    c = remote.cluster
    k = c.kubectl()
    digest = remote.push("corral/pulled:1")
    apply(k, pod("pulled", "corral/pulled:1", "IfNotPresent"))
    c.wait_running("pulled")
    describe_shows(
        k,
        "pulled",
        'Pulling image "corral/pulled:1"',
        'Successfully pulled image "corral/pulled:1" in ',
    )
    assert "GET /v2/corral/pulled/manifests/1" in remote.manifests("corral/pulled")
    assert remote.node_image("corral/pulled:1") == digest  # stored under its qualified name
    asked = len(remote.manifests("corral/pulled"))

    apply(k, pod("pulled-again", "corral/pulled:1", "IfNotPresent"))
    c.wait_running("pulled-again")
    text = describe_shows(
        k, "pulled-again", 'Container image "corral/pulled:1" already present on machine'
    )
    assert "Pulling" not in text
    assert len(remote.manifests("corral/pulled")) == asked  # the registry was not asked
    k.run("delete", "pod", "pulled", "pulled-again", "--grace-period=1")


def test_always_asks_the_registry_again(remote: Remote) -> None:
    c = remote.cluster
    k = c.kubectl()
    remote.push("corral/always:1")
    apply(k, pod("always-1", "corral/always:1", "Always"))
    c.wait_running("always-1")
    asked = len(remote.manifests("corral/always"))
    assert asked
    remote.proxy.seen.clear()

    apply(k, pod("always-2", "corral/always:1", "Always"))
    c.wait_running("always-2")
    describe_shows(
        k,
        "always-2",
        'Pulling image "corral/always:1"',
        'Successfully pulled image "corral/always:1" in ',
    )
    assert remote.manifests("corral/always")  # the manifest again ...
    assert not [s for s in remote.proxy.seen if "/blobs/" in s.path]  # ... no blob it has
    k.run("delete", "pod", "always-1", "always-2", "--grace-period=1")


def test_a_missing_tag_fails_backs_off_then_runs_once_pushed(remote: Remote) -> None:
    c = remote.cluster
    k = c.kubectl()
    apply(k, pod("late", "corral/late:1", "IfNotPresent"))
    seen: dict[str, str] = {}

    def seen_both() -> bool:
        w = waiting(c, "late")
        if w.get("reason"):
            seen.setdefault(w["reason"], w.get("message", ""))
        return {"ErrImagePull", "ImagePullBackOff"} <= set(seen)

    until("ErrImagePull, then ImagePullBackOff", seen_both)
    message = seen["ErrImagePull"]
    assert message.startswith('Failed to pull image "corral/late:1": '), message
    assert "manifest unknown" in message, message  # the registry's words
    assert seen["ImagePullBackOff"] == 'Back-off pulling image "corral/late:1"'
    assert c.pod("late")["status"]["phase"] == "Pending"
    assert not [p for p in c.runtime_pods() if p.name == "late"]  # nothing made on the node
    describe_shows(k, "late", "Failed", message, "BackOff")
    assert remote.manifests("corral/late")

    remote.push("corral/late:1")  # the next try, after the back-off, finds it
    c.wait_running("late")
    describe_shows(k, "late", 'Successfully pulled image "corral/late:1" in ')
    k.run("delete", "pod", "late", "--grace-period=1")


def test_never_runs_only_an_image_the_node_has(remote: Remote) -> None:
    c = remote.cluster
    k = c.kubectl()
    remote.push("corral/never:1")  # the registry has it: the policy alone keeps it away
    apply(k, pod("never", "corral/never:1", "Never"))
    until("ErrImageNeverPull", lambda: waiting(c, "never").get("reason") == "ErrImageNeverPull")
    assert waiting(c, "never")["message"] == (
        'Container image "corral/never:1" is not present with pull policy of Never'
    )
    assert remote.manifests("corral/never") == []
    assert not [p for p in c.runtime_pods() if p.name == "never"]
    describe_shows(k, "never", "ErrImageNeverPull")

    # once the node has it (an IfNotPresent pod pulled it), Never runs it
    apply(k, pod("never-puller", "corral/never:1", "IfNotPresent"))
    c.wait_running("never-puller")
    asked = len(remote.manifests("corral/never"))
    apply(k, pod("never-2", "corral/never:1", "Never"))
    c.wait_running("never-2")
    describe_shows(k, "never-2", 'Container image "corral/never:1" already present on machine')
    assert len(remote.manifests("corral/never")) == asked
    k.run("delete", "pod", "never", "never-puller", "never-2", "--grace-period=1")
