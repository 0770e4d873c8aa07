"""``python -m runtime.pod.reset [--subpaths] POD_DIR CONTAINER``: the monitor's ``prestart_arg``.

A restarted container is a new container, as in Kubernetes: what its previous run wrote to
its root filesystem is gone, its volumes are kept. The monitor runs this (holding the pod's
lock) after it deleted the previous run from the runtime and before it creates the next one:
unmount the container's overlay rootfs, remove its upper and work directories, and mount the
image's layers again over fresh ones.

With ``--subpaths`` (a container that mounts a subPath; the monitor then runs this before
every create, the first included: ``prestart_first true``) it also unmounts the container's
previous subPath mounts and mounts them again, resolved now, after the init containers ran
(``runtime.pod.subpath``); the rootfs is reset only from the second run on (the file
``containers/<name>/started`` tells). Exit status 0, or 1 with one line on stderr naming the
step that failed (the monitor then records the run as a StartError).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from runtime.pod.store import PodDir, PodError, PodState, PodStore

__all__ = ["prestart", "reset"]

STARTED = "started"  # in the container's directory: it was created before


def _pod_dir(path: str | Path) -> PodDir:
    p = Path(path).absolute()
    return PodDir(PodStore(p.parent.parent), p.name, PodState(p.parent.name))


def reset(path: str | Path, container: str) -> None:
    """Give ``container`` of the pod at ``path`` a fresh writable layer."""
    from images.store import Store

    pd = _pod_dir(path)
    record = pd.record_or_blank()
    found = record.container(container)
    if found is None:
        raise PodError(pd.uid, f"reset container {container!r}: not in pod.json")
    opts = record.pod_options()
    cdir = pd.path / "containers" / container
    rootfs, overlay = cdir / "rootfs", cdir / "overlay"
    store = Store(opts.image_root)
    step = f"image {found.image_id}"
    try:
        image = store.get(found.image_id)
        step = f"umount rootfs({rootfs})"
        store.umount(rootfs, overlay)  # and remove upper/ and work/
        step = f"mount rootfs({rootfs})"
        store.mount_rootfs(image, rootfs, overlay)
    except Exception as e:
        raise PodError(pd.uid, f"reset container {container}: {step}: {e}") from e


def prestart(path: str | Path, container: str) -> None:
    """Before every create of a container with subPath mounts: drop the previous run's
    subPath mounts, reset the rootfs when it ran before, mount the subPaths again."""
    from runtime.pod.subpath import SubPathError, mount_all, umount_container

    pd = _pod_dir(path)
    cdir = pd.path / "containers" / container
    if not cdir.is_dir():
        raise PodError(pd.uid, f"start container {container!r}: not in the pod")
    try:
        umount_container(pd.path, container)
    except OSError as e:
        raise PodError(pd.uid, f"container {container}: umount subPaths: {e}") from e
    if (cdir / STARTED).exists():
        reset(path, container)
    else:
        fd = os.open(cdir / STARTED, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        os.close(fd)
    try:
        mount_all(pd.path, container)
    except (SubPathError, OSError) as e:
        raise PodError(pd.uid, f"container {container}: {e}") from e


def main() -> None:
    args = sys.argv[1:]
    subpaths = bool(args) and args[0] == "--subpaths"
    if subpaths:
        args = args[1:]
    if len(args) != 2:
        print("usage: python -m runtime.pod.reset [--subpaths] POD_DIR CONTAINER", file=sys.stderr)
        sys.exit(2)
    try:
        (prestart if subpaths else reset)(args[0], args[1])
    except (PodError, OSError, ValueError) as e:
        print(f"corral: pod {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
