#!/usr/bin/env bash
# Installs everything Corral and its tests need on Debian 12, as root: apt packages, a
# virtualenv in .venv with the project installed (its C core compiled) and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-dev gcc libc6-dev make
  libcap-dev libseccomp-dev pkg-config
  busybox-static iproute2 procps util-linux openssl
  runc crun containerd
  podman skopeo umoci zstd docker-registry apache2-utils
  nftables conntrack iptables iputils-ping containernetworking-plugins
  etcd-server etcd-client
)

# The VM tests (tests/vm): vagrant for `vagrant validate`; qemu and Debian's kernel to boot a
# cgroup v2 VM, on x86_64 only. A host with its own /boot/vmlinuz-* (any Debian install but a
# container) needs no extra kernel. CORRAL_SETUP_VM=0 skips them (the Vagrant nodes do).
# The arm64 VM (tests/vm/test_arm64.py): qemu-system-aarch64 (emulated, TCG) and kmod's depmod;
# its kernel and userland are Debian arm64 packages that tests/vm/arm64.py downloads with a
# private apt configuration on first use (the host's apt is left alone: no foreign
# architecture is added) and caches under /var/cache/corral-test/vm-arm64.
if [ "${CORRAL_SETUP_VM:-1}" != 0 ]; then
  APT_PACKAGES+=(vagrant qemu-system-arm kmod)
  if [ "$(dpkg --print-architecture)" = amd64 ]; then
    APT_PACKAGES+=(qemu-system-x86)
    compgen -G '/boot/vmlinuz-*' >/dev/null || APT_PACKAGES+=(linux-image-amd64)
  fi
fi

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (Corral creates namespaces, mounts and cgroups)" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests start a containerd of their own; a system one that this install started goes.
  if [[ " ${missing[*]} " == *" containerd "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now containerd.service >/dev/null 2>&1 || true
  fi
  # Likewise the registry tests start docker-registry themselves, on ports of their own.
  if [[ " ${missing[*]} " == *" docker-registry "* ]]; then
    if [ -d /run/systemd/system ]; then
      systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
    else
      service docker-registry stop >/dev/null 2>&1 || true
      update-rc.d docker-registry disable >/dev/null 2>&1 || true
    fi
  fi
  # Likewise etcd: the store tests start members of their own on free ports.
  if [[ " ${missing[*]} " == *" etcd-server "* ]]; then
    if [ -d /run/systemd/system ]; then
      systemctl disable --now etcd.service >/dev/null 2>&1 || true
    else
      service etcd stop >/dev/null 2>&1 || true
      update-rc.d etcd disable >/dev/null 2>&1 || true
    fi
  fi
fi

# kubectl 1.20 for the API server tests (tests/kubeserver.py), beside the machine's current
# kubectl: Debian's kubernetes-client unpacked, not installed (its /usr/bin/kubectl would clash
# with another kubectl package).
KUBECTL_120_DIR=/var/cache/corral-test/kubernetes-client
if [ ! -x "$KUBECTL_120_DIR/usr/bin/kubectl" ]; then
  tmp=$(mktemp -d)
  chown _apt "$tmp" 2>/dev/null || chmod 755 "$tmp"  # apt downloads as _apt
  (cd "$tmp" && apt-get download -q kubernetes-client >/dev/null)
  mkdir -p "$KUBECTL_120_DIR"
  dpkg -x "$tmp"/kubernetes-client_*.deb "$KUBECTL_120_DIR"
  rm -rf "$tmp"
fi

# Debian's python3 (>= 3.11 on Debian 12), whatever else is first on PATH.
PY=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# compat editable mode: a plain path entry, no import hook (it costs ~15 ms per CLI start).
.venv/bin/pip install -q --disable-pip-version-check \
  --config-settings editable_mode=compat -e '.[test,etcd]'
# Bytecode now, as a wheel install does: with PYTHONDONTWRITEBYTECODE set, every command would
# otherwise compile the modules it imports at each start (about 25 ms per corral-oci command).
.venv/bin/python -m compileall -q corral_common corral_cli kubemodel runtime images orchestrator >/dev/null
# Likewise the methods @dataclass compiles at each import (runtime/_dataclass_cache.py): about
# 4 ms of every corral-oci create.
.venv/bin/python -m runtime._dataclass_cache >/dev/null
# The commands start without the site module (scripts/fast_entry.py): about 2 ms less a start.
.venv/bin/python scripts/fast_entry.py .venv/bin/corral-oci runtime.cli.oci:main
.venv/bin/python scripts/fast_entry.py .venv/bin/corral corral_cli.main:main
echo "setup: done (.venv/bin/corral-oci, .venv/bin/corral)"
