#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: set up, build a busybox image tarball from
# Debian's busybox-static, import it, and run the example pod (examples/pod.yaml) in the
# foreground until it finishes; then a two-node cluster on this machine (`corral cluster up`)
# running the README's example Deployment and Service (examples/deployment.yaml), asked through
# the Service's ClusterIP from a pod and through its NodePort from the cluster's LAN; then
# remove everything it made.
#
# Pods, images and cgroups go to a temporary directory and below this shell's own cgroup, the
# pod gets no node network (--no-network: it talks over 127.0.0.1 only), and the cluster's
# nodes live in network namespaces of their own that `corral cluster down` removes, so the
# demo leaves the machine as it found it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
work=$(mktemp -d /var/tmp/corral-demo.XXXXXX)
corral=(.venv/bin/corral)
pod=("${corral[@]}" pod --root "$work/pods" --store "$work/images" --cgroup-parent "corral-demo-$$" --no-network)
cleanup() {
  "${corral[@]}" cluster down --data-dir "$work/cluster" >/dev/null 2>&1 || true
  "${pod[@]}" rm -f hello >/dev/null 2>&1 || true
  "${pod[@]}" gc >/dev/null 2>&1 || true
  find /sys/fs/cgroup -maxdepth 8 -type d -name "corral-demo-$$" -exec rmdir {} + 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "+ build busybox.tar (Debian's busybox-static, one layer)"
.venv/bin/python - "$work/busybox.tar" <<'PY'
import sys, tempfile
from pathlib import Path
from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar
from testkit.rootfs import build_rootfs

with tempfile.TemporaryDirectory() as d:
    build_rootfs(Path(d))
    layer = tar_tree(Path(d))
files, _ = docker_files([layer], config_for([layer], Cmd=["sh"]), repo_tags=["busybox:latest"])
write_tar(Path(sys.argv[1]), files)
PY
echo "+ corral image import busybox.tar"
"${corral[@]}" image --store "$work/images" import "$work/busybox.tar"
echo "+ corral pod run examples/pod.yaml"
"${pod[@]}" run examples/pod.yaml
"${pod[@]}" ls

kubectl=$(command -v kubectl || echo /var/cache/corral-test/kubernetes-client/usr/bin/kubectl)
echo "+ corral cluster up --nodes 2 (each node in a network namespace of its own)"
mkdir "$work/images-dir"
cp "$work/busybox.tar" "$work/images-dir/"
"${corral[@]}" cluster up --nodes 2 --data-dir "$work/cluster" --images-dir "$work/images-dir" \
  --cgroup-parent "corral-demo-$$/cluster"
export KUBECONFIG="$work/cluster/kubeconfig"
"$kubectl" get nodes -o wide
echo "+ kubectl apply -f examples/deployment.yaml (3 web servers, Service web: ClusterIP + NodePort 30080)"
"$kubectl" apply -f examples/deployment.yaml
"$kubectl" rollout status deployment/web --timeout=180s
"$kubectl" get pods -o wide -l app=web
"$kubectl" get service web
echo "+ a client pod asks http://web six times: the cluster DNS gives the ClusterIP, its node's proxy a pod"
"$kubectl" apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "for i in 1 2 3 4 5 6; do wget -qO- http://web || echo FAIL; sleep 0.5; done"]
YAML
for _ in $(seq 120); do
  phase=$("$kubectl" get pod client -o jsonpath='{.status.phase}' 2>/dev/null || true)
  [ "$phase" = Succeeded ] || [ "$phase" = Failed ] && break
  sleep 1
done
"$kubectl" get pod client -o wide
"$kubectl" logs client
"$kubectl" logs client | grep -q "hello from web-" || { echo "demo: no answer through the service" >&2; exit 1; }
node_ip=$("$kubectl" get node node-1 -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
echo "+ from the cluster's LAN (a network namespace of its own): http://$node_ip:30080, the NodePort"
for _ in 1 2 3; do
  nsenter --net="$work/cluster/netns/lan" .venv/bin/python -c \
    'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())' \
    "http://$node_ip:30080"
done
"$kubectl" delete -f examples/deployment.yaml --wait=true
"$kubectl" delete pod client --wait=true
echo "+ corral cluster down"
"${corral[@]}" cluster down --data-dir "$work/cluster"
