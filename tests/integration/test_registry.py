"""Pull and push against a real registry (Debian's docker-registry, distribution 2.8) started on
127.0.0.1 by the fixtures here: plain HTTP, TLS with a test CA, htpasswd and the token flow,
and a fault proxy in front for the broken cases. Every registry, token server and proxy is
stopped by its fixture.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from images import platforms
from images.digest import hex_of, sha256_bytes
from images.errors import AuthError, DigestMismatch, ImageError, RegistryError
from images.pull import Options, login, pull
from images.push import push
from images.regconf import (
    Credentials,
    Endpoint,
    RegistriesConf,
    lookup_credentials,
    parse_registries_conf,
)
from images.registry import Client
from images.store import Store
from testkit.imagebuild import Entry, config_for, oci_files, tar_entries, tar_tree, write_dir
from tests.registryserver import (
    FaultProxy,
    Registry,
    TokenServer,
    blob_fault,
    held_blob,
    htpasswd_file,
    make_pki,
    manifest_fault,
    need,
    start_registry,
)

pytestmark = pytest.mark.root

BIG = 3 << 20  # a layer big enough to be cut in the middle


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


def opts(tmp_path: Path, **kw: object) -> Options:
    base = Options(
        conf=RegistriesConf(), tls_verify=False, auth_file=str(tmp_path / "auth.json"), timeout=10
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture
def source(tmp_path: Path, rootfs: Path) -> Store:
    """A store holding ``busybox:test``: the busybox rootfs layer and a big incompressible one."""
    big = tar_entries([Entry("big", "file", os.urandom(BIG))])
    files, _ = oci_files([tar_tree(rootfs), big], ref_name="busybox:test")
    s = Store(tmp_path / "source")
    s.import_path(write_dir(tmp_path / "layout", files))
    return s


def assert_nothing_stored(store: Store) -> None:
    """No image, no blob, no layer, no staging dir. The ingest directory may keep partial
    downloads (to resume) and whole blobs whose digest matched (not to fetch them again)."""
    assert store.images() == []
    assert list(store.blobs.iterdir()) == []
    assert list(store.layers.iterdir()) == []
    assert [p.name for p in store.tmp.iterdir() if p.name != "ingest"] == []
    ingest = store.tmp / "ingest"
    for p in ingest.iterdir() if ingest.is_dir() else ():
        if not p.name.endswith((".partial", ".lock")):
            assert sha256_bytes(p.read_bytes()) == "sha256:" + p.name


def digests(store: Store, ref: str) -> tuple[str, list[str], list[str]]:
    img = store.get(ref)
    return img.id, [lr.digest for lr in img.layers], [lr.diff_id for lr in img.layers]


def test_push_then_pull_back_same_digests_and_skopeo_agrees(
    source: Store, registry: Registry, tmp_path: Path
) -> None:
    o = opts(tmp_path, chunk_size=1 << 20)  # the big layer goes in PATCH chunks
    ref = f"{registry.host}/corral/busybox:1"
    pushed = push(source, "busybox:test", ref, o)
    assert pushed == source.get("busybox:test").manifest_digest

    dest = Store(tmp_path / "dest")
    res = pull(dest, ref, o)
    assert res.manifest_digest == pushed
    assert res.image.manifest_digest == pushed
    assert digests(dest, ref) == digests(source, "busybox:test")
    assert (dest.layer_dirs(res.image)[1] / "bin/busybox").is_file()
    assert list((dest.tmp / "ingest").glob("[0-9a-f]*[0-9a-f]")) == []  # ingest emptied

    need("skopeo", "skopeo")
    layout = tmp_path / "skopeo-oci"
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}"],
        check=True,
        capture_output=True,
    )
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == pushed

    # by digest, into another empty store
    other = Store(tmp_path / "other")
    by_digest = pull(other, f"{registry.host}/corral/busybox@{pushed}", o)
    assert by_digest.image.id == res.image.id
    assert by_digest.manifest_digest == pushed


def test_push_mounts_blobs_from_another_repository(
    source: Store, proxy: FaultProxy, tmp_path: Path
) -> None:
    o = opts(tmp_path)
    push(source, "busybox:test", f"{proxy.host}/a/bb:1", o)
    dest = Store(tmp_path / "dest")
    pull(dest, f"{proxy.host}/a/bb:1", o)
    proxy.seen.clear()
    push(dest, f"{proxy.host}/a/bb:1", f"{proxy.host}/b/bb:1", o)
    mounts = [s for s in proxy.seen if s.method == "POST" and "mount=" in s.path]
    assert len(mounts) == 3  # config and two layers
    assert [s for s in proxy.seen if s.method in ("PUT", "PATCH") and "/uploads/" in s.path] == []
    assert (
        pull(Store(tmp_path / "d2"), f"{proxy.host}/b/bb:1", o).image.id
        == source.get("busybox:test").id
    )


def _platform_image(store: Store, tmp_path: Path, arch: str, name: str) -> None:
    layer = tar_entries([Entry("arch", "file", arch.encode())])
    config = {**config_for([layer]), "architecture": arch}
    if arch != platforms.host().architecture:
        config.pop("variant", None)
    files, _ = oci_files([layer], config, ref_name=name)
    # an image for another architecture is imported only when asked for
    store.import_path(
        write_dir(tmp_path / f"layout-{arch}", files), platform=platforms.normalize("linux", arch)
    )


def test_index_with_two_platforms_picks_the_hosts(registry: Registry, tmp_path: Path) -> None:
    host_arch = platforms.host().architecture
    other_arch = "s390x" if host_arch != "s390x" else "amd64"
    o = opts(tmp_path)
    src = Store(tmp_path / "src")
    descs = []
    for arch in (other_arch, host_arch):
        _platform_image(src, tmp_path, arch, f"img:{arch}")
        digest = push(src, f"img:{arch}", f"{registry.host}/multi/img:{arch}", o)
        size = len(src.blob_path(src.get(f"img:{arch}").manifest_digest or "").read_bytes())
        descs.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": size,
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": descs,
        }
    ).encode()
    ep = Endpoint(registry.host, "multi/img", True)
    with Client(ep, o.settings(ep), "pull,push") as c:
        index_digest = c.put_manifest("both", index, "application/vnd.oci.image.index.v1+json")

    dest = Store(tmp_path / "dest")
    res = pull(dest, f"{registry.host}/multi/img:both", o)
    assert res.manifest_digest == index_digest
    assert res.image.id == src.get(f"img:{host_arch}").id
    assert dest.config(res.image)["architecture"] == host_arch

    with pytest.raises(ImageError, match=f"no image for linux/riscv64 in the index .*{host_arch}"):
        pull(Store(tmp_path / "d2"), f"{registry.host}/multi/img:both",
             replace(o, platform=("linux", "riscv64")))  # fmt: skip
    empty = Store(tmp_path / "d3")
    with pytest.raises(ImageError, match=f"image is for linux/{other_arch}, this host runs"):
        pull(empty, f"{registry.host}/multi/img:{other_arch}", o)
    assert_nothing_stored(empty)


def test_basic_auth_with_htpasswd_and_login(source: Store, tmp_path: Path) -> None:
    users = htpasswd_file(tmp_path / "htpasswd", {"alice": "s3cret"})
    auth = {"htpasswd": {"realm": "corral-test", "path": str(users)}}
    reg = start_registry(tmp_path / "registry", auth=auth)
    try:
        o = opts(tmp_path)
        ref = f"{reg.host}/private/bb:1"
        with pytest.raises(AuthError, match="authentication required"):
            push(source, "busybox:test", ref, o)
        with pytest.raises(AuthError, match=r"login \(401\)"):
            login(reg.host, "alice", "wrong", o)
        assert lookup_credentials(f"{reg.host}/private/bb", o.auth_file) is None

        path = login(reg.host, "alice", "s3cret", o)
        auths = json.loads(path.read_text())["auths"]
        assert list(auths) == [reg.host]
        assert path.stat().st_mode & 0o077 == 0
        assert push(source, "busybox:test", ref, o) == source.get("busybox:test").manifest_digest
        dest = Store(tmp_path / "dest")
        assert pull(dest, ref, o).image.id == source.get("busybox:test").id
    finally:
        reg.stop()


def test_token_flow(source: Store, tmp_path: Path) -> None:
    tokens = TokenServer(tmp_path / "token", {"bob": "hunter2"})
    try:
        reg = start_registry(tmp_path / "registry", auth=tokens.registry_auth())
        try:
            ref = f"{reg.host}/tok/bb:1"
            anonymous = opts(tmp_path)
            with pytest.raises(AuthError, match="bad or missing credentials"):
                push(source, "busybox:test", ref, anonymous)
            o = opts(tmp_path, credentials=Credentials("bob", "hunter2"))
            assert push(source, "busybox:test", ref, o)
            assert any("repository:tok/bb:pull,push" in s for _, sc in tokens.issued for s in sc)
            dest = Store(tmp_path / "dest")
            assert pull(dest, ref, o).image.id == source.get("busybox:test").id
            assert ("bob", ["repository:tok/bb:pull"]) in tokens.issued
        finally:
            reg.stop()
    finally:
        tokens.stop()


@contextmanager
def token_registry(
    source: Store, tmp_path: Path, expires_in: int = 600
) -> Iterator[tuple[TokenServer, FaultProxy]]:
    """busybox:test pushed as tok/bb:1 to a registry that wants tokens (living
    ``expires_in`` seconds) from a token server, and a proxy in front; all stopped after."""
    tokens = TokenServer(tmp_path / "token", {"bob": "hunter2"}, expires_in=expires_in)
    reg = proxy = None
    try:
        reg = start_registry(tmp_path / "registry", auth=tokens.registry_auth())
        o = opts(tmp_path, credentials=Credentials("bob", "hunter2"))
        push(source, "busybox:test", f"{reg.host}/tok/bb:1", o)
        proxy = FaultProxy(reg.port).start()
        tokens.issued.clear()
        yield tokens, proxy
    finally:
        if proxy is not None:
            proxy.stop()
        if reg is not None:
            reg.stop()
        tokens.stop()


def pull_tokens(tokens: TokenServer) -> int:
    return sum(1 for _, scopes in tokens.issued if scopes == ["repository:tok/bb:pull"])


def bearers(proxy: FaultProxy, kind: str = "/") -> list[str]:
    """The tokens requests through ``proxy`` carried, in order (requests for ``kind``)."""
    return [
        s.headers["Authorization"]
        for s in proxy.seen
        if "Authorization" in s.headers and kind in s.path
    ]


def test_a_token_about_to_expire_is_fetched_again_before_it_is_used(
    source: Store, tmp_path: Path
) -> None:
    o = opts(tmp_path, credentials=Credentials("bob", "hunter2"))
    with token_registry(source, tmp_path, expires_in=1) as (tokens, proxy):
        res = pull(Store(tmp_path / "dest"), f"{proxy.host}/tok/bb:1", o)
        assert res.image.id == source.get("busybox:test").id
        # each token lives 1 s, less than the margin: every request (manifest, config, two
        # layers) fetched a token of its own, and no request was refused for an expired one
        sent = bearers(proxy)
        assert len(sent) == 4 and len(set(sent)) == 4
        assert pull_tokens(tokens) == 4
        assert len([s for s in proxy.seen if "Authorization" not in s.headers]) == 1  # ping


def test_a_token_refused_mid_pull_is_fetched_again_and_the_pull_completes(
    source: Store, tmp_path: Path
) -> None:
    big = big_layer(source)
    o = opts(tmp_path, credentials=Credentials("bob", "hunter2"))
    with token_registry(source, tmp_path) as (tokens, proxy):
        proxy.faults.append(blob_fault("unauthorized", big))  # the registry answers 401 once
        res = pull(Store(tmp_path / "dest"), f"{proxy.host}/tok/bb:1", o)
        assert res.image.id == source.get("busybox:test").id
        assert proxy.faults == []
        first, again = bearers(proxy, big)  # the refused GET carried a token, its retry another
        assert first != again
        assert pull_tokens(tokens) == 2
        assert len(set(bearers(proxy))) == 2  # the other requests used the one token there was


def test_tls_with_a_ca_directory_per_registry(source: Store, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    reg = start_registry(tmp_path / "registry", pki=pki)
    try:
        ref = f"{reg.host}/tls/bb:1"
        strict = opts(tmp_path, tls_verify=True, certs_dir=str(tmp_path / "certs.d"))
        with pytest.raises(RegistryError, match="CERTIFICATE_VERIFY_FAILED"):
            push(source, "busybox:test", ref, strict)
        (tmp_path / "certs.d" / reg.host).mkdir(parents=True)
        (tmp_path / "certs.d" / reg.host / "ca.crt").write_bytes(pki.ca.read_bytes())
        digest = push(source, "busybox:test", ref, strict)
        dest = Store(tmp_path / "dest")
        assert pull(dest, ref, strict).manifest_digest == digest
        # --tls-verify=false: no CA needed
        assert pull(Store(tmp_path / "d2"), ref, opts(tmp_path)).manifest_digest == digest
    finally:
        reg.stop()


@pytest.fixture
def pushed(source: Store, registry: Registry, tmp_path: Path) -> str:
    """The manifest digest of busybox:test pushed to ``registry`` as corral/bb:1."""
    return push(source, "busybox:test", f"{registry.host}/corral/bb:1", opts(tmp_path))


def big_layer(source: Store) -> str:
    img = source.get("busybox:test")
    return max(img.layers, key=lambda lr: lr.size).digest


def test_interrupted_pull_resumes_with_range(
    source: Store, pushed: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    big = big_layer(source)
    proxy.faults.append(blob_fault("cut", big))
    dest = Store(tmp_path / "dest")
    res = pull(dest, f"{proxy.host}/corral/bb:1", opts(tmp_path, retries=1))
    assert res.image.id == source.get("busybox:test").id
    gets = [s for s in proxy.seen if s.method == "GET" and big in s.path]
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    assert gets[1].headers["Range"].startswith("bytes=")
    assert gets[1].headers["Range"] != "bytes=0-"


def test_interrupted_pull_is_resumed_by_the_next_pull(
    source: Store, pushed: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    big = big_layer(source)
    proxy.faults.append(blob_fault("cut", big))
    dest = Store(tmp_path / "dest")
    ref = f"{proxy.host}/corral/bb:1"
    with pytest.raises(RegistryError, match=f"GET blob corral/bb@{big}: connection"):
        pull(dest, ref, opts(tmp_path, retries=0))
    assert_nothing_stored(dest)
    partial = dest.tmp / "ingest" / f"{hex_of(big)}.partial"
    got = partial.stat().st_size
    assert 0 < got < BIG
    proxy.seen.clear()
    assert pull(dest, ref, opts(tmp_path)).image.id == source.get("busybox:test").id
    gets = [s for s in proxy.seen if s.method == "GET" and "/blobs/" in s.path]
    small = [lr.digest for lr in source.get("busybox:test").layers if lr.digest != big][0]
    assert [s.headers.get("Range") for s in gets if big in s.path] == [f"bytes={got}-"]
    assert [s for s in gets if small in s.path] == []  # the finished layer was not fetched again
    assert not partial.exists()


def test_resumed_pull_starts_again_when_the_registry_ignores_range(
    source: Store, pushed: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    big = big_layer(source)
    proxy.faults.append(blob_fault("cut", big))
    dest = Store(tmp_path / "dest")
    ref = f"{proxy.host}/corral/bb:1"
    with pytest.raises(RegistryError, match=f"GET blob corral/bb@{big}: connection"):
        pull(dest, ref, opts(tmp_path, retries=0))
    partial = dest.tmp / "ingest" / f"{hex_of(big)}.partial"
    got = partial.stat().st_size
    assert 0 < got < BIG
    proxy.seen.clear()
    proxy.faults.append(blob_fault("norange", big))  # the resume gets 200 and the whole blob
    res = pull(dest, ref, opts(tmp_path, retries=0))
    assert proxy.faults == []  # the Range request was answered with 200
    gets = [s for s in proxy.seen if s.method == "GET" and big in s.path]
    assert [s.headers.get("Range") for s in gets] == [f"bytes={got}-"]
    assert res.image.id == source.get("busybox:test").id
    assert digests(dest, ref) == digests(source, "busybox:test")
    assert sha256_bytes(dest.blob_path(big).read_bytes()) == big
    assert not partial.exists()


def _flock_waiters(path: Path) -> int:
    """How many flock requests wait on ``path`` (the ``->`` lines of /proc/locks)."""
    ino = path.stat().st_ino
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for ln in lines if "->" in ln and ln.split()[6].endswith(f":{ino}"))


def test_a_blob_another_pull_is_fetching_is_waited_for_not_fetched_again(
    source: Store, pushed: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    big = big_layer(source)
    dest = Store(tmp_path / "dest")
    ingest = dest.ingest_dir()
    lock = ingest / f"{hex_of(big)}.lock"
    got: dict[str, object] = {}

    def run() -> None:
        try:
            got["image"] = pull(dest, f"{proxy.host}/corral/bb:1", opts(tmp_path)).image.id
        except BaseException as e:  # reported by the assertions below
            got["error"] = e

    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    t = threading.Thread(target=run)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another pull is downloading the big layer
        t.start()
        while t.is_alive() and not _flock_waiters(lock):
            time.sleep(0.01)
        shutil.copyfile(source.blob_path(big), ingest / hex_of(big))  # ... and verified it
    finally:
        os.close(fd)
        if t.ident is not None:
            t.join()
    assert got.get("image") == source.get("busybox:test").id, got
    assert [s for s in proxy.seen if s.method == "GET" and big in s.path] == []


def blob_gets(proxy: FaultProxy) -> Counter[str]:
    """How many times each blob (by digest) was fetched through ``proxy``."""
    return Counter(
        s.path.rsplit("/", 1)[1] for s in proxy.seen if s.method == "GET" and "/blobs/" in s.path
    )


def manifest_gets(proxy: FaultProxy) -> int:
    return sum(1 for s in proxy.seen if s.method == "GET" and "/manifests/" in s.path)


def test_two_pulls_at_once_fetch_each_blob_once(
    source: Store, pushed: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    # The first GET of the big layer is held until both pulls have their manifest: the two
    # pulls overlap, one in the middle of the blob the other one needs.
    proxy.faults.append(held_blob(big_layer(source), lambda: manifest_gets(proxy) >= 2))
    dest = Store(tmp_path / "dest")
    got: dict[int, object] = {}

    def run(i: int) -> None:
        try:
            got[i] = pull(dest, f"{proxy.host}/corral/bb:1", opts(tmp_path)).image.id
        except BaseException as e:  # reported by the assertion below
            got[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    img = source.get("busybox:test")
    assert got == {0: img.id, 1: img.id}
    assert proxy.faults == []  # the big layer was held
    assert manifest_gets(proxy) == 2
    assert blob_gets(proxy) == {img.id: 1, **{lr.digest: 1 for lr in img.layers}}
    assert digests(dest, f"{proxy.host}/corral/bb:1") == digests(source, "busybox:test")


def test_pulls_in_two_processes_fetch_a_shared_layer_once(
    source: Store, pushed: str, proxy: FaultProxy, tmp_path: Path, rootfs: Path
) -> None:
    other = tar_entries([Entry("other", "file", os.urandom(BIG))])
    files, _ = oci_files([tar_tree(rootfs), other], ref_name="other:test")
    source.import_path(write_dir(tmp_path / "layout-other", files))
    push(source, "other:test", f"{proxy.host}/corral/other:1", opts(tmp_path))
    a, b = source.get("busybox:test"), source.get("other:test")
    shared = a.layers[0].digest
    assert b.layers[0].digest == shared and a.layers[1].digest != b.layers[1].digest
    proxy.seen.clear()
    proxy.faults.append(held_blob(shared, lambda: manifest_gets(proxy) >= 2))

    corral = str(Path(__file__).resolve().parents[2] / ".venv/bin/corral")
    (tmp_path / "registries.conf").write_text("")
    common = ["--tls-verify=false", "--authfile", str(tmp_path / "auth.json"),
              "--registries-conf", str(tmp_path / "registries.conf")]  # fmt: skip
    procs = [
        subprocess.Popen(
            [
                corral,
                "image",
                "--store",
                str(tmp_path / "dest"),
                "pull",
                f"{proxy.host}/corral/{repo}:1",
                *common,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for repo in ("bb", "other")
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o.split()[0] for o, _ in outs] == [a.id, b.id]
    assert proxy.faults == []
    gets = blob_gets(proxy)
    assert gets[shared] == 1  # both images have it: fetched once
    assert gets == {a.id: 1, b.id: 1, shared: 1, a.layers[1].digest: 1, b.layers[1].digest: 1}
    dest = Store(tmp_path / "dest")
    assert dest.get(f"{proxy.host}/corral/other:1").id == b.id


def test_tampered_blob_is_refused_and_nothing_stored(
    source: Store, pushed: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    big = big_layer(source)
    proxy.faults.append(blob_fault("tamper", big))
    dest = Store(tmp_path / "dest")
    with pytest.raises(DigestMismatch, match=f"{big}: expected {big}, got sha256:"):
        pull(dest, f"{proxy.host}/corral/bb:1", opts(tmp_path))
    assert_nothing_stored(dest)
    assert list((dest.tmp / "ingest").glob("*.partial")) == []


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (manifest_fault("digest"), "manifest digest is sha256:[0-9a-f]+, registry says"),
        (manifest_fault("huge"), "manifest is 52[0-9]+ bytes \\(at most 4194304\\)"),
        (blob_fault("redirect"), "redirect to another host refused: http://127.0.0.2:1"),
        (blob_fault("stall"), "no data for 1 s \\(stalled\\)"),
    ],
    ids=["manifest-digest", "huge-manifest", "redirect", "stall"],
)
def test_bad_registry_answers_are_clear_errors(
    pushed: str, proxy: FaultProxy, tmp_path: Path, fault: object, message: str
) -> None:
    proxy.faults.append(fault)  # type: ignore[arg-type]
    dest = Store(tmp_path / "dest")
    with pytest.raises(RegistryError, match=message):
        pull(dest, f"{proxy.host}/corral/bb:1", opts(tmp_path, timeout=1, retries=0))
    assert_nothing_stored(dest)


def test_by_digest_refuses_content_of_another_digest(
    pushed: str, registry: Registry, tmp_path: Path
) -> None:
    other = sha256_bytes(b"not this manifest")
    dest = Store(tmp_path / "dest")
    with pytest.raises(RegistryError, match=r"GET manifest corral/bb:sha256:.* \(404\)"):
        pull(dest, f"{registry.host}/corral/bb@{other}", opts(tmp_path))
    assert_nothing_stored(dest)


def test_cli_login_push_pull_logout(source: Store, tmp_path: Path) -> None:
    corral = str(Path(__file__).resolve().parents[2] / ".venv/bin/corral")
    users = htpasswd_file(tmp_path / "htpasswd", {"carol": "pw1"})
    reg = start_registry(
        tmp_path / "registry", auth={"htpasswd": {"realm": "corral", "path": str(users)}}
    )
    try:
        common = ["--tls-verify=false", "--authfile", str(tmp_path / "auth.json"),
                  "--registries-conf", str(tmp_path / "registries.conf")]  # fmt: skip
        (tmp_path / "registries.conf").write_text(
            f'unqualified-search-registries = ["{reg.host}"]\n'
        )

        def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
            return subprocess.run([corral, *args], input=stdin, capture_output=True, text=True)

        r = run("login", reg.host, "-u", "carol", *common, stdin="nope\n")
        assert r.returncode == 1 and r.stderr.startswith(f"corral: login {reg.host}: ")
        assert run("login", reg.host, "-u", "carol", *common, stdin="pw1\n").returncode == 0
        store = ["image", "--store", str(source.root)]
        r = run(*store, "push", "busybox:test", "corral/bb:2", *common)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == source.get("busybox:test").manifest_digest
        empty = ["image", "--store", str(tmp_path / "dest")]
        r = run(*empty, "pull", "corral/bb:2", *common)  # a short name, from registries.conf
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[1] == f"{reg.host}/corral/bb:2"
        assert run("logout", reg.host, *common).returncode == 0
        r = run(*empty, "pull", "corral/bb:2", *common)
        assert r.returncode == 1
        assert "authentication required" in r.stderr
    finally:
        reg.stop()


def test_short_name_from_a_mirror(source: Store, registry: Registry, tmp_path: Path) -> None:
    conf = parse_registries_conf(
        f"""
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "docker.io/library"
location = "127.0.0.1:1/library"
[[registry.mirror]]
location = "{registry.host}/mirror"
insecure = true
"""
    )
    o = opts(tmp_path, conf=conf, tls_verify=True)
    push(source, "busybox:test", f"{registry.host}/mirror/bb:1", opts(tmp_path))
    dest = Store(tmp_path / "dest")
    res = pull(dest, "bb:1", o)
    assert res.name == "docker.io/library/bb:1"
    assert res.endpoint == f"{registry.host}/mirror/bb"
    assert dest.get("docker.io/library/bb:1").id == source.get("busybox:test").id
    # not on the mirror: the location is tried too, and both failures are named
    with pytest.raises(ImageError, match=r"mirror/nothere:1 \(404\).*127.0.0.1:1: ping"):
        pull(dest, "nothere:1", o)
