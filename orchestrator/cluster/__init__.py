"""A cluster on one machine (as kind): ``corral cluster up`` / ``down``.

Everything goes into network namespaces it makes and a data directory: a "LAN" namespace with
a bridge, one namespace per node joined to it by a veth with an address of the LAN range, a
``corral server`` on 127.0.0.1, and one ``corral agent`` per node whose pods live in that node's
namespace (``--node-netns``). The machine's own network namespace is never touched.
"""

from .up import ClusterError, ClusterSpec, Node, State, down, load_state, up

__all__ = ["ClusterError", "ClusterSpec", "Node", "State", "down", "load_state", "up"]
