"""The node network brought to its file (``ensure``, ``runtime.pod.api.ensure_network``), and
``python -m runtime.pod.netsync '{"network_config": ..., "node_netns": ..., "create": ...}'``,
the same in a process of its own (``runtime.pod.api.ensure_network_apart``): it prints
``true`` or ``false`` (the bridge is there); on failure, the error on stderr and exit status 1."""

from __future__ import annotations

import json
import sys

from runtime.pod.prepare import PodOptions


def ensure(opts: PodOptions, create: bool = True) -> bool:
    from runtime.network import NodeNetwork

    return NodeNetwork(opts.network_settings(), opts.node_netns).sync(create)


def main(argv: list[str]) -> int:
    try:
        args = json.loads(argv[1])
        opts = PodOptions(
            network=True, network_config=args["network_config"], node_netns=args["node_netns"]
        )
        ok = ensure(opts, bool(args["create"]))
    except Exception as e:  # noqa: BLE001 - the parent reports it, naming the step
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("true" if ok else "false")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
