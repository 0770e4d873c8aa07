#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: set up, build a busybox image tarball from
# Debian's busybox-static, import it, and run the example pod (examples/pod.yaml) in the
# foreground until it finishes; then a two-node cluster on this machine (`corral cluster up`)
# with a web pod on one node reached by name from a pod on the other; then remove everything
# it made.
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
echo "+ a web pod on node-2 behind a headless service, asked by name from a pod on node-1"
"$kubectl" apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node-2
  containers:
  - name: web
    image: busybox:latest
    command: [sh, -c, "mkdir -p /tmp/www && echo hello from node-2 > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: None, selector: {app: web}, ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: busybox:latest
    command: [sh, -c, "until printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 web 8080; do sleep 1; done; exec sleep 3600"]
YAML
for _ in $(seq 120); do
  "$kubectl" logs client 2>/dev/null | grep -q "hello from node-2" && break
  sleep 1
done
"$kubectl" get pods -o wide
"$kubectl" logs client
echo "+ corral cluster down"
"${corral[@]}" cluster down --data-dir "$work/cluster"
