"""Field sets, merges and ownership of server-side apply (orchestrator.apiserver.managedfields),
as tables of cases; the schema is the served one (kubemodel/schema.json)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.apiserver import managedfields as mf
from orchestrator.apiserver.errors import ApiError

DEPLOY = mf.root_type("apps", "v1", "Deployment")
POD = mf.root_type("", "v1", "Pod")
CM = mf.root_type("", "v1", "ConfigMap")
SVC = mf.root_type("", "v1", "Service")
NOW = "2026-01-01T00:00:00Z"


def _deploy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns", "uid": "u", "resourceVersion": "3"},
        "spec": spec,
    }


def _container(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


def _template(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"containers": list(containers)}}


# (name, type, object, dots, the fieldsV1 tree)
TREES: list[tuple[str, mf.Type, dict[str, Any], bool, dict[str, Any]]] = [
    (
        "apply: leaves and keyed items, no '.' on maps; server metadata left out",
        DEPLOY,
        {
            **_deploy(replicas=2, template=_template(_container("a", image="x"))),
            "metadata": {"name": "web", "uid": "u", "labels": {"app": "web"}},
        },
        False,
        {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {
                    "f:spec": {
                        "f:containers": {'k:{"name":"a"}': {".": {}, "f:name": {}, "f:image": {}}}
                    }
                },
            },
        },
    ),
    (
        "update: an added map and pointer struct are members, value structs are not",
        DEPLOY,
        {
            **_deploy(strategy={"rollingUpdate": {"maxSurge": 1}}),
            "metadata": {"name": "web", "labels": {"app": "web"}},
        },
        True,
        {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}}}},
        },
    ),
    (
        "atomic struct (a label selector) and atomic list (args) are leaves",
        DEPLOY,
        _deploy(
            selector={"matchLabels": {"app": "web"}},
            template=_template(_container("a", args=["x", "y"])),
        ),
        False,
        {
            "f:spec": {
                "f:selector": {},
                "f:template": {
                    "f:spec": {
                        "f:containers": {'k:{"name":"a"}': {".": {}, "f:name": {}, "f:args": {}}}
                    }
                },
            }
        },
    ),
    (
        "a set list (finalizers) by value; status left out of the main resource",
        DEPLOY,
        {
            **_deploy(),
            "metadata": {"finalizers": ["a/b", "c"]},
            "status": {"replicas": 1},
        },
        False,
        {"f:metadata": {"f:finalizers": {'v:"a/b"': {}, 'v:"c"': {}}}, "f:spec": {}},
    ),
    (
        "a list keyed by two fields, the omitted protocol defaulted to TCP",
        SVC,
        {"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}},
        False,
        {
            "f:spec": {
                "f:ports": {
                    'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}},
                    'k:{"port":53,"protocol":"UDP"}': {".": {}, "f:port": {}, "f:protocol": {}},
                }
            }
        },
    ),
    (
        "a granular map of a kind without status subresource (ConfigMap data)",
        CM,
        {"data": {"a": "1", "b": "2"}, "metadata": {"annotations": {}}},
        False,
        {"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:annotations": {}}},
    ),
]


@pytest.mark.parametrize(("name", "t", "obj", "dots", "want"), TREES, ids=[c[0] for c in TREES])
def test_object_tree(name: str, t: mf.Type, obj: dict[str, Any], dots: bool, want: Any) -> None:
    assert mf.object_tree(obj, t, True, None, dots) == want


def test_status_subresource_tree_has_only_status() -> None:
    obj = {**_deploy(replicas=1), "status": {"replicas": 1, "conditions": [{"type": "Ready"}]}}
    assert mf.object_tree(obj, DEPLOY, True, "status", False) == {
        "f:status": {
            "f:replicas": {},
            "f:conditions": {'k:{"type":"Ready"}': {".": {}, "f:type": {}}},
        }
    }


def test_members_and_tree_round_trip() -> None:
    tree = {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:containers": {'k:{"name":"a"}': {".": {}, "f:image": {}}}},
    }
    paths = mf.members(tree)
    assert paths == {
        ("f:metadata", "f:labels"),
        ("f:metadata", "f:labels", "f:app"),
        ("f:spec", "f:containers", 'k:{"name":"a"}'),
        ("f:spec", "f:containers", 'k:{"name":"a"}', "f:image"),
    }
    assert mf.tree_of(paths) == tree


# (name, tree, path to discard, tree after)
DISCARDS = [
    ("a leaf", {"f:a": {"f:b": {}, "f:c": {}}}, ("f:a", "f:b"), {"f:a": {"f:c": {}}}),
    ("the last leaf takes its parents", {"f:a": {"f:b": {}}}, ("f:a", "f:b"), {}),
    (
        "a member parent stays a leaf",
        {"f:a": {".": {}, "f:b": {}}},
        ("f:a", "f:b"),
        {"f:a": {}},
    ),
    (
        "an inner member keeps its children",
        {"f:a": {".": {}, "f:b": {}}},
        ("f:a",),
        {"f:a": {"f:b": {}}},
    ),
    ("not there", {"f:a": {}}, ("f:x",), {"f:a": {}}),
]


@pytest.mark.parametrize(("name", "tree", "path", "want"), DISCARDS, ids=[c[0] for c in DISCARDS])
def test_discard(name: str, tree: Any, path: tuple[str, ...], want: Any) -> None:
    mf.discard(tree, path)
    assert tree == want


def test_insert_keeps_a_leaf_member_when_it_gets_children() -> None:
    tree: dict[str, Any] = {"f:a": {}}
    mf.insert(tree, ("f:a", "f:b"))
    assert tree == {"f:a": {".": {}, "f:b": {}}}
    mf.insert(tree, ("f:c", "f:d"))
    assert tree["f:c"] == {"f:d": {}}


# (name, type, live, config, merged)
MERGES: list[tuple[str, mf.Type, Any, Any, Any]] = [
    (
        "keyed list: items merged by name, new ones appended, others kept",
        POD,
        {"spec": {"containers": [{"name": "a", "image": "1", "tty": True}, {"name": "b"}]}},
        {"spec": {"containers": [{"name": "a", "image": "2"}, {"name": "c"}]}},
        {
            "spec": {
                "containers": [
                    {"name": "a", "image": "2", "tty": True},
                    {"name": "b"},
                    {"name": "c"},
                ]
            }
        },
    ),
    (
        "atomic list replaced whole",
        POD,
        {"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}},
        {"spec": {"containers": [{"name": "a", "args": ["3"]}]}},
        {"spec": {"containers": [{"name": "a", "args": ["3"]}]}},
    ),
    (
        "granular map merged key by key",
        CM,
        {"metadata": {"labels": {"a": "1", "b": "2"}}},
        {"metadata": {"labels": {"b": "3", "c": "4"}}},
        {"metadata": {"labels": {"a": "1", "b": "3", "c": "4"}}},
    ),
    (
        "atomic map (label selector) replaced whole",
        DEPLOY,
        {"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}}},
        {"spec": {"selector": {"matchLabels": {"a": "1"}}}},
        {"spec": {"selector": {"matchLabels": {"a": "1"}}}},
    ),
    (
        "set list: union",
        CM,
        {"metadata": {"finalizers": ["x", "y"]}},
        {"metadata": {"finalizers": ["y", "z"]}},
        {"metadata": {"finalizers": ["x", "y", "z"]}},
    ),
]


@pytest.mark.parametrize(
    ("name", "t", "live", "config", "want"), MERGES, ids=[c[0] for c in MERGES]
)
def test_merge(name: str, t: mf.Type, live: Any, config: Any, want: Any) -> None:
    before = repr(live)
    assert mf.merge(live, config, t) == want
    assert repr(live) == before  # the live object is not touched


def test_compare_added_modified_removed() -> None:
    old = _deploy(replicas=1, template=_template(_container("a", image="1"), _container("b")))
    new = _deploy(replicas=2, template=_template(_container("a", image="1"), _container("c")))
    new["metadata"]["labels"] = {"x": "y"}
    d = mf.compare(old, new, DEPLOY, True, None)
    c = ("f:spec", "f:template", "f:spec", "f:containers")
    assert d.modified == {("f:spec", "f:replicas")}
    assert d.added == {
        ("f:metadata", "f:labels"),
        ("f:metadata", "f:labels", "f:x"),
        (*c, 'k:{"name":"c"}'),
        (*c, 'k:{"name":"c"}', "f:name"),
    }
    assert d.removed == {(*c, 'k:{"name":"b"}'), (*c, 'k:{"name":"b"}', "f:name")}


def _entries(obj: dict[str, Any]) -> dict[str, Any]:
    return {e["manager"]: e["fieldsV1"] for e in obj}


def test_update_moves_changed_fields_to_their_writer() -> None:
    old = _deploy(replicas=1, paused=True)
    entries = [
        mf.entry(
            "creator", "Update", "apps/v1", NOW, {"f:spec": {"f:replicas": {}, "f:paused": {}}}
        )
    ]
    new = _deploy(replicas=3, paused=True)
    out = mf.record_update(
        entries, mf.compare(old, new, DEPLOY, True, None), "scaler", "apps/v1", None, NOW
    )
    assert _entries(out) == {
        "creator": {"f:spec": {"f:paused": {}}},
        "scaler": {"f:spec": {"f:replicas": {}}},
    }
    # no change: the entries stay as they were (no new time, so no write)
    same = mf.record_update(
        out, mf.compare(new, new, DEPLOY, True, None), "other", "apps/v1", None, "later"
    )
    assert same is out


def _apply(
    live: dict[str, Any] | None,
    config: dict[str, Any],
    entries: list[dict[str, Any]],
    manager: str = "kubectl",
    force: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return mf.apply(live, config, DEPLOY, entries, manager, "apps/v1", None, True, force, NOW)


def test_apply_creates_then_removes_what_it_no_longer_applies() -> None:
    cfg1 = _deploy(
        replicas=2, template=_template(_container("a", env=[{"name": "A"}, {"name": "B"}]))
    )
    cfg1["metadata"]["labels"] = {"app": "web", "tier": "x"}
    obj, entries = _apply(None, cfg1, [])
    assert [e["operation"] for e in entries] == ["Apply"]
    # a controller owns the template's container image: it stays, the rest follows the config
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = "set-by-other"
    entries.append(
        mf.entry(
            "other",
            "Update",
            "apps/v1",
            NOW,
            {
                "f:spec": {
                    "f:template": {"f:spec": {"f:containers": {'k:{"name":"a"}': {"f:image": {}}}}}
                }
            },
        )
    )
    cfg2 = _deploy(replicas=2, template=_template(_container("a", env=[{"name": "A"}])))
    cfg2["metadata"]["labels"] = {"app": "web"}
    new, entries2 = _apply(obj, cfg2, entries)
    assert new["metadata"]["labels"] == {"app": "web"}
    c = new["spec"]["template"]["spec"]["containers"][0]
    assert c == {"name": "a", "env": [{"name": "A"}], "image": "set-by-other"}
    assert obj["metadata"]["labels"] == {"app": "web", "tier": "x"}  # live untouched
    # a field no manager lists any more and nobody else owns goes with its item
    cfg3 = _deploy(replicas=2, template=_template())
    new3, _ = _apply(new, cfg3, entries2)
    assert new3["spec"]["template"]["spec"]["containers"] == [
        {"name": "a", "image": "set-by-other"}
    ]


def test_apply_conflict_and_force() -> None:
    live = _deploy(replicas=1)
    entries = [mf.entry("kubectl-edit", "Update", "apps/v1", NOW, {"f:spec": {"f:replicas": {}}})]
    with pytest.raises(mf.Conflicts) as e:
        _apply(live, _deploy(replicas=5), entries)
    assert e.value.code == 409
    assert e.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas'
    )
    assert e.value.details == {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "kubectl-edit" using apps/v1',
                "field": ".spec.replicas",
            }
        ]
    }
    # the same value is no conflict: both own it
    same, shared = _apply(live, _deploy(replicas=1), entries)
    assert set(_entries(shared)) == {"kubectl", "kubectl-edit"}
    # forced: the field moves to the applier
    new, forced = _apply(live, _deploy(replicas=5), entries, force=True)
    assert new["spec"]["replicas"] == 5
    assert _entries(forced) == {"kubectl": {"f:spec": {"f:replicas": {}}}}


def test_conflicts_with_several_managers_are_listed() -> None:
    live = _deploy(replicas=1, paused=False)
    live["metadata"]["labels"] = {"a": "1"}
    entries = [
        mf.entry("one", "Apply", "apps/v1", NOW, {"f:spec": {"f:replicas": {}, "f:paused": {}}}),
        mf.entry("two", "Update", "apps/v1", NOW, {"f:metadata": {"f:labels": {"f:a": {}}}}),
    ]
    cfg = _deploy(replicas=2, paused=True)
    cfg["metadata"]["labels"] = {"a": "2"}
    with pytest.raises(mf.Conflicts) as e:
        _apply(live, cfg, entries)
    assert e.value.message.startswith('Apply failed with 3 conflicts: conflicts with "one":\n')
    assert '\nconflicts with "two" using apps/v1:\n- .metadata.labels.a' in e.value.message
    assert {c["field"] for c in e.value.details["causes"]} == {
        ".spec.replicas",
        ".spec.paused",
        ".metadata.labels.a",
    }


def test_path_strings() -> None:
    assert (
        mf.path_string(("f:spec", "f:containers", 'k:{"name":"a"}', "f:image"))
        == '.spec.containers[name="a"].image'
    )
    assert mf.path_string(("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}')) == (
        '.spec.ports[port=80,protocol="TCP"]'
    )
    assert mf.path_string(("f:metadata", "f:finalizers", 'v:"x"')) == '.metadata.finalizers[="x"]'


def test_keyed_item_without_its_key_is_refused() -> None:
    with pytest.raises(ApiError) as e:
        mf.object_tree({"spec": {"containers": [{"image": "x"}]}}, POD, True, None, False)
    assert e.value.code == 422


@pytest.mark.parametrize(
    ("field_manager", "agent", "want"),
    [
        ("mine", "kubectl/v1.32.0 (linux/amd64)", "mine"),
        (None, "kubectl/v1.32.0 (linux/amd64) kubernetes/abc", "kubectl"),
        (None, "OpenAPI-Generator/31.0.0/python", "OpenAPI-Generator"),
        (None, "", ""),
        (None, "x" * 200, "x" * 128),
    ],
)
def test_manager_name(field_manager: str | None, agent: str, want: str) -> None:
    assert mf.manager_name(field_manager, agent) == want


def test_writes_the_schema_cannot_place_go_on_without_entries() -> None:
    """A keyed item without its key: an Update records nothing (kube's UpdateNoErrors)."""
    keyless = {"spec": {"containers": [{"image": "x"}]}}
    assert mf.created_entries(keyless, POD, True, "me", "v1", NOW) is None
    entries = [mf.entry("me", "Update", "v1", NOW, {"f:spec": {"f:nodeName": {}}})]
    new = {"spec": {"containers": [{"image": "y"}]}}
    assert (
        mf.updated_entries(entries, keyless, new, POD, True, None, "you", "v1", None, NOW)
        is entries
    )
    ok = mf.created_entries({"spec": {"nodeName": "n"}}, POD, True, "me", "v1", NOW)
    assert ok == entries
