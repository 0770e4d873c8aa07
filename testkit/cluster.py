"""A one-machine cluster for the tests and the benchmarks, through the same code as
``corral cluster up``/``down`` (orchestrator.cluster): nodes in network namespaces, pods'
cgroups below this process's own cgroup (a tag of their own), an image archive of the test
rootfs that every node imports. ``leftovers`` says what a cluster left behind."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from corral_common import hostsys
from orchestrator.cluster import ClusterSpec, State, down, up
from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar

__all__ = ["IMAGE", "image_dir", "leftovers", "one_machine_cluster"]

IMAGE = "corral-test:latest"


def image_dir(rootfs: Path, dest: Path, tag: str = IMAGE, *more_tags: str, **config: Any) -> Path:
    """A directory with one docker-archive of ``rootfs`` tagged ``tag`` (and ``more_tags``:
    one image under several names, e.g. two "versions" to roll a Deployment between;
    ``config``: more image config fields, e.g. ``Env``)."""
    dest.mkdir(parents=True, exist_ok=True)
    layer = tar_tree(rootfs)
    files, _ = docker_files(
        [layer], config_for([layer], **{"Cmd": ["sh"], **config}), repo_tags=[tag, *more_tags]
    )
    write_tar(dest / "image.tar", files)
    return dest


def _cgroups_tagged(tag: str) -> list[str]:
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(dirpath, d) for d in dirnames if d.startswith(tag)]
        if dirpath.count("/") > 6:
            dirnames[:] = []
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def leftovers(state: State, pids: set[int] = frozenset()) -> dict[str, object]:  # type: ignore[assignment]
    """What is still there of a cluster that was taken down: mounts below its directory
    (its namespaces are bind mounts), its processes (server, agents, and ``pids``: monitors
    and containers seen while it ran), its cgroups, its state."""
    procs = {p.pid for p in [state.server, *(n.proc for n in state.nodes)] if p is not None}
    return {
        k: v
        for k, v in {
            "mounts": hostsys.mounts_under(state.data_dir),
            "processes": sorted(p for p in procs | set(pids) if _alive(p)),
            "cgroups": _cgroups_tagged(state.cgroup_parent.split("/")[0]),
            "state": os.path.exists(state.path),
        }.items()
        if v
    }


@contextmanager
def one_machine_cluster(
    root: Path, nodes: int = 2, images: Path | None = None, **options: Any
) -> Iterator[State]:
    """``up`` in ``root``/cluster, then ``down`` however the body ends; ``options``: more
    ClusterSpec fields (e.g. ``node_monitor_grace_period``)."""
    spec = ClusterSpec(
        data_dir=root / "cluster",
        nodes=nodes,
        images_dir=images,
        cgroup_parent=f"cclu{uuid.uuid4().hex[:8]}",
        **options,
    )
    state = up(spec)
    try:
        yield state
    finally:
        down(spec.data_dir)
