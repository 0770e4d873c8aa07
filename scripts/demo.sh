#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: set up, then run a container from the
# example bundle (a busybox rootfs built from Debian's busybox-static).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x examples/busybox/rootfs/bin/busybox ]; then
  .venv/bin/python -c 'import sys; from pathlib import Path; from tests.rootfs import build_rootfs; build_rootfs(Path(sys.argv[1]))' examples/busybox/rootfs
fi
id="demo-$$"
echo "+ corral-oci run --bundle examples/busybox $id"
.venv/bin/corral-oci run --bundle examples/busybox "$id"
