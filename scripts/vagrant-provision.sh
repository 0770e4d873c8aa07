#!/usr/bin/env bash
# Provision one node of the Vagrant cluster (see the Vagrantfile), as root, from the checkout
# this script lives in:
#
#   vagrant-provision.sh --self NAME [--role ROLE] [--cgroup v1|v2] [--cluster-cidr CIDR] \
#       --node NAME=ADDRESS=PODCIDR ...     # every node of the cluster, this one included
#   vagrant-provision.sh --print-network-config --self NAME --node ...   # no root needed
#   vagrant-provision.sh --check [--cgroup v1|v2]   # after the (re)boot: layout, routes, example
#
# Steps: /etc/hosts entries for every node; the kernel command line for the cgroup layout
# (v1: systemd.unified_cgroup_hierarchy=0, applied at the next boot); Corral installed with
# scripts/setup.sh and linked into /usr/local/bin; the node's pod network config in
# /etc/corral/network.yaml (its pod CIDR slice, host-gw peers for the others) brought up now
# and at every boot by corral-network.service. --check (the Vagrantfile's last provisioner)
# then verifies the cgroup layout and the routes, runs the example container, and runs the
# README's example pod (examples/pod.yaml, busybox image built as scripts/demo.sh does) on the
# pod network, checking its address is in this node's slice.
#
# Environment: CORRAL_PROVISION_SETUP=0 skips setup.sh (the tests run this script where
# there is no network for apt and pip).
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
PY="$SRC/.venv/bin/python"
NETWORK_CONFIG=/etc/corral/network.yaml
UNIT=/etc/systemd/system/corral-network.service
GRUB_SNIPPET=/etc/default/grub.d/corral-cgroup.cfg

self="" role=worker cgroup=v2 cluster_cidr=10.88.0.0/16 mode=provision
nodes=()

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit "${1:-2}"
}
die() { echo "vagrant-provision: $*" >&2; exit 1; }
step() { echo "==> $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --self) self=${2:?}; shift 2 ;;
    --role) role=${2:?}; shift 2 ;;
    --cgroup) cgroup=${2:?}; shift 2 ;;
    --cluster-cidr) cluster_cidr=${2:?}; shift 2 ;;
    --node) nodes+=("${2:?}"); shift 2 ;;
    --print-network-config) mode=print; shift ;;
    --check) mode=check; shift ;;
    -h | --help) usage 0 ;;
    *) echo "vagrant-provision: unknown argument: $1" >&2; usage 2 ;;
  esac
done
case "$cgroup" in v1 | v2) ;; *) die "--cgroup must be v1 or v2, not $cgroup" ;; esac
case "$role" in control-plane | worker) ;; *) die "--role must be control-plane or worker" ;; esac

# NAME=ADDRESS=PODCIDR -> fields; the node named by --self must be listed.
field() { echo "$1" | cut -d= -f"$2"; }
self_node() {
  local n
  for n in "${nodes[@]}"; do
    [ "$(field "$n" 1)" = "$self" ] && { echo "$n"; return 0; }
  done
  return 1
}

network_config() {
  local me n
  me=$(self_node) || die "--self $self is not among the --node entries"
  cat <<EOF
# Written by scripts/vagrant-provision.sh for node $self ($role); format: runtime/network/config.py
name: corral
bridge: corral0
podCIDR: $(field "$me" 3)
clusterCIDR: $cluster_cidr
nodeAddress: $(field "$me" 2)
masquerade: true
peers:
EOF
  for n in "${nodes[@]}"; do
    [ "$(field "$n" 1)" = "$self" ] && continue
    echo "  - {name: $(field "$n" 1), podCIDR: $(field "$n" 3), address: $(field "$n" 2)}"
  done
}

cgroup_layout() {
  case "$(stat -fc %T /sys/fs/cgroup)" in
    cgroup2fs) echo v2 ;;
    *) echo v1 ;;
  esac
}

