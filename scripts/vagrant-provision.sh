#!/usr/bin/env bash
# Provision one node of the Vagrant cluster (see the Vagrantfile), as root, from the checkout
# this script lives in:
#
#   vagrant-provision.sh --self NAME [--role ROLE] [--cgroup v1|v2] [--cluster-cidr CIDR] \
#       --node NAME=ADDRESS ...      # every node of the cluster, this one included
#   vagrant-provision.sh --print-unit --self NAME --node ...   # the node's service (no root)
#   vagrant-provision.sh --join TOKEN_FILE --self NAME --node ...   # a worker: start its agent
#   vagrant-provision.sh --print-token | --print-kubeconfig --self NAME --node ...   # the cp's
#   vagrant-provision.sh --check [--cgroup v1|v2]   # after the (re)boot: layout, example container
#   vagrant-provision.sh --check-cluster --nodes N  # on the cp: N nodes Ready, the example runs
#
# Steps: /etc/hosts entries for every node; the kernel command line for the cgroup layout
# (v1: systemd.unified_cgroup_hierarchy=0, applied at the next boot); Corral installed with
# scripts/setup.sh and linked into /usr/local/bin (kubectl too, when the node has none: the
# kubectl 1.20 setup.sh unpacks); a busybox image archive in the node agent's images
# directory (imported when the agent starts). Then by role:
# - control-plane: corral-server.service, `corral server --bind-address ADDRESS` with its own
#   agent (the node's pods), the join token in /var/lib/corral/server/token and the admin
#   kubeconfig in /etc/corral/corral.yaml; --print-kubeconfig prints the kubeconfig with the
#   server URL https://ADDRESS:6443, for the host (the Vagrantfile copies both out).
# - worker: corral-agent.service, `corral agent --server https://CP_ADDRESS:6443`, which starts
#   once --join has put the server's token (a file the Vagrantfile uploads) in
#   /etc/corral/agent.env.
# Pod networks come from the cluster: the server's node IPAM gives each Node a /24 of the
# cluster CIDR and every agent keeps host-gw routes to the others'.
# Without systemd (the test VM), services run as background processes (logs in /var/log).
#
# Environment: CORRAL_PROVISION_SETUP=0 skips setup.sh (the tests run this script where
# there is no network for apt and pip); CORRAL_PROVISION_WAIT (seconds, default 300) bounds
# each wait.
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
PY="$SRC/.venv/bin/python"
CORRAL="$SRC/.venv/bin/corral"
KUBECTL_120=/var/cache/corral-test/kubernetes-client/usr/bin/kubectl
GRUB_SNIPPET=/etc/default/grub.d/corral-cgroup.cfg
SERVER_DATA=/var/lib/corral/server
AGENT_DATA=/var/lib/corral/agent
KUBECONFIG_PATH=/etc/corral/corral.yaml
AGENT_ENV=/etc/corral/agent.env
PORT=6443
WAIT=${CORRAL_PROVISION_WAIT:-300}

self="" role=worker cgroup=v2 cluster_cidr=10.88.0.0/16 mode=provision token_file=""
want_nodes=0
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
    --print-unit) mode=print-unit; shift ;;
    --print-token) mode=print-token; shift ;;
    --print-kubeconfig) mode=print-kubeconfig; shift ;;
    --join) mode=join; token_file=${2:?}; shift 2 ;;
    --check) mode=check; shift ;;
    --check-cluster) mode=check-cluster; shift ;;
    --nodes) want_nodes=${2:?}; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "vagrant-provision: unknown argument: $1" >&2; usage 2 ;;
  esac
done
case "$cgroup" in v1 | v2) ;; *) die "--cgroup must be v1 or v2, not $cgroup" ;; esac
case "$role" in control-plane | worker) ;; *) die "--role must be control-plane or worker" ;; esac
case "$want_nodes" in '' | *[!0-9]*) die "--nodes must be a number, not $want_nodes" ;; esac

# NAME=ADDRESS -> fields; the node named by --self must be listed.
field() { echo "$1" | cut -d= -f"$2"; }
self_address() {
  local n
  for n in "${nodes[@]}"; do
    [ "$(field "$n" 1)" = "$self" ] && { field "$n" 2; return 0; }
  done
  return 1
}
need_self() {
  [ -n "$self" ] || die "--self NAME is required"
  self_address >/dev/null || die "--self $self is not among the --node entries"
}
# The control plane is the first --node entry (the Vagrantfile lists it first).
cp_address() { field "${nodes[0]:?no --node entries}" 2; }

kubectl_bin() {
  command -v kubectl 2>/dev/null || { [ -x "$KUBECTL_120" ] && echo "$KUBECTL_120"; } \
    || die "no kubectl (scripts/setup.sh unpacks kubectl 1.20 to $KUBECTL_120)"
}
kc() { KUBECONFIG=$KUBECONFIG_PATH "$(kubectl_bin)" "$@"; }

