"""The arm64 guest's userland and kernel, built offline from Debian's package archive.

Nothing here runs arm64 code on the host: the packages' closure is resolved and downloaded by
the host's own ``apt-get`` with a private configuration (architecture arm64, its own lists,
cache and an empty dpkg status under the cache directory, so the host's apt setup is never
touched: no ``dpkg --add-architecture``), then each .deb is unpacked with ``dpkg-deb -x``
(what mmdebstrap's "extract" variant does). No maintainer script runs; the few things they
would have made (``/bin/sh``, ``cc``, passwd and group) are made here. The project's Python
dependencies come from PyPI as manylinux aarch64 wheels (``pip install --target`` with
``--platform``); ``python-prctl`` has no wheel and comes from Debian (python3-prctl).

The result, ``<cache>/arm64-<key>/rootfs``, is the guest's root filesystem (exported read-only
over 9p, with a tmpfs overlay in the guest); its ``boot/vmlinuz-*`` and ``lib/modules`` are the
kernel the harness boots. ``key`` hashes the package list, the wheel list and this file's
build steps, so a change to either builds a new one; an interrupted build leaves only a
``.build-*`` directory that the next build removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.vm.harness import VMUnavailable

CACHE_DIR = Path(os.environ.get("CORRAL_VM_ARM64_CACHE", "/var/cache/corral-test/vm-arm64"))
MIRROR = os.environ.get("CORRAL_VM_ARM64_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"

#: Debian arm64 packages (their dependencies come along): the kernel, a static busybox for the
#: initramfs and the test rootfs, Python, the C toolchain for the cffi core and the C helpers,
#: the tools the pod network may call and the ones the tests use (unshare, sleep).
PACKAGES = (
    "linux-image-arm64",
    "busybox-static",
    "python3",
    "python3-dev",
    "python3-prctl",
    "gcc",
    "libc6-dev",
    "libseccomp-dev",
    "libcap-dev",
    "iproute2",
    "nftables",
    "util-linux",
    "coreutils",
)

#: From PyPI, aarch64 wheels for CPython 3.11 (Debian 12's): pyproject's dependencies but
#: python-prctl, and pytest for the guest's tests.
WHEELS = (
    "aiohttp>=3.9",
    "cffi>=1.16",
    "click>=8.1",
    "cryptography>=41",
    "msgspec>=0.18",
    "pyroute2>=0.9",
    "tarsafe>=0.0.5",
    "PyYAML>=6.0",
    "zstandard>=0.22",
    "isal>=1.6",  # gzip layers (images.digest)
    "pytest>=8",
    "setuptools>=64",
)
PYTHON_VERSION = "3.11"

#: Bump when the build steps change in a way the lists above do not show.
BUILD_FORMAT = 2

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def cache_key() -> str:
    h = hashlib.sha256()
    h.update(f"{BUILD_FORMAT}\n{SUITE}\n{MIRROR}\n".encode())
    h.update("\n".join(PACKAGES).encode() + b"\n--\n" + "\n".join(WHEELS).encode())
    return h.hexdigest()[:16]


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise VMUnavailable(f"{name} not found, needed to build the arm64 guest (apt {package})")
    return path


def _run(argv: list[str], what: str, **kw: object) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).splitlines()[-20:])
        raise VMUnavailable(f"building the arm64 guest: {what} failed ({res.returncode}):\n{tail}")


def _apt_options(apt_dir: Path) -> list[str]:
    """apt-get options for a private arm64 apt: its own sources, lists, cache and an empty
    dpkg status (every package is "not installed"), trusting Debian's archive keyring."""
    return [
        "-o", "APT::Architecture=arm64",
        "-o", "APT::Architectures=arm64",
        "-o", f"Dir::State={apt_dir}/state",
        "-o", f"Dir::State::status={apt_dir}/state/status",
        "-o", f"Dir::Cache={apt_dir}/cache",
        "-o", f"Dir::Etc::SourceList={apt_dir}/sources.list",
        "-o", f"Dir::Etc::SourceParts={apt_dir}/sources.list.d",
        "-o", f"Dir::Etc::Preferences={apt_dir}/preferences",
        "-o", f"Dir::Etc::PreferencesParts={apt_dir}/preferences.d",
        "-o", "APT::Sandbox::User=root",
        "-o", "APT::Install-Recommends=false",
        "-o", "Debug::NoLocking=true",
        "-o", "Acquire::Languages=none",
    ]  # fmt: skip


