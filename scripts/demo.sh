#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: set up, build a busybox image tarball from
# Debian's busybox-static, import it, and run the example pod (examples/pod.yaml) in the
# foreground until it finishes; then remove everything it made.
#
# Pods, images and cgroups go to a temporary directory and below this shell's own cgroup, and
# the pod gets no node network (--no-network: it talks over 127.0.0.1 only), so the demo
# leaves the machine as it found it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
work=$(mktemp -d /var/tmp/corral-demo.XXXXXX)
corral=(.venv/bin/corral)
pod=("${corral[@]}" pod --root "$work/pods" --store "$work/images" --cgroup-parent "corral-demo-$$" --no-network)
cleanup() {
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