# until SECONDS WHAT COMMAND...: run COMMAND until it succeeds, or fail naming WHAT.
until_ok() {
  local limit=$1 what=$2 t=0
  shift 2
  until "$@" >/dev/null 2>&1; do
    t=$((t + 2))
    [ "$t" -le "$limit" ] || die "timed out after ${limit}s waiting for $what"
    sleep 2
  done
}

# The node's service: its unit name and ExecStart argv, one argument a line.
service_name() { [ "$role" = control-plane ] && echo corral-server || echo corral-agent; }
service_argv() {
  local me
  me=$(self_address)
  if [ "$role" = control-plane ]; then
    printf '%s\n' "$CORRAL" server --data-dir "$SERVER_DATA" --bind-address "$me" \
      --https-listen-port "$PORT" --cluster-cidr "$cluster_cidr" \
      --write-kubeconfig "$KUBECONFIG_PATH"
  else
    printf '%s\n' "$CORRAL" agent --server "https://$(cp_address):$PORT" --data-dir "$AGENT_DATA" \
      --node-name "$self" --node-ip "$me" --cluster-cidr "$cluster_cidr"
  fi
}
unit() {
  local exec
  exec=$(service_argv | tr '\n' ' ')
  cat <<EOF
# Written by scripts/vagrant-provision.sh for node $self ($role)
[Unit]
Description=Corral $( [ "$role" = control-plane ] && echo server || echo agent) ($self)
Wants=network-online.target
After=network-online.target
EOF
  [ "$role" = worker ] && echo "ConditionPathExists=$AGENT_ENV"
  cat <<EOF

[Service]
Type=simple
ExecStart=${exec% }
KillMode=process
Restart=on-failure
RestartSec=5
EOF
  [ "$role" = worker ] && echo "EnvironmentFile=$AGENT_ENV"
  cat <<EOF

[Install]
WantedBy=multi-user.target
EOF
}

# Start the node's service: systemd's unit, or (no systemd: the test VM) a background process.
start_service() {
  local name
  name=$(service_name)
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable "$name.service"
    systemctl restart "$name.service"
    return
  fi
  local pidfile="/run/$name.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    until_ok 30 "the old $name to stop" sh -c "! kill -0 $(cat "$pidfile")"
  fi
  local argv=()
  mapfile -t argv < <(service_argv)
  (
    [ "$role" = worker ] && { set -a; . "$AGENT_ENV"; set +a; }
    exec setsid "${argv[@]}" </dev/null >>"/var/log/$name.log" 2>&1
  ) &
  echo $! >"$pidfile"
  echo "  $name: pid $(cat "$pidfile"), log /var/log/$name.log (no systemd here)"
}

images_dir() { [ "$role" = control-plane ] && echo "$SERVER_DATA/agent/images" || echo "$AGENT_DATA/images"; }

busybox_archive() {
  local out=$1
  (cd "$SRC" && "$PY" - "$out.new") <<'EOF'
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
  mv "$out.new" "$out"
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
  (cd "$SRC" && "$SRC/.venv/bin/corral-oci" run --bundle examples/busybox "vagrant-check-$$")
}

