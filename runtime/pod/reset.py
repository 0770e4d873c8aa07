"""``python -m runtime.pod.reset POD_DIR CONTAINER``: the monitor's ``prestart_arg``.

A restarted container is a new container, as in Kubernetes: what its previous run wrote to
its root filesystem is gone, its volumes are kept. The monitor runs this (holding the pod's
lock) after it deleted the previous run from the runtime and before it creates the next one:
unmount the container's overlay rootfs, remove its upper and work directories, and mount the
image's layers again over fresh ones. Exit status 0, or 1 with one line on stderr naming the
step that failed (the monitor then records the run as a StartError).
"""

from __future__ import annotations

import sys
from pathlib import Path

from runtime.pod.store import PodDir, PodError, PodState, PodStore

__all__ = ["reset"]


def reset(path: str | Path, container: str) -> None:
    """Give ``container`` of the pod at ``path`` a fresh writable layer."""
    from images.store import Store
    from runtime.pod.prepare import PodOptions

    p = Path(path).absolute()
    pd = PodDir(PodStore(p.parent.parent), p.name, PodState(p.parent.name))
    record = pd.record()
    found = [c for c in record.get("containers") or [] if c.get("name") == container]
    if not found:
        raise PodError(pd.uid, f"reset container {container!r}: not in pod.json")
    opts = PodOptions.from_json(record.get("options") or {})
    cdir = pd.path / "containers" / container
    rootfs, overlay = cdir / "rootfs", cdir / "overlay"
    store = Store(opts.image_root)
    step = f"image {found[0]['image_id']}"
    try:
        image = store.get(found[0]["image_id"])
        step = f"umount rootfs({rootfs})"
        store.umount(rootfs, overlay)  # and remove upper/ and work/
        step = f"mount rootfs({rootfs})"
        store.mount_rootfs(image, rootfs, overlay)
    except Exception as e:
        raise PodError(pd.uid, f"reset container {container}: {step}: {e}") from e


def main() -> None:
    if len(sys.argv) != 3:
        print("usage: python -m runtime.pod.reset POD_DIR CONTAINER", file=sys.stderr)
        sys.exit(2)
    try:
        reset(sys.argv[1], sys.argv[2])
    except (PodError, OSError, ValueError) as e:
        print(f"corral: pod {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
