"""The in-process loop of spawn-lib: ``python -m bench.libworker``.

Runs containers one after another through ``runtime.container.run`` inside this one
interpreter, after warm-up runs, and writes what the loop alone cost (not the interpreter
start) as JSON: wall time, CPU time of this process and of the containers it reaped, and the
peak RSS of this process or of any reaped child.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def _cpu(ru: resource.struct_rusage) -> float:
    return ru.ru_utime + ru.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.libworker")
    p.add_argument("--bundle", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    from runtime import container

    opts = container.CreateOptions(root=args.root)

    def one(cid: str) -> None:
        code = container.run(cid, args.bundle, opts)
        if code != 0:
            raise SystemExit(f"container {cid} exited {code}")

    for i in range(args.warmup):
        one(f"{args.prefix}-w{i}")
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for i in range(args.count):
        one(f"{args.prefix}-{i}")
    wall = time.perf_counter() - t0
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "wall_s": wall,
        "cpu_s": (_cpu(self1) - _cpu(self0)) + (_cpu(kids1) - _cpu(kids0)),
        "maxrss_kib": max(self1.ru_maxrss, kids1.ru_maxrss),
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
