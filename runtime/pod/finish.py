"""``python -m runtime.pod.finish POD_DIR``: the monitor's ``finish_arg``.

Run by the pod's monitor (which holds the pod's lock) once no container runs any more: tear
the pod down (``runtime.pod.prepare.teardown``) and rename ``run/<uid>`` to ``exited/<uid>``.
Exit status 0, or 1 with one line on stderr naming what failed (the pod is moved to exited/
anyway: ``pod gc`` retries nothing, but nothing is left holding the lock).
"""

from __future__ import annotations

import sys
from pathlib import Path

from runtime.pod.prepare import teardown
from runtime.pod.store import PodDir, PodState, PodStore


def finish(path: str) -> int:
    p = Path(path).absolute()
    store = PodStore(p.parent.parent)
    pd = PodDir(store, p.name, PodState(p.parent.name))
    rc = 0
    try:
        teardown(pd)
    except Exception as e:  # noqa: BLE001 - report, still move the pod
        print(f"corral: pod finish {pd.uid}: {e}", file=sys.stderr)
        rc = 1
    if pd.state is PodState.RUNNING:
        pd.move(PodState.EXITED)
    return rc


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: python -m runtime.pod.finish POD_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(finish(sys.argv[1]))


if __name__ == "__main__":
    main()
