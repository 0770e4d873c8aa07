"""Where Corral keeps things unless told otherwise: the one place these paths are written.

Plain constants and no imports, so that every command may import this module at no cost.
Environment variables and command options that override a default are read where they
apply (``CORRAL_IMAGE_STORE``, ``CORRAL_STATE_ROOT``, ``CORRAL_POD_ROOT``,
``CORRAL_NETWORK_DIR``, ...), never here.
"""

from __future__ import annotations

# Persistent state: the image store; `corral run` containers live in its containers/.
IMAGE_ROOT = "/var/lib/corral"
# Pod directories (`corral pod`, the kubelet).
POD_ROOT = "/var/lib/corral/pods"
# The node network's IPAM leases and hostPort records.
NETWORK_STATE_DIR = "/var/lib/corral/network"
# Results of CNI ADD, kept for the matching DEL (as libcni's cache).
CNI_CACHE_DIR = "/var/lib/corral/cni"
# The node network's config file; the built-in defaults apply when it does not exist.
NETWORK_CONFIG = "/etc/corral/network.yaml"

# Runtime state, gone at reboot: `corral run` containers, and `corral-oci --root`.
CONTAINER_STATE_ROOT = "/run/corral/containers"
OCI_STATE_ROOT = "/run/corral-oci"

# Cgroup parents: pods' QoS tree (absolute), `corral run` containers (relative: below the
# cgroup of the process that runs them).
POD_CGROUP_PARENT = "/kubepods"
RUN_CGROUP_PARENT = "corral"

# `corral server`: its state (TLS, token, the SQLite store) and the admin kubeconfig it writes.
SERVER_DATA_DIR = "/var/lib/corral/server"
SERVER_KUBECONFIG = "/etc/corral/corral.yaml"
SERVER_BIND_ADDRESS = "127.0.0.1"
SERVER_HTTPS_PORT = 6443
# `corral agent`: its state (credentials, pods, image store, IPAM); images/ in it is imported.
AGENT_DATA_DIR = "/var/lib/corral/agent"
