"""A pod container's image by imagePullPolicy (``runtime.pod.imagepull``), without a registry:
what is taken from the store, which errors the kubelet's waiting reasons come from, and the
pull back-off (10 s doubling to 300 s) on a clock the test turns. The pulls themselves, from a
real registry, are in tests/integration/test_pod_pull.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from images.regconf import load_registries_conf
from images.store import Store
from runtime.pod.imagepull import (
    ErrImageNeverPull,
    ErrImagePull,
    ImagePullBackOff,
    InvalidImageName,
    PullBackoff,
    ensure_image,
    find_local,
)
from runtime.pod.manifest import Container, PullPolicy, parse_pod
from runtime.pod.prepare import PodOptions
from runtime.pod.status import waiting_status
from testkit.imagebuild import Entry, docker_files, tar_entries, write_tar

UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: a pull fails at once


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_from_10s_to_300s_and_expires() -> None:
    clock = Clock()
    b = PullBackoff(clock=clock)
    assert b.remaining("k") == 0
    delays = []
    for _ in range(7):
        delays.append(b.failed("k"))
        assert b.remaining("k") == delays[-1]
        clock.now += 5
        assert b.remaining("k") == delays[-1] - 5
        clock.now += delays[-1]  # the back-off has passed: the next pull fails again
        assert b.remaining("k") == 0
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    assert b.remaining("other") == 0  # keys are separate
    clock.now += 2 * 300 + 1  # quiet for twice the maximum: starts again from 10 s
    assert b.failed("k") == 10
    b.succeeded("k")
    assert b.remaining("k") == 0 and b.failed("k") == 10
    with pytest.raises(ValueError, match="0 < initial <= maximum"):
        PullBackoff(10, 5)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "images")
    layer = tar_entries([Entry("hello", data=b"hi\n")])
    names = ["local-only:latest", f"{UNREACHABLE}/app:1", "127.0.0.2:5000/team/tool:2"]
    files, _ = docker_files([layer], repo_tags=names)
    s.import_path(write_tar(tmp_path / "image.tar", files))
    return s


def options(tmp_path: Path, conf: str = "") -> PodOptions:
    path = tmp_path / "registries.conf"
    path.write_text(conf)
    return PodOptions(
        root=str(tmp_path / "pods"),
        registries_conf=str(path),
        auth_file=str(tmp_path / "auth.json"),
        tls_verify=False,
    )


def ctr(image: str, policy: PullPolicy) -> Container:
    return Container(name="app", image=image, image_pull_policy=policy)


def test_never_takes_the_store_or_says_it_is_not_present(store: Store, tmp_path: Path) -> None:
    o = options(tmp_path)
    img = ensure_image(store, "uid1", ctr(f"{UNREACHABLE}/app:1", PullPolicy.NEVER), o)
    assert img.id == store.get(f"{UNREACHABLE}/app:1").id
    with pytest.raises(ErrImageNeverPull) as e:
        ensure_image(store, "uid1", ctr(f"{UNREACHABLE}/app:2", PullPolicy.NEVER), o)
    assert e.value.reason == "ErrImageNeverPull"
    assert e.value.message == (
        f'Container image "{UNREACHABLE}/app:2" is not present with pull policy of Never'
    )
    assert (e.value.pod, e.value.container) == ("uid1", "app")


def test_if_not_present_uses_the_store_and_pulls_what_is_missing(
    store: Store, tmp_path: Path
) -> None:
    o = options(tmp_path)
    b = PullBackoff()
    img = ensure_image(store, "u", ctr(f"{UNREACHABLE}/app:1", PullPolicy.IF_NOT_PRESENT), o, b)
    assert img.id == store.get(f"{UNREACHABLE}/app:1").id
    assert len(b) == 0  # nothing was pulled, nothing failed
    with pytest.raises(ErrImagePull, match="connection failed") as e:
        ensure_image(store, "u", ctr(f"{UNREACHABLE}/app:9", PullPolicy.IF_NOT_PRESENT), o, b)
    assert e.value.message.startswith(f'Failed to pull image "{UNREACHABLE}/app:9": ')


def test_a_short_name_is_found_under_the_name_registries_conf_gives_it(
    store: Store, tmp_path: Path
) -> None:
    o = options(tmp_path, 'unqualified-search-registries = ["127.0.0.2:5000"]\n')
    img = ensure_image(store, "u", ctr("team/tool:2", PullPolicy.IF_NOT_PRESENT), o)
    assert img.id == store.get("127.0.0.2:5000/team/tool:2").id
    conf = load_registries_conf(o.registries_conf)
    assert find_local(store, "team/tool:2", conf) == img
    assert find_local(store, "team/tool:3", conf) is None


def test_always_pulls_but_a_name_no_registry_serves_is_local(store: Store, tmp_path: Path) -> None:
    o = options(tmp_path)  # no unqualified-search registries
    b = PullBackoff()
    img = ensure_image(store, "u", ctr("local-only", PullPolicy.ALWAYS), o, b)
    assert img.id == store.get("local-only:latest").id
    with pytest.raises(ErrImagePull, match="no unqualified-search-registries"):
        ensure_image(store, "u", ctr("not-here", PullPolicy.ALWAYS), o, b)
    # present, but its name has a registry: Always asks it, and that fails
    with pytest.raises(ErrImagePull, match="connection failed"):
        ensure_image(store, "u", ctr(f"{UNREACHABLE}/app:1", PullPolicy.ALWAYS), o, b)


def test_a_failed_pull_backs_off_then_is_tried_again(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    b = PullBackoff(clock=clock)
    o = options(tmp_path)
    c = ctr(f"{UNREACHABLE}/app:9", PullPolicy.IF_NOT_PRESENT)
    with pytest.raises(ErrImagePull):
        ensure_image(store, "u1", c, o, b)
    with pytest.raises(ImagePullBackOff) as e:
        ensure_image(store, "u1", c, o, b)
    assert e.value.reason == "ImagePullBackOff"
    assert e.value.message == f'Back-off pulling image "{UNREACHABLE}/app:9"'
    assert e.value.remaining == 10
    with pytest.raises(ErrImagePull):  # another pod's pull is not held off
        ensure_image(store, "u2", c, o, b)
    clock.now += 10
    with pytest.raises(ErrImagePull):  # the back-off passed: pulled (and failed) again
        ensure_image(store, "u1", c, o, b)
    assert b.delay(f"u1_{UNREACHABLE}/app:9") == 20
    clock.now += 19
    with pytest.raises(ImagePullBackOff):
        ensure_image(store, "u1", c, o, b)


def test_bad_names_and_a_bad_registries_conf(store: Store, tmp_path: Path) -> None:
    o = options(tmp_path)
    with pytest.raises(InvalidImageName, match="Failed to apply default image tag"):
        ensure_image(store, "u", ctr("UPPER/Case:1", PullPolicy.IF_NOT_PRESENT), o)
    bad = options(tmp_path, "unqualified-search-registries = 5\n")
    with pytest.raises(ErrImagePull, match="unqualified-search-registries: must be a list"):
        ensure_image(store, "u", ctr(f"{UNREACHABLE}/app:9", PullPolicy.IF_NOT_PRESENT), bad)
    # the store still answers when the file cannot be read
    img = ensure_image(store, "u", ctr(f"{UNREACHABLE}/app:1", PullPolicy.NEVER), bad)
    assert img.id == store.get(f"{UNREACHABLE}/app:1").id


def test_waiting_status_names_the_reason_of_the_container_that_failed(
    store: Store, tmp_path: Path
) -> None:
    pod = parse_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "initContainers": [{"name": "init", "image": "local-only"}],
                "containers": [
                    {"name": "app", "image": f"{UNREACHABLE}/app:9"},
                    {"name": "side", "image": "local-only"},
                ],
            },
        }
    )
    with pytest.raises(ErrImagePull) as e:
        ensure_image(store, "uid9", pod.spec.containers[0], options(tmp_path))
    st = waiting_status(pod, "uid9", e.value).to_json()
    assert st["metadata"] == {"name": "p", "namespace": "ns", "uid": "uid9"}
    assert st["status"]["phase"] == "Pending"
    app, side = st["status"]["containerStatuses"]
    assert app["state"]["waiting"]["reason"] == "ErrImagePull"
    assert app["state"]["waiting"]["message"] == e.value.message
    assert side["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert st["status"]["initContainerStatuses"][0]["state"]["waiting"]["reason"] == (
        "ContainerCreating"
    )
