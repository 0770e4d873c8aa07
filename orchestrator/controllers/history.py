"""ControllerRevisions: the template history of DaemonSets and StatefulSets (kube's
controller history), one revision per distinct pod template, named ``<owner>-<hash>`` and
labelled ``controller-revision-hash``."""

from __future__ import annotations

import json

from orchestrator.client import AlreadyExists, Informer, NotFound, Obj
from orchestrator.client.rest import CONTROLLERREVISIONS

from .base import Client
from .deployment import template_hash
from .util import controller_ref, deep_copy, labels_of, meta, owner_ref

__all__ = ["REVISION_HASH", "ensure_revision", "revision_template", "trim_history"]

REVISION_HASH = "controller-revision-hash"


def revision_template(rev: Obj) -> Obj:
    """The pod template a revision records."""
    t = deep_copy(((rev.get("data") or {}).get("spec") or {}).get("template") or {})
    t.pop("$patch", None)
    return t


async def ensure_revision(
    client: Client, revisions: Informer, owner: Obj, kind: str
) -> tuple[str, Obj, list[Obj]]:
    """(hash, revision) of the owner's current template, the revision made when missing (with
    the next number); and the owner's other revisions."""
    spec = owner.get("spec") or {}
    ns = meta(owner).get("namespace")
    collisions = (owner.get("status") or {}).get("collisionCount")
    h = template_hash(spec.get("template") or {}, collisions)
    owned = [
        r
        for r in revisions.by_index("namespace", ns or "")
        if (controller_ref(r) or {}).get("uid") == meta(owner)["uid"]
    ]
    data = {"spec": {"template": {**deep_copy(spec.get("template") or {}), "$patch": "replace"}}}
    for r in owned:
        if labels_of(r).get(REVISION_HASH) == h:
            return h, r, [o for o in owned if o is not r]
    number = max((int(r.get("revision") or 0) for r in owned), default=0) + 1
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    body = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": f"{meta(owner)['name']}-{h}",
            "namespace": ns,
            "labels": {**labels, REVISION_HASH: h},
            "ownerReferences": [owner_ref(owner, "apps/v1", kind)],
        },
        "data": data,
        "revision": number,
    }
    try:
        made = await client.create(CONTROLLERREVISIONS, ns, body)
    except AlreadyExists:
        made = await client.get(CONTROLLERREVISIONS, ns, body["metadata"]["name"])
        if json.dumps(made.get("data"), sort_keys=True) != json.dumps(data, sort_keys=True):
            raise
    return h, made, owned


async def trim_history(client: Client, owner: Obj, old: list[Obj], in_use: set[str | None]) -> None:
    """Delete the oldest revisions no pod uses beyond revisionHistoryLimit."""
    limit = int((owner.get("spec") or {}).get("revisionHistoryLimit", 10))
    unused = sorted(
        (r for r in old if labels_of(r).get(REVISION_HASH) not in in_use),
        key=lambda r: int(r.get("revision") or 0),
    )
    for r in unused[: max(len(unused) - limit, 0)]:
        try:
            await client.delete(CONTROLLERREVISIONS, meta(r).get("namespace"), meta(r)["name"])
        except NotFound:
            pass
