"""pod.json as a typed record (``runtime.pod.record``): one reader, one atomic writer, records of
pods made before it are read, a corrupt one is named; and ``runtime.pod.api``'s ``PodRuntime``
surface, which ``NodePods`` implements."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import pytest

from runtime.pod import api, record
from runtime.pod.prepare import PodOptions
from runtime.pod.record import CgroupRecord, ContainerRecord, PodRecord
from runtime.pod.store import PodError, PodState, PodStore

UID = "0123456789abcdef0123456789abcdef"


def old_record(tmp_path: Path) -> dict[str, Any]:
    """A prepared pod's pod.json as corral wrote it before the typed record (main at
    1971c9d: a dict from api.create and prepare, ``json.dumps(indent=1, sort_keys=True)``;
    no ``version``, no ``pod_ip`` before start)."""
    opts = PodOptions(
        root=str(tmp_path / "pods"),
        image_root=str(tmp_path / "images"),
        cgroup_parent=f"corral-unit-{os.getpid()}-nothing-here",
        network=False,
    )
    cg = tmp_path / "cgroup" / f"pod{UID}"
    return {
        "base_dir": "/srv/pods",
        "cgroup": {"path": f"{opts.cgroup_parent}/pod{UID}", "paths": {"": str(cg)}},
        "containers": [
            {"image": "busybox:1", "image_id": "sha256:aa", "kind": "init", "name": "setup"},
            {"image": "busybox:1", "image_id": "sha256:aa", "kind": "app", "name": "web"},
        ],
        "created": 1717171717.25,
        "host_network": False,
        "images": ["sha256:aa"],
        "manifest": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "web", "image": "busybox:1"}]},
        },
        "name": "web",
        "namespace": "default",
        "options": opts.to_json(),
        "qos": "BestEffort",
        "share_pid": False,
        "uid": UID,
        "volumes": {"data": "volumes/data"},
    }


def old_pod(tmp_path: Path, rec: dict[str, Any] | None = None) -> tuple[PodStore, PodOptions]:
    """A prepared pod whose pod.json is ``rec`` (default: ``old_record``), written as the old
    code wrote it, with its name claimed."""
    rec = rec if rec is not None else old_record(tmp_path)
    opts = PodOptions.from_json(old_record(tmp_path)["options"])
    store = PodStore(opts.root)
    store.claim_name("default", "web", UID)
    pd = store.create(UID)
    (pd.path / "pod.json").write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    pd.move(PodState.PREPARED)
    pd.unlock()
    return store, opts


# ----------------------------------------------------------------------------- the format


def test_an_old_record_reads_into_typed_fields(tmp_path: Path) -> None:
    store, _ = old_pod(tmp_path)
    rec = store.get(UID).record()
    assert rec is not None
    assert (rec.uid, rec.name, rec.namespace, rec.created) == (UID, "web", "default", 1717171717.25)
    assert rec.version == record.VERSION and rec.pod_ip is None
    assert rec.containers == (
        ContainerRecord(name="setup", kind="init", image="busybox:1", image_id="sha256:aa"),
        ContainerRecord(name="web", kind="app", image="busybox:1", image_id="sha256:aa"),
    )
    assert rec.app_containers == ["web"] and rec.has_init
    assert isinstance(rec.cgroup, CgroupRecord) and rec.cgroup.paths == {
        "": str(tmp_path / "cgroup" / f"pod{UID}")
    }
    assert rec.pod_options() == PodOptions.from_json(old_record(tmp_path)["options"])
    assert rec.grace_period() == 30


def test_the_writer_keeps_the_old_format_and_adds_only_the_version(tmp_path: Path) -> None:
    store, _ = old_pod(tmp_path)
    pd = store.get(UID)
    before = json.loads((pd.path / "pod.json").read_text())
    rec = pd.record()
    assert rec is not None
    pd.write_record(rec.replace(pod_ip="10.1.2.3"))
    text = (pd.path / "pod.json").read_text()
    after = json.loads(text)
    assert after == {**before, "pod_ip": "10.1.2.3", "version": 1}
    assert text == json.dumps(after, indent=1, sort_keys=True) + "\n"
    assert sorted(os.listdir(pd.path)) == ["pod.json"]  # no temporary file left
    assert (pd.path / "pod.json").stat().st_mode & 0o777 == 0o644
    assert pd.record() == rec.replace(pod_ip="10.1.2.3")


def test_a_failed_write_leaves_the_record_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = old_pod(tmp_path)
    pd = store.get(UID)
    before = (pd.path / "pod.json").read_bytes()
    rec = pd.record()
    assert rec is not None

    def no_rename(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", no_rename)  # whichever the atomic write uses
    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="No space left"):
        pd.write_record(rec.replace(pod_ip="10.1.2.3"))
    monkeypatch.undo()
    assert (pd.path / "pod.json").read_bytes() == before
    assert sorted(os.listdir(pd.path)) == ["pod.json"]


def test_a_blank_directory_has_no_record(tmp_path: Path) -> None:
    pd = PodStore(tmp_path / "pods").create(UID)
    assert pd.record() is None
    assert pd.record_or_blank() == PodRecord.blank(UID) and pd.name == ""


def test_the_record_is_frozen() -> None:
    rec = PodRecord.blank(UID)
    with pytest.raises(AttributeError):
        rec.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda r: "{not json", "invalid JSON"),
        (
            lambda r: {**r, "containers": [{**r["containers"][0], "kind": "sidecar"}]},
            r"\$\.containers\[0\]\.kind",
        ),
        (
            lambda r: {**r, "created": "yesterday"},
            r"Expected `float`, got `str` - at `\$\.created`",
        ),
        (lambda r: {k: v for k, v in r.items() if k != "name"}, "missing required field `name`"),
        (lambda r: {**r, "colour": "blue"}, "unknown field `colour`"),
        (lambda r: {**r, "version": 2}, r"record version 2 is newer than this corral reads \(1\)"),
        (lambda r: {**r, "uid": "f" * 32}, f"holds the record of pod '{'f' * 32}', not '{UID}'"),
        (lambda r: [r], r"Expected `object`, got `array`"),
    ],
    ids=["json", "kind", "type", "missing", "unknown", "version", "uid", "array"],
)
def test_a_corrupt_record_is_named(tmp_path: Path, change: Any, why: str) -> None:
    changed = change(old_record(tmp_path))
    store, opts = old_pod(tmp_path)
    path = store.get(UID).path / "pod.json"
    path.write_text(changed if isinstance(changed, str) else json.dumps(changed))
    with pytest.raises(PodError, match=why) as ei:
        api.status(UID, opts)
    assert ei.value.pod == UID and str(path) in str(ei.value)
    assert api.list_pods(opts) == []  # a listing leaves it out, as before


# ----------------------------------------------------------------------------- old pods


def test_an_old_prepared_pod_is_listed_stopped_and_removed(tmp_path: Path) -> None:
    store, opts = old_pod(tmp_path)
    [st] = api.list_pods(opts)
    assert (st.uid, st.name, st.namespace, st.location) == (UID, "web", "default", "prepared")
    assert [c.name for c in st.init_containers] == ["setup"]
    assert [c.name for c in st.containers] == ["web"]
    assert st.containers[0].reason == "PodInitializing"
    assert api.status("default/web", opts).uid == UID
    assert api.stop("web", opts).state is PodState.EXITED  # teardown read the old record
    assert api.status(UID, opts).location == "exited"
    assert api.remove("web", opts) == UID
    assert api.list_pods(opts) == []
    assert not (store.root / "names" / "default_web").exists()  # its name was released


# ----------------------------------------------------------------------------- the surface


def test_node_pods_implements_the_pod_runtime_protocol(tmp_path: Path) -> None:
    pods = api.NodePods(PodOptions(root=str(tmp_path / "pods")))
    assert isinstance(pods, api.PodRuntime)
    members = [
        n
        for n, v in vars(api.PodRuntime).items()
        if inspect.isfunction(v) and not n.startswith("_")
    ]
    assert sorted(members) == sorted(
        ["create", "start", "run", "stop", "remove", "status", "list", "add_ephemeral_container"]
        + [
            "logs",
            "follow_logs",
            "exec",
            "attach",
            "port_connect",
            "wait",
            "gc",
            "refresh_volume",
            "image_id",
            "import_images",
            "images",
            "log_lines",
            "follow_log_lines",
            "memory_use",
            "resource_use",
            "status_watch",
            "watch_status",
        ]
    )
    for name in members:
        want = inspect.signature(getattr(api.PodRuntime, name))
        got = inspect.signature(getattr(api.NodePods, name))
        assert got == want, f"NodePods.{name}{got} is not PodRuntime.{name}{want}"


def test_node_pods_binds_its_options(tmp_path: Path) -> None:
    store, opts = old_pod(tmp_path)
    pods = api.NodePods(opts)
    assert [s.uid for s in pods.list()] == [UID]
    assert pods.status("web").name == "web"
    assert pods.wait("web", timeout=0) is False
    with pytest.raises(PodError, match="no container 'nope'"):
        pods.logs("web", "nope")
    assert pods.stop("web") == UID
    assert pods.wait("web", timeout=0) is True
    assert pods.remove("web") == UID
    assert pods.list() == []
    assert pods.gc().errors == []


@pytest.mark.parametrize(
    "ref", ["/srv/app.tar", "./app.tar", "app.tar.gz", "a//b:1", "MyApp:1", "a:" + "t" * 500]
)
def test_image_id_refuses_what_is_no_image_reference(tmp_path: Path, ref: str) -> None:
    """A path or a reference the grammar refuses is typed (the kubelet's InvalidImageName),
    never looked up; a valid name the store lacks is None."""
    opts = PodOptions(root=str(tmp_path / "pods"), image_root=str(tmp_path / "store"))
    with pytest.raises(api.InvalidImageReference, match="invalid image name"):
        api.image_id(ref, opts)
    assert api.image_id("app:1", opts) is None
    assert api.image_id("0123abcd", opts) is None  # an id prefix


def test_status_files_are_read_whole_without_file_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pod.json and the monitor's key=value files are read with plain reads (a status reads
    several per pod), whole however long, and a missing one is no record / no values."""
    import builtins

    from runtime.pod import record as _record
    from runtime.pod.store import read_bytes, read_keyvalues

    big = b"x" * 200_000 + b"\n"
    (tmp_path / "big").write_bytes(big)
    (tmp_path / "kv").write_bytes(b"phase=Running\nbad line\nmonitor_pid=7\n\xff=1\n")
    rec = PodRecord(uid="u1", name="p", namespace="default", created=1.0)
    _record.write(tmp_path, rec)

    def no_open(*a: object, **k: object) -> None:
        raise AssertionError("a file object was opened")

    monkeypatch.setattr(builtins, "open", no_open)
    monkeypatch.setattr(Path, "open", no_open)
    assert read_bytes(tmp_path / "big") == big
    assert read_keyvalues(tmp_path / "kv") == {
        "phase": "Running",
        "monitor_pid": "7",
        "\ufffd": "1",
    }
    assert read_keyvalues(tmp_path / "missing") == {}
    assert read_keyvalues(tmp_path / "kv" / "below-a-file") == {}
    assert _record.read(tmp_path, "u1") == rec
    assert _record.read(tmp_path / "nothing", "u1") is None