check() {
  step "cgroup layout: $(cgroup_layout) (wanted $cgroup)"
  [ "$(cgroup_layout)" = "$cgroup" ] || die "cgroup $cgroup wanted; reboot the node to apply it"
  if [ -f "$NETWORK_CONFIG" ]; then
    step "pod network: bridge and routes to the other nodes' pod CIDRs"
    "$PY" - "$NETWORK_CONFIG" <<'EOF'
import sys
from runtime.network import NodeNetwork, load_config
node = NodeNetwork(load_config(sys.argv[1]))
node.ensure()  # idempotent: what corral-network.service did at boot
print(f"  {node.config.bridge} {node.config.gateway}")
for peer in node.config.peers:
    print(f"  {peer.pod_cidr} via {peer.address} ({peer.name})")
EOF
    ip -4 route show proto 199 | sed "s/^/  route: /"  # RTPROT_CORRAL
  fi
  step "example container (examples/busybox)"
  if [ ! -x "$SRC/examples/busybox/rootfs/bin/busybox" ]; then
    (cd "$SRC" && "$PY" - "$SRC/examples/busybox/rootfs") <<'EOF'
import sys
from pathlib import Path
from testkit.cache import CACHE_DIR
from testkit.helper.build import build_helper
from testkit.rootfs import build_rootfs
build_rootfs(Path(sys.argv[1]), helper=build_helper(CACHE_DIR / "helper"))
EOF
  fi
  local id="vagrant-check-$$"
  (cd "$SRC" && "$SRC/.venv/bin/corral-oci" run --bundle examples/busybox "$id")

  step "example pod (examples/pod.yaml) on the pod network, as scripts/demo.sh builds it"
  local work corral="$SRC/.venv/bin/corral"
  work=$(mktemp -d /var/tmp/corral-check.XXXXXX)
  (cd "$SRC" && "$PY" - "$work/busybox.tar") <<'EOF'
import sys
import tempfile
from pathlib import Path
from testkit.cache import CACHE_DIR
from testkit.helper.build import build_helper
from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar
from testkit.rootfs import build_rootfs
with tempfile.TemporaryDirectory() as d:
    build_rootfs(Path(d), helper=build_helper(CACHE_DIR / "helper"))
    layer = tar_tree(Path(d))
files, _ = docker_files([layer], config_for([layer], Cmd=["sh"]), repo_tags=["busybox:latest"])
write_tar(Path(sys.argv[1]), files)
EOF
  "$corral" image import "$work/busybox.tar"
  rm -rf "$work"
  "$corral" pod rm -f hello >/dev/null 2>&1 || true  # an earlier check's
  (cd "$SRC" && "$corral" pod run examples/pod.yaml)
  "$corral" pod inspect -o json hello >"/run/corral-check-pod.json"
  "$PY" - "/run/corral-check-pod.json" "$NETWORK_CONFIG" <<'EOF'
import ipaddress
import json
import os
import sys
pod = json.load(open(sys.argv[1]))
status = pod.get("status", pod)
ip = status.get("podIP")
print(f"  pod hello: phase {status.get('phase')}, IP {ip}")
if os.path.exists(sys.argv[2]) and ip:
    from runtime.network import load_config
    cidr = load_config(sys.argv[2]).pod_cidr
    assert ipaddress.ip_address(ip) in cidr, f"pod IP {ip} is not in this node's {cidr}"
EOF
  rm -f /run/corral-check-pod.json
  "$corral" pod rm hello
}

if [ "$mode" = print ]; then
  network_config
  exit 0
fi
[ "$(id -u)" = 0 ] || die "run as root"
if [ "$mode" = check ]; then
  check
  exit 0
fi
[ -n "$self" ] || die "--self NAME is required"
self_node >/dev/null || die "--self $self is not among the --node entries"

step "/etc/hosts: the cluster's nodes"
hosts=$(grep -v '# corral-cluster$' /etc/hosts || true)
{
  printf '%s\n' "$hosts"
  for n in "${nodes[@]}"; do
    printf '%s\t%s # corral-cluster\n' "$(field "$n" 2)" "$(field "$n" 1)"
  done
} >/etc/hosts.corral && mv /etc/hosts.corral /etc/hosts

step "kernel command line: cgroup $cgroup"
if [ "$cgroup" = v1 ]; then
  mkdir -p "$(dirname "$GRUB_SNIPPET")"
  echo 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX systemd.unified_cgroup_hierarchy=0"' >"$GRUB_SNIPPET"
else
  rm -f "$GRUB_SNIPPET"
fi
if command -v update-grub >/dev/null; then
  update-grub 2>&1 | tail -n 1
else
  echo "  no update-grub here: the layout stays $(cgroup_layout)"
fi

if [ "${CORRAL_PROVISION_SETUP:-1}" != 0 ]; then
  step "Corral from $SRC (scripts/setup.sh)"
  CORRAL_SETUP_VM=0 bash "$SRC/scripts/setup.sh"
fi
for bin in corral corral-oci; do
  ln -sf "$SRC/.venv/bin/$bin" "/usr/local/bin/$bin"
done

step "pod network: $NETWORK_CONFIG"
mkdir -p "$(dirname "$NETWORK_CONFIG")"
network_config >"$NETWORK_CONFIG.new"
"$PY" -c 'import sys; from runtime.network import load_config; load_config(sys.argv[1])' \
  "$NETWORK_CONFIG.new"
mv "$NETWORK_CONFIG.new" "$NETWORK_CONFIG"
sed 's/^/  /' "$NETWORK_CONFIG"
cat >"$UNIT" <<EOF
[Unit]
Description=Corral pod network: bridge, forwarding, firewall base, host-gw routes
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$PY -c "from runtime.network import NodeNetwork, load_config; NodeNetwork(load_config('$NETWORK_CONFIG')).ensure()"

[Install]
WantedBy=multi-user.target
EOF
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable corral-network.service
  systemctl restart corral-network.service
fi

if [ "$cgroup" != "$(cgroup_layout)" ]; then
  step "done; cgroup $cgroup applies at the next boot: reboot, then run this with --check"
else
  step "done; this script with --check verifies the node"
fi
