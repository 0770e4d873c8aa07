"""The kubelet pulls with its pods' ``imagePullSecrets``: a real docker-registry (Debian's) with
htpasswd basic auth on 127.0.0.1, a real ``corral server`` and ``corral agent
--registries-conf`` (``tests.integration.test_kubelet``'s cluster, whose finalizer checks that
nothing is left) with an empty images directory, and the secret made by
``kubectl create secret docker-registry``. The node has no credentials of its own: without the
secret the registry refuses the pull; with it the pod runs, and the credentials are never
written below the agent's data directory."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from images.pull import Options
from images.push import push
from images.regconf import Credentials, RegistriesConf
from images.store import Store
from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar
from testkit.registry import htpasswd_file, start_registry
from tests.integration.test_kubelet import IMAGE, Cluster, cluster_context, until
from tests.integration.test_kubelet_pull import apply, describe_shows, pod, waiting

pytestmark = pytest.mark.root

USER = "puller"


@dataclass
class Private:
    cluster: Cluster
    host: str  # the registry, 127.0.0.1:PORT
    password: str
    source: Store  # holds IMAGE
    auth_file: str  # an empty one: pushes use the credentials given

    def push(self, repo_tag: str) -> str:
        o = Options(
            conf=RegistriesConf(),
            tls_verify=False,
            auth_file=self.auth_file,
            credentials=Credentials(USER, self.password),
        )
        return push(self.source, IMAGE, f"{self.host}/{repo_tag}", o)

    def secrets_on_disk(self) -> list[str]:
        """The files below the agent's data directory that hold the password, or the
        base64 of user:password (as a docker config's ``auth`` has it)."""
        needles = [
            self.password.encode(),
            base64.b64encode(f"{USER}:{self.password}".encode()),
        ]
        found = []
        for p in self.cluster.agent.data_dir.rglob("*"):
            if p.is_file() and not p.is_symlink():
                try:
                    data = p.read_bytes()
                except OSError:
                    continue
                if any(n in data for n in needles):
                    found.append(str(p))
        return found


@pytest.fixture(scope="module")
def private(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    tmp = tmp_path_factory.mktemp("kubelet-pullsecrets")
    layer = tar_tree(rootfs)
    files, _ = docker_files([layer], config_for([layer], Cmd=["sh"]), repo_tags=[IMAGE])
    write_tar(tmp / "image.tar", files)
    source = Store(tmp / "source")
    source.import_path(str(tmp / "image.tar"))
    password = f"pw-{uuid.uuid4().hex}"
    users = htpasswd_file(tmp / "htpasswd", {USER: password})
    registry = start_registry(
        tmp / "registry", auth={"htpasswd": {"realm": "corral-test", "path": str(users)}}
    )
    try:
        conf = tmp / "registries.conf"
        conf.write_text(
            f'unqualified-search-registries = ["{registry.host}"]\n'
            f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
        )
        extra = ("--registries-conf", str(conf))
        with cluster_context(rootfs, tmp, agent_extra=extra, preload_image=False) as c:
            yield Private(c, registry.host, password, source, str(tmp / "no-auth.json"))
    finally:
        registry.stop()


def with_secrets(name: str, image: str, *secrets: str) -> dict[str, object]:
    p = pod(name, image, "IfNotPresent")
    if secrets:
        p["spec"]["imagePullSecrets"] = [{"name": s} for s in secrets]
    return p


def test_a_pod_without_the_secret_is_refused_by_the_registry(private: Private) -> None:
    c = private.cluster
    k = c.kubectl()
    private.push("corral/locked:1")
    apply(k, with_secrets("locked", "corral/locked:1"))
    # One read for both: the next one may already be the back-off (ImagePullBackOff).
    state = until(
        "ErrImagePull", lambda: (w := waiting(c, "locked")).get("reason") == "ErrImagePull" and w
    )
    message = state["message"]
    assert message.startswith('Failed to pull image "corral/locked:1": '), message
    assert "UNAUTHORIZED: authentication required" in message, message  # the registry's words
    assert not [p for p in c.runtime_pods() if p.name == "locked"]
    k.run("delete", "pod", "locked", "--grace-period=1")


def test_a_missing_secret_is_named_and_the_pull_goes_on_without_it(private: Private) -> None:
    c = private.cluster
    k = c.kubectl()
    private.push("corral/missing:1")
    apply(k, with_secrets("missing", "corral/missing:1", "absent"))
    state = until(
        "ErrImagePull", lambda: (w := waiting(c, "missing")).get("reason") == "ErrImagePull" and w
    )
    assert "UNAUTHORIZED" in state["message"]
    describe_shows(
        k, "missing", "FailedToRetrieveImagePullSecret", "Unable to retrieve some image pull"
    )
    events = k.run(
        "get",
        "events",
        "--field-selector",
        "reason=FailedToRetrieveImagePullSecret,involvedObject.name=missing",
        "-o",
        "jsonpath={.items[*].message}",
    ).stdout
    assert events.startswith(
        'Unable to retrieve some image pull secrets (absent: secret "absent" not found);'
    ), events
    k.run("delete", "pod", "missing", "--grace-period=1")


def test_a_docker_registry_secret_pulls_and_stays_off_the_disk(private: Private) -> None:
    c = private.cluster
    k = c.kubectl()
    digest = private.push("corral/private:1")
    k.run(
        "create",
        "secret",
        "docker-registry",
        "regcred",
        f"--docker-server={private.host}",
        f"--docker-username={USER}",
        f"--docker-password={private.password}",
    )
    k.run(
        "create",
        "secret",
        "docker-registry",
        "wrongcred",
        f"--docker-server={private.host}",
        f"--docker-username={USER}",
        "--docker-password=not-the-password",
    )
    k.run("create", "secret", "generic", "opaque", "--from-literal=a=b")
    # a secret of another type is left out (and named); of the two docker-registry ones for
    # the registry, the refused one is tried first, then the other
    apply(k, with_secrets("private", "corral/private:1", "opaque", "wrongcred", "regcred"))
    c.wait_running("private")
    text = describe_shows(
        k,
        "private",
        'Successfully pulled image "corral/private:1" in ',
        "FailedToRetrieveImagePullSecret",
    )
    assert "opaque: type Opaque is not kubernetes.io/dockerconfigjson" in " ".join(text.split())
    stored = [
        img.manifest_digest
        for img in Store(c.agent.data_dir / "store").images()
        if f"{private.host}/corral/private:1" in img.names
    ]
    assert stored == [digest]
    assert private.secrets_on_disk() == []
    k.run("delete", "pod", "private", "--grace-period=1")
    k.run("delete", "secret", "regcred", "wrongcred", "opaque")


def test_the_service_accounts_pull_secrets_are_the_pods(private: Private) -> None:
    """``kubectl patch sa default`` with imagePullSecrets: a pod that names none gets them
    (the ServiceAccount admission) and pulls with them."""
    c = private.cluster
    k = c.kubectl()
    ns = "sa-pull"
    private.push("corral/by-sa:1")
    k.run("create", "namespace", ns)
    try:
        until(
            "the default ServiceAccount",
            lambda: k.run("get", "sa", "default", "-n", ns, check=False).returncode == 0,
        )
        k.run(
            "create",
            "secret",
            "docker-registry",
            "sacred",
            "-n",
            ns,
            f"--docker-server={private.host}",
            f"--docker-username={USER}",
            f"--docker-password={private.password}",
        )
        k.run("patch", "sa", "default", "-n", ns, "-p", '{"imagePullSecrets":[{"name":"sacred"}]}')
        k.run(
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            input=json.dumps(pod("by-sa", "corral/by-sa:1", "IfNotPresent")),
        )
        assert c.pod("by-sa", ns)["spec"]["imagePullSecrets"] == [{"name": "sacred"}]
        c.wait_running("by-sa", ns)
        assert private.secrets_on_disk() == []
    finally:
        k.run(
            "delete",
            "pod",
            "by-sa",
            "-n",
            ns,
            "--grace-period=1",
            "--ignore-not-found",
            check=False,
        )
        k.run("delete", "namespace", ns, "--wait=false", check=False)