def download_debs(apt_dir: Path) -> list[Path]:
    """Resolve PACKAGES' closure for arm64 and download it; the .deb paths."""
    apt_get = _tool("apt-get", "apt")
    for d in ("state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (apt_dir / d).mkdir(parents=True, exist_ok=True)
    (apt_dir / "state/status").touch()
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (apt_dir / "sources.list").write_text(
        f"deb [arch=arm64 signed-by={keyring}] {MIRROR} {SUITE} main\n"
        f"deb [arch=arm64 signed-by={keyring}] {MIRROR} {SUITE}-updates main\n"
    )
    opts = _apt_options(apt_dir)
    _run([apt_get, *opts, "-q", "update"], "apt-get update (arm64 lists)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(
        [apt_get, *opts, "-q", "-y", "install", "--download-only", *PACKAGES],
        "apt-get install --download-only (arm64)",
        env=env,
    )
    debs = sorted((apt_dir / "cache/archives").glob("*.deb"))
    if not debs:
        raise VMUnavailable("building the arm64 guest: apt downloaded no packages")
    return debs


def _fixups(root: Path) -> None:
    """What the maintainer scripts that did not run would have made."""
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    (etc / "hostname").write_text("corral-vm\n")
    links = {
        "bin/sh": "dash" if (root / "bin/dash").exists() else "busybox",
        "usr/bin/cc": "gcc",
        "usr/bin/python": "python3",
    }
    for rel, target in links.items():
        p = root / rel
        if not p.exists() and not p.is_symlink():
            p.symlink_to(target)
    for d in ("root", "tmp", "run", "proc", "sys", "dev", "var/tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "var/tmp").chmod(0o1777)
    # modules.dep (the kernel package's postinst runs depmod): the initramfs reads it for the
    # module order, the guest's modprobe for everything the kernel asks for later (veth,
    # nf_tables, ...). The host's depmod reads arm64 modules as well as its own.
    depmod = _tool("depmod", "kmod")
    for version in os.listdir(root / "lib/modules"):
        _run([depmod, "-b", str(root), version], f"depmod {version}")


def install_wheels(root: Path, download_dir: Path) -> None:
    site = root / "usr/local/lib" / f"python{PYTHON_VERSION}" / "dist-packages"
    site.mkdir(parents=True, exist_ok=True)
    _run(
        [
            sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
            "--no-compile", "--only-binary=:all:", "--platform", "manylinux2014_aarch64",
            "--platform", "manylinux_2_28_aarch64", "--platform", "linux_aarch64",
            "--python-version", PYTHON_VERSION, "--implementation", "cp",
            "--target", str(site), "--cache-dir", str(download_dir), *WHEELS,
        ],
        "pip install --target (aarch64 wheels)",
    )  # fmt: skip


def _prune_old(cache_dir: Path, keep: str) -> None:
    with contextlib.suppress(OSError):
        for entry in cache_dir.iterdir():
            if entry.name == keep:
                continue
            if entry.name.startswith(".build-") and time.time() - entry.stat().st_mtime < 3600:
                continue  # perhaps another run's build in progress
            if entry.name.startswith(("arm64-", ".build-")):
                shutil.rmtree(entry, ignore_errors=True)


def userland(cache_dir: Path = CACHE_DIR) -> Path:
    """The arm64 root filesystem, built once per cache key (a few minutes, mostly downloads:
    about 250 MiB of packages and wheels), then reused."""
    key = f"arm64-{cache_key()}"
    final = cache_dir / key
    root = final / "rootfs"
    if (final / "complete").is_file():
        return root
    dpkg_deb = _tool("dpkg-deb", "dpkg")
    cache_dir.mkdir(parents=True, exist_ok=True)
    _prune_old(cache_dir, key)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
    try:
        new_root = build / "rootfs"
        new_root.mkdir()
        for deb in download_debs(build / "apt"):
            _run([dpkg_deb, "-x", str(deb), str(new_root)], f"dpkg-deb -x {deb.name}")
        _fixups(new_root)
        install_wheels(new_root, build / "pip-cache")
        shutil.rmtree(build / "apt", ignore_errors=True)
        shutil.rmtree(build / "pip-cache", ignore_errors=True)
        (build / "complete").write_text(key + "\n")
        try:
            os.rename(build, final)
        except OSError:
            if not (final / "complete").is_file():
                raise
            shutil.rmtree(build, ignore_errors=True)  # a concurrent build won
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return root


if __name__ == "__main__":
    print(userland())