nodes_ready() {
  local ready
  ready=$(kc get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')
  [ "$ready" -ge "$want_nodes" ]
}

# What a failed --check-cluster shows: the pods, their events, the services' logs.
diagnose() {
  echo "== vagrant-provision: the cluster check failed; the pods and their events:" >&2
  kc get pods -o wide >&2 || true
  kc describe pods >&2 || true
  local log
  for log in /var/log/corral-server.log /var/log/corral-agent.log; do
    [ -f "$log" ] && { echo "== $log (tail)" >&2; tail -n 60 "$log" >&2; }
  done
  [ -d /run/systemd/system ] && journalctl -u corral-server -u corral-agent -n 60 --no-pager >&2
  return 0
}

check_cluster() {
  [ -f "$KUBECONFIG_PATH" ] || die "no $KUBECONFIG_PATH: run this on the control plane"
  trap diagnose EXIT
  [ "$want_nodes" -gt 0 ] || die "--check-cluster needs --nodes N"
  step "$want_nodes node(s) Ready"
  until_ok "$WAIT" "$want_nodes Ready node(s)" nodes_ready
  kc get nodes -o wide
  step "the README's example Deployment and Service (examples/deployment.yaml)"
  kc apply -f "$SRC/examples/deployment.yaml"
  kc rollout status deployment/web --timeout="${WAIT}s"
  kc get pods -o wide -l app=web
  local want have
  want=$(kc get deployment web -o jsonpath='{.spec.replicas}')
  until_ok "$WAIT" "$want ready endpoints of service web" sh -c \
    "[ \"\$(KUBECONFIG=$KUBECONFIG_PATH $(kubectl_bin) get endpoints web -o jsonpath='{.subsets[*].addresses[*].ip}' | wc -w)\" -ge $want ]"
  have=$(kc get endpoints web -o jsonpath='{.subsets[*].addresses[*].ip}')
  echo "  endpoints of web: $have"
  step "a client pod fetches http://web (cluster DNS: the ClusterIP; the node's service proxy: a pod)"
  kc delete pod web-client --ignore-not-found --wait=true >/dev/null
  kc run web-client --image=busybox:latest --image-pull-policy=Never --restart=Never \
    --command -- sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://web && exit 0; sleep 2; done; exit 1'
  until_ok "$WAIT" "pod web-client to finish" sh -c \
    "KUBECONFIG=$KUBECONFIG_PATH $(kubectl_bin) get pod web-client -o jsonpath='{.status.phase}' | grep -Eq 'Succeeded|Failed'"
  local phase
  phase=$(kc get pod web-client -o jsonpath='{.status.phase}')
  kc logs web-client | sed 's/^/  web-client: /'
  [ "$phase" = Succeeded ] || die "pod web-client: $phase (it could not fetch http://web)"
  kc delete pod web-client --wait=false >/dev/null
  local port ip fetch
  port=$(kc get service web -o jsonpath='{.spec.ports[0].nodePort}')
  [ -n "$port" ] || die "service web has no nodePort"
  fetch='import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())'
  step "the NodePort $port on every node's address, from this machine"
  for ip in $(kc get nodes -o jsonpath='{range .items[*]}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}'); do
    until_ok "$WAIT" "http://$ip:$port" "$PY" -c "$fetch" "http://$ip:$port"
    echo "  http://$ip:$port: $("$PY" -c "$fetch" "http://$ip:$port")"
  done
  trap - EXIT
  step "done: the example keeps running (kubectl delete -f examples/deployment.yaml)"
}

case "$mode" in
  print-unit)
    need_self
    unit
    exit 0
    ;;
esac
[ "$(id -u)" = 0 ] || die "run as root"
case "$mode" in
  check) check; exit 0 ;;
  check-cluster) check_cluster; exit 0 ;;
  print-token)
    [ -s "$SERVER_DATA/token" ] || die "no join token in $SERVER_DATA/token: is this the control plane?"
    cat "$SERVER_DATA/token"
    exit 0
    ;;
  print-kubeconfig)
    need_self
    [ -s "$KUBECONFIG_PATH" ] || die "no $KUBECONFIG_PATH: is this the control plane?"
    sed -E "s#^( *server: ).*#\\1https://$(self_address):$PORT#" "$KUBECONFIG_PATH"
    exit 0
    ;;
  join)
    need_self
    [ "$role" = worker ] || die "--join is for workers (the control plane runs the server)"
    [ -s "$token_file" ] || die "--join $token_file: no token there (bring corral-cp up first)"
    step "join https://$(cp_address):$PORT with the server's token"
    mkdir -p "$(dirname "$AGENT_ENV")"
    (umask 077 && printf 'CORRAL_TOKEN=%s\n' "$(tr -d '\n' <"$token_file")" >"$AGENT_ENV.new")
    mv "$AGENT_ENV.new" "$AGENT_ENV"
    start_service
    exit 0
    ;;
esac
need_self

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
if ! command -v kubectl >/dev/null && [ -x "$KUBECTL_120" ]; then
  ln -sf "$KUBECTL_120" /usr/local/bin/kubectl
fi

step "busybox:latest for the node's agent: $(images_dir)/busybox.tar"
mkdir -p "$(images_dir)"
[ -s "$(images_dir)/busybox.tar" ] || busybox_archive "$(images_dir)/busybox.tar"

name=$(service_name)
step "$name: $(service_argv | tr '\n' ' ')"
unit >"/etc/systemd/system/$name.service.new"
mv "/etc/systemd/system/$name.service.new" "/etc/systemd/system/$name.service"
if [ "$role" = control-plane ]; then
  start_service
  until_ok "$WAIT" "the join token in $SERVER_DATA/token" test -s "$SERVER_DATA/token"
  until_ok "$WAIT" "the API server (kubectl get --raw /readyz)" kc get --raw /readyz
  echo "  serving on https://$(self_address):$PORT; token in $SERVER_DATA/token"
elif [ -f "$AGENT_ENV" ]; then
  start_service  # joined before: restart with the new checkout
else
  echo "  the agent starts once --join has given it the server's token"
fi

if [ "$cgroup" != "$(cgroup_layout)" ]; then
  step "done; cgroup $cgroup applies at the next boot: reboot, then run this with --check"
else
  step "done; this script with --check verifies the node"
fi
