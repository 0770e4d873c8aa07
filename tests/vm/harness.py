"""Boot a throwaway qemu VM on this host's own root filesystem, run one command, get its
stdout, stderr and exit status back separately.

The guest is the Debian kernel (``/boot/vmlinuz-*``, or the one ``linux-image-amd64``
installs) booted directly (no firmware, no bootloader) with a tiny initramfs of static busybox
and the few modules the guest needs (virtio, 9p, overlay, virtio-blk). The initramfs' init:

1. mounts the host's ``/`` read-only over virtio-9p and puts an overlay with a tmpfs upper dir
   on top (the host is never written: everything the guest writes lives in its RAM);
2. mounts a second, writable 9p share (a temp dir of the host) at ``/.corral-vm/out``;
3. switch_roots into the overlay, mounts proc, sysfs, devtmpfs, tmpfs and **only cgroup2** at
   ``/sys/fs/cgroup`` (the kernel runs with ``cgroup_no_v1=all``), so the unified hierarchy
   owns every controller;
4. runs ``out/cmd`` (written by the host) with stdout, stderr and the exit status going to
   ``out/stdout``, ``out/stderr`` and ``out/rc``; then reboots, which ends qemu
   (``-no-reboot``).

Acceleration: real KVM only when kvm_intel or kvm_amd is loaded and /dev/kvm opens; otherwise
TCG (multi-threaded, ``-cpu max``). Machine: ``microvm`` booted from the uncompressed ELF kernel
(PVH) when the host TSC frequency is known (passed as ``tsc_early_khz=``, without which the
guest can hang calibrating its clock), otherwise ``pc``.

The kernel extracted from the bzImage and the initramfs are cached under
``/var/tmp/corral-vm-cache/<kernel version>-<hash of this file's build inputs>``.

Command line (for trying things by hand)::

    python -m tests.vm.harness [--timeout S] [--cwd DIR] [--console] -- COMMAND [ARGS...]

Environment overrides: CORRAL_VM_ACCEL=tcg (even where KVM works), CORRAL_VM_MACHINE=pc|microvm,
CORRAL_VM_TSC_KHZ (0: unknown, hence pc), CORRAL_VM_CACHE (the cache directory).
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import hashlib
import io
import lzma
import os
import platform
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import prctl  # python-prctl: loaded here, not in the forked child

CACHE_DIR = Path(os.environ.get("CORRAL_VM_CACHE", "/var/tmp/corral-vm-cache"))
BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))

#: What the initramfs loads, dependencies first (completed from modules.dep). Missing ones are
#: skipped: a kernel may have them built in.
MODULES = (
    "virtio",
    "virtio_ring",
    "virtio_mmio",
    "virtio_pci",
    "9pnet",
    "9pnet_virtio",
    "netfs",
    "fscache",
    "9p",
    "overlay",
    "virtio_blk",
)

#: The shares' mount tags, and where the results come back inside the guest.
ROOT_TAG = "hostroot"
OUT_TAG = "corralout"
SRC_TAG = "corralsrc"
GUEST_OUT = "/.corral-vm/out"

DEFAULT_MEMORY_MIB = 1024
DEFAULT_CPUS = 2
SCRATCH_DISK_MIB = 64


class VMUnavailable(Exception):
    """This host cannot boot the test VM; the message says why (a pytest skip reason)."""


class VMError(Exception):
    """The VM did not bring back an exit status (crash, hang, timeout); carries the console."""

    def __init__(self, message: str, console: str = "") -> None:
        tail = "\n".join(console.splitlines()[-60:])
        super().__init__(f"{message}\n--- guest console (tail) ---\n{tail}" if tail else message)
        self.console = console


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    rc: int
    out: str
    err: str
    console: str
    seconds: float  # from qemu's start to its exit


@dataclasses.dataclass(frozen=True, slots=True)
class Kernel:
    bzimage: Path
    version: str  # "6.1.0-56-amd64"
    modules: Path  # /lib/modules/<version>


#: The guest architectures: this host's own (x86_64, on its own root filesystem) and aarch64
#: (Debian's arm64 kernel and a userland built by tests/vm/arm64.py, emulated by TCG).
X86_64 = "x86_64"
AARCH64 = "aarch64"


@dataclasses.dataclass(frozen=True, slots=True)
class Accel:
    name: str  # "kvm" or "tcg"
    args: tuple[str, ...]


# ----------------------------------------------------------------------------- host probing


def qemu_binary(arch: str = X86_64) -> str:
    """The qemu-system binary for a guest of ``arch``, or raise VMUnavailable. The x86_64
    guest boots the host's own root filesystem, so only an x86_64 host has one; the aarch64
    guest brings its own and runs anywhere qemu-system-aarch64 does."""
    if arch == AARCH64:
        path = shutil.which("qemu-system-aarch64")
        if path is None:
            raise VMUnavailable("qemu-system-aarch64 not found (apt-get install qemu-system-arm)")
        return path
    machine = platform.machine()
    if machine not in ("x86_64", "amd64"):
        raise VMUnavailable(
            f"the x86_64 VM boots this host's own root filesystem; this host is {machine}"
        )
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        raise VMUnavailable("qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
    return path


def find_kernel(boot: Path = Path("/boot"), modules_root: Path = Path("/lib/modules")) -> Kernel:
    """The newest /boot/vmlinuz-<version> that has its /lib/modules/<version>."""
    found: list[Kernel] = []
    try:
        names = os.listdir(boot)
    except OSError:
        names = []
    for name in names:
        if not name.startswith("vmlinuz-"):
            continue
        version = name.removeprefix("vmlinuz-")
        mods = modules_root / version
        if (mods / "modules.dep").is_file():
            found.append(Kernel(boot / name, version, mods))
    if not found:
        raise VMUnavailable(
            f"no kernel image: no {boot}/vmlinuz-* with its {modules_root}/<version>/modules.dep "
            "(apt-get install linux-image-amd64)"
        )
    return max(found, key=lambda k: _version_key(k.version))


def _version_key(version: str) -> tuple[int | str, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.-]", version))


def busybox_binary() -> Path:
    for path in BUSYBOX_CANDIDATES:
        if path.is_file() and _is_static(path):
            return path
    raise VMUnavailable("no static busybox (apt-get install busybox-static)")


def _is_static(path: Path) -> bool:
    """An ELF without a PT_INTERP program header."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
            return False
        phoff = int.from_bytes(head[32:40], "little")
        phentsize = int.from_bytes(head[54:56], "little")
        phnum = int.from_bytes(head[56:58], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(
        int.from_bytes(table[i * phentsize : i * phentsize + 4], "little") != 3  # PT_INTERP
        for i in range(phnum)
    )


def kvm_usable(sys_module: Path = Path("/sys/module"), dev: str = "/dev/kvm") -> bool:
    """True only for a real KVM: kvm_intel or kvm_amd loaded and /dev/kvm opens read-write.
    (A paravirtual flavour such as kvm_pvm exposes /dev/kvm but cannot run a stock kernel.)"""
    if not any((sys_module / m).is_dir() for m in ("kvm_intel", "kvm_amd")):
        return False
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def accel(use_kvm: bool | None = None, arch: str = X86_64) -> Accel:
    if arch == AARCH64:
        # Emulated (an arm64 host's KVM is not used). cortex-a57 rather than max: TCG
        # emulates max's pointer authentication in software, which slows every call.
        return Accel("tcg", ("-accel", "tcg,thread=multi", "-cpu", "cortex-a57"))
    if use_kvm is None:
        use_kvm = kvm_usable() and os.environ.get("CORRAL_VM_ACCEL", "") != "tcg"
    if use_kvm:
        return Accel("kvm", ("-accel", "kvm", "-cpu", "host"))
    return Accel("tcg", ("-accel", "tcg,thread=multi", "-cpu", "max"))


_TSC_PATTERNS = (
    re.compile(r"tsc: Refined TSC clocksource calibration: (\d+)\.(\d+) MHz"),
    re.compile(r"tsc: Detected (\d+)\.(\d+) MHz"),
)


def parse_tsc_khz(dmesg: str = "", cpuinfo: str = "") -> int | None:
    """The host TSC frequency in kHz, from the kernel log (the refined calibration wins) or,
    when the CPU says its TSC frequency is known and invariant (tsc_known_freq: the "cpu MHz"
    of a VM is then the TSC's), from /proc/cpuinfo. None when unknown."""
    for pattern in _TSC_PATTERNS:
        matches = pattern.findall(dmesg)
        if matches:
            mhz, frac = matches[-1]
            return int(mhz) * 1000 + int((frac + "000")[:3])
    flags = re.search(r"^flags\s*:(.*)$", cpuinfo, re.M)
    mhz = re.search(r"^cpu MHz\s*:\s*(\d+)(?:\.(\d+))?", cpuinfo, re.M)
    if flags and mhz and {"tsc_known_freq", "constant_tsc"} <= set(flags.group(1).split()):
        return int(mhz.group(1)) * 1000 + int(((mhz.group(2) or "") + "000")[:3])
    return None


def host_tsc_khz() -> int | None:
    override = os.environ.get("CORRAL_VM_TSC_KHZ")
    if override:
        return int(override) or None
    dmesg = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        dmesg = subprocess.run(
            ["dmesg"], capture_output=True, text=True, timeout=10, errors="replace"
        ).stdout
    cpuinfo = ""
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    return parse_tsc_khz(dmesg, cpuinfo)


# ----------------------------------------------------------------------------- kernel image

_COMPRESSED = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b\x08", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00", "lzma"),
)


def _decompress_at(data: bytes, offset: int, kind: str) -> bytes:
    """Decompress the stream starting at ``offset``; trailing bytes are ignored."""
    blob = data[offset:]
    if kind == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)
    if kind == "lzma":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(blob)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=io.BytesIO(blob)).read1(1 << 31)
    if kind == "bzip2":
        return bz2.BZ2Decompressor().decompress(blob)
    import zstandard  # a dependency of the project (images)

    return zstandard.ZstdDecompressor().decompressobj().decompress(blob)


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The uncompressed ELF kernel inside a bzImage (what scripts/extract-vmlinux does): try
    each compression magic where it occurs, keep the first result that is an ELF file."""
    if bzimage[:4] == b"\x7fELF":
        return bzimage
    for magic, kind in _COMPRESSED:
        start = 0
        while True:
            pos = bzimage.find(magic, start)
            if pos < 0:
                break
            start = pos + 1
            try:
                out = _decompress_at(bzimage, pos, kind)
            except Exception:  # not a stream after all: try the next match
                continue
            if out[:4] == b"\x7fELF":
                return out
    raise VMUnavailable("could not extract an ELF kernel from the bzImage")


# ----------------------------------------------------------------------------- initramfs


def module_order(modules_dep: str, wanted: Iterable[str]) -> list[str]:
    """Relative paths of ``wanted`` modules and their dependencies, dependencies first, from
    modules.dep text ("kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko ...")."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        if ":" not in line:
            continue
        path, rest = line.split(":", 1)
        deps[path] = rest.split()
        name = os.path.basename(path).split(".ko")[0]
        by_name[name.replace("-", "_")] = path
    ordered: list[str] = []

    def visit(path: str) -> None:
        if path in ordered:
            return
        # modules.dep lists the full closure, most-dependent first: load it backwards.
        for dep in reversed(deps.get(path, [])):
            visit(dep)
        ordered.append(path)

    for name in wanted:
        path = by_name.get(name.replace("-", "_"))
        if path is not None:
            visit(path)
    return ordered


def _read_module(path: Path) -> bytes:
    """A module's bytes, uncompressed (busybox insmod takes plain .ko files)."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


class Cpio:
    """A "newc" cpio archive (what the kernel unpacks as an initramfs), built in memory."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        encoded = name.encode() + b"\0"
        header = "070701" + "".join(
            f"{v:08x}"
            for v in (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        )
        self._ino += 1
        self._buf.write(header.encode() + encoded)
        self._pad()
        self._buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self._buf.write(b"\0" * (-self._buf.tell() % 4))

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._buf.getvalue()


# The initramfs' /init. The modules load in dependency order; on microvm the virtio-mmio
# devices are found through ACPI (Debian's kernel lacks VIRTIO_MMIO_CMDLINE_DEVICES).
INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "corral-vm: $*" >&2; echo "corral-vm: $*" >/dev/kmsg; reboot -f; }
for mod in $(cat /modules/order); do
    insmod "/modules/$mod" 2>/dev/null || echo "corral-vm: insmod $mod failed" >&2
done
mkdir -p /lower /rw /newroot
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose __ROOT_TAG__ /lower \
    || fail "cannot mount the host root over 9p"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || fail "cannot mount the overlay"
mkdir -p /newroot__GUEST_OUT__ /newroot/.corral-vm/bin
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none __OUT_TAG__ \
    /newroot__GUEST_OUT__ || fail "cannot mount the results share"
mkdir -p /newroot/.corral-vm/host
mount --bind /lower /newroot/.corral-vm/host || fail "cannot bind the host root"
if [ -e /newroot__GUEST_OUT__/src-share ]; then
    mkdir -p /newroot/.corral-vm/src
    mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose __SRC_TAG__ \
        /newroot/.corral-vm/src || fail "cannot mount the source share"
fi
cp /bin/busybox /newroot/.corral-vm/bin/busybox
cp /stage2 /newroot/.corral-vm/stage2
for d in proc sys dev; do mount --move /$d /newroot/$d; done
exec switch_root /newroot /.corral-vm/bin/busybox sh /.corral-vm/stage2
"""

# Runs as PID 1 in the overlay root. The command's stdio goes to files on the results share;
# "rc" is written last (through a rename), so its presence means the command finished.
STAGE2 = r"""
bb=/.corral-vm/bin/busybox
out=__GUEST_OUT__
$bb mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
$bb mount -t tmpfs -o mode=1777 tmpfs /tmp
$bb mount -t tmpfs -o mode=0755 tmpfs /run
# The fresh /tmp and /run hide host paths below them; "keep" lists the ones the command needs
# (its cwd, e.g. a checkout under /tmp): each comes back as the host's tree under a tmpfs
# overlay, as the rest of the root is. A guest with a root of its own gets the source share
# at the path "src-share" names, the same way.
keep() {
    i=$((i + 1))
    k=/run/.corral-vm-keep/$i
    $bb mkdir -p $k/upper $k/work "$2"
    $bb mount -t overlay -o "lowerdir=$1,upperdir=$k/upper,workdir=$k/work" overlay "$2" \
        || echo "corral-vm: cannot keep $2" >&2
}
i=0
while read -r p; do
    [ -n "$p" ] && keep "/.corral-vm/host$p" "$p"
done <$out/keep
if [ -s $out/src-share ]; then keep /.corral-vm/src "$($bb cat $out/src-share)"; fi
$bb mkdir -p /dev/pts /dev/shm /dev/mqueue
$bb mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm
$bb mount -t mqueue mqueue /dev/mqueue
$bb ln -sf /proc/self/fd /dev/fd
$bb hostname corral-vm
$bb ip link set lo up
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
export CORRAL_IN_VM=1
echo "corral-vm: running the command" >/dev/kmsg
$bb sh $out/cmd >$out/stdout 2>$out/stderr </dev/null
echo $? >$out/rc.tmp
$bb mv $out/rc.tmp $out/rc
$bb sync
echo "corral-vm: done" >/dev/kmsg
$bb reboot -f
"""


def _scripts() -> tuple[str, str]:
    subst = {
        "__ROOT_TAG__": ROOT_TAG,
        "__OUT_TAG__": OUT_TAG,
        "__SRC_TAG__": SRC_TAG,
        "__GUEST_OUT__": GUEST_OUT,
    }
    init, stage2 = INIT, STAGE2
    for key, value in subst.items():
        init = init.replace(key, value)
        stage2 = stage2.replace(key, value)
    return init, stage2


def build_initramfs(kernel: Kernel, busybox: Path) -> bytes:
    init, stage2 = _scripts()
    dep = (kernel.modules / "modules.dep").read_text()
    order = module_order(dep, MODULES)
    cpio = Cpio()
    for d in ("bin", "dev", "proc", "sys", "modules"):
        cpio.dir(d)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.file("init", init.encode(), 0o755)
    cpio.file("stage2", stage2.encode(), 0o644)
    seen_dirs: set[str] = set()
    for rel in order:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in seen_dirs:
                seen_dirs.add(d)
                cpio.dir("modules/" + d)
        plain = rel.removesuffix(".xz").removesuffix(".gz").removesuffix(".zst")
        cpio.file("modules/" + plain, _read_module(kernel.modules / rel))
    cpio.file("modules/order", "\n".join(r.split(".ko")[0] + ".ko" for r in order).encode())
    return cpio.finish()


#: Bump when build_initramfs changes in a way the scripts and the module list do not show.
INITRAMFS_FORMAT = 1
#: Cache entries unused for this long are removed (by whoever builds a new one).
CACHE_MAX_AGE = 7 * 86400


def _stat_key(paths: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cache_key(kernel: Kernel, busybox: Path) -> tuple[str, str]:
    """(directory, initramfs file name): the kernel version plus a hash of the kernel image
    and modules.dep (size and mtime) names the directory, which holds the extracted kernel;
    a hash of the init scripts, the module list and busybox names the initramfs in it."""
    directory = f"{kernel.version}-{_stat_key([kernel.bzimage, kernel.modules / 'modules.dep'])}"
    h = hashlib.sha256()
    h.update(f"{INITRAMFS_FORMAT}\n{' '.join(MODULES)}\n".encode())
    for text in _scripts():
        h.update(text.encode())
    h.update(_stat_key([busybox]).encode())
    return directory, f"initramfs-{h.hexdigest()[:16]}.cpio"


@dataclasses.dataclass(frozen=True, slots=True)
class BootFiles:
    vmlinux: Path  # what -kernel loads: the ELF vmlinux (x86_64), the arm64 Image (aarch64)
    initramfs: Path
    kernel: Kernel
    arch: str = X86_64
    root: Path = Path("/")  # the directory shared as the guest's root


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temp file and a rename: a concurrent builder's result is as good as
    ours, and an interrupted build leaves no partial file under the final name."""
    fd, tmp = tempfile.mkstemp(prefix=".build-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _prune(cache_dir: Path) -> None:
    """Remove the kernels and initramfs files not used for CACHE_MAX_AGE (boot_files touches
    what it hands out; another checkout's harness may still use an older initramfs)."""
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in cache_dir.iterdir():
            if not entry.is_dir():
                continue
            if now - entry.stat().st_mtime > CACHE_MAX_AGE:
                shutil.rmtree(entry, ignore_errors=True)
                continue
            for initrd in entry.glob("initramfs-*.cpio"):
                if now - initrd.stat().st_mtime > CACHE_MAX_AGE:
                    initrd.unlink(missing_ok=True)


def boot_files(cache_dir: Path = CACHE_DIR, arch: str = X86_64) -> BootFiles:
    """The uncompressed kernel and the initramfs, each built once per cache key. The aarch64
    guest's kernel, modules and busybox come from its own userland (tests/vm/arm64.py, built
    and cached on first use); its kernel is an uncompressed Image that qemu loads as it is."""
    root = Path("/")
    if arch == AARCH64:
        from tests.vm import arm64

        root = arm64.userland()
        kernel = find_kernel(root / "boot", root / "lib/modules")
        busybox = root / "bin/busybox"
        if not _is_static(busybox):
            raise VMUnavailable(f"{busybox} is not a static 64-bit ELF (busybox-static:arm64)")
    else:
        kernel = find_kernel()
        busybox = busybox_binary()
    dirname, initrd_name = cache_key(kernel, busybox)
    dest = cache_dir / dirname
    vmlinux, initramfs = dest / "vmlinux", dest / initrd_name
    if arch == AARCH64:
        vmlinux = kernel.bzimage
    dest.mkdir(parents=True, exist_ok=True)
    built = False
    if not vmlinux.is_file():
        _write_atomic(vmlinux, extract_vmlinux(kernel.bzimage.read_bytes()))
        built = True
    if not initramfs.is_file():
        _write_atomic(initramfs, build_initramfs(kernel, busybox))
        built = True
    for used in (dest, initramfs):
        os.utime(used)  # "used now", for _prune
    if built:
        _prune(cache_dir)
    return BootFiles(vmlinux, initramfs, kernel, arch, root)


# ----------------------------------------------------------------------------- running


def kernel_cmdline(machine: str, tsc_khz: int | None) -> str:
    if machine == "virt":  # aarch64: PL011 console; PSCI ends qemu on reboot
        return " ".join(
            [
                "console=ttyAMA0",
                "panic=-1",
                "cgroup_no_v1=all",
                "rdinit=/init",
                "quiet",
                "loglevel=4",
                "nokaslr",
            ]
        )
    args = [
        "console=ttyS0",
        "reboot=t",  # triple fault: with -no-reboot qemu exits, on every machine type
        "panic=-1",  # a dead init (or anything else fatal) reboots, so qemu exits
        "cgroup_no_v1=all",
        "rdinit=/init",
        "quiet",
        "loglevel=4",
        "nokaslr",
        "no_timer_check",
        "i8042.noaux",
        "i8042.nomux",
        "i8042.nopnp",
        "i8042.dumbkbd",
        "random.trust_cpu=on",
    ]
    if tsc_khz:
        args.append(f"tsc_early_khz={tsc_khz}")
    if machine == "microvm":
        args.append("pci=off")  # microvm without PCIe: its virtio-mmio devices come from ACPI
    return " ".join(args)


def qemu_command(
    qemu: str,
    files: BootFiles,
    out_dir: Path,
    console: Path,
    *,
    machine: str,
    acc: Accel,
    tsc_khz: int | None,
    memory_mib: int,
    cpus: int,
    disk: Path | None,
    src: Path | None = None,
) -> list[str]:
    """The qemu argv: no network, no display, no firmware; the guest's root (the host's, or
    the aarch64 userland) read-only and the results directory writable over 9p; an optional
    raw scratch disk on virtio-blk; an optional read-only source share."""
    mmio = machine == "microvm"
    virtio = "device" if mmio else "pci"
    if mmio:
        mach = "microvm,acpi=on,rtc=on,pcie=off,x-option-roms=off,auto-kernel-cmdline=off"
    elif machine == "virt":
        mach = "virt"
    else:
        mach = "pc"
    cmd = [
        qemu,
        "-M",
        mach,
        *acc.args,
        "-m",
        str(memory_mib),
        "-smp",
        str(cpus),
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-kernel",
        str(files.vmlinux),
        "-initrd",
        str(files.initramfs),
        "-append",
        kernel_cmdline(machine, tsc_khz),
        "-chardev",
        f"file,id=con,path={console}",
        "-serial",
        "chardev:con",
        "-monitor",
        "none",
        "-nic",
        "none",
        "-fsdev",
        f"local,id=fsroot,path={files.root},security_model=none,readonly=on,multidevs=remap",
        "-device",
        f"virtio-9p-{virtio},fsdev=fsroot,mount_tag={ROOT_TAG}",
        "-fsdev",
        f"local,id=fsout,path={out_dir},security_model=none,multidevs=remap",
        "-device",
        f"virtio-9p-{virtio},fsdev=fsout,mount_tag={OUT_TAG}",
    ]
    if src is not None:
        cmd += [
            "-fsdev",
            f"local,id=fssrc,path={src},security_model=none,readonly=on,multidevs=remap",
            "-device",
            f"virtio-9p-{virtio},fsdev=fssrc,mount_tag={SRC_TAG}",
        ]
    if disk is not None:
        cmd += [
            "-drive",
            f"file={disk},format=raw,if=none,id=scratch,cache=unsafe",
            "-device",
            f"virtio-blk-{virtio},drive=scratch",
        ]
    return cmd


def choose_machine(tsc_khz: int | None, acc: Accel, arch: str = X86_64) -> str:
    if arch == AARCH64:
        return "virt"
    forced = os.environ.get("CORRAL_VM_MACHINE")
    if forced:
        return forced
    # KVM gives the guest a stable TSC frequency through CPUID; TCG needs it on the cmdline.
    return "microvm" if (tsc_khz or acc.name == "kvm") else "pc"


def hidden_paths(paths: Sequence[str]) -> list[str]:
    """The paths the guest's fresh /tmp and /run would hide, so they are brought back."""
    out = []
    for p in paths:
        norm = os.path.normpath(os.path.abspath(p))
        if any(norm == top or norm.startswith(top + "/") for top in ("/tmp", "/run")):
            out.append(norm)
    return out


def _command_script(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> str:
    lines = ["set -e"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines += [f"cd {shlex.quote(cwd)}", "set +e", "exec " + shlex.join(argv), ""]
    return "\n".join(lines)


def _set_pdeathsig() -> None:
    """In the child before exec: die with the parent, so a killed test run leaves no qemu."""
    prctl.set_pdeathsig(signal.SIGKILL)


@contextlib.contextmanager
def _workdir(parent: Path | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="corral-vm-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def run(
    argv: Sequence[str],
    *,
    cwd: str = "/",
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    memory_mib: int = DEFAULT_MEMORY_MIB,
    cpus: int = DEFAULT_CPUS,
    scratch_disk: bool = True,
    cache_dir: Path = CACHE_DIR,
    workdir: Path | None = None,
    arch: str = X86_64,
    src: Path | None = None,
    before: Callable[[Path], None] | None = None,
    after: Callable[[Path], None] | None = None,
) -> Result:
    """Boot the VM, run ``argv`` in ``cwd`` (a path of the host's filesystem, seen read-only
    under a writable tmpfs overlay) with ``env`` added to a plain root environment, and return
    its exit status and output. qemu is killed and the temp dir removed whatever happens.

    Raises VMUnavailable when the host cannot run the VM, VMError when the guest did not
    report an exit status (boot failure, crash, or ``timeout`` seconds passed). The temp dir
    (results share, scratch disk, console log) is made in ``workdir`` (default: $TMPDIR).

    ``arch`` AARCH64 boots the arm64 guest (its own root filesystem, see tests/vm/arm64.py);
    ``src``, a host directory, is then shown at the same path (read-only, under a tmpfs
    overlay): the checkout the guest builds and tests. ``before`` and ``after`` are called with
    the results directory (the guest's ``GUEST_OUT``) before the boot and after a run that
    brought back an exit status: files to hand in, files to take out."""
    qemu = qemu_binary(arch)
    files = boot_files(cache_dir, arch)
    acc = accel(arch=arch)
    tsc_khz = host_tsc_khz() if acc.name == "tcg" and arch == X86_64 else None
    machine = choose_machine(tsc_khz, acc, arch)
    with _workdir(workdir) as work:
        out = work / "out"
        out.mkdir()
        (out / "cmd").write_text(_command_script(argv, cwd, env or {}))
        keep = hidden_paths([cwd]) if src is None else []
        (out / "keep").write_text("".join(f"{p}\n" for p in keep))
        if src is not None:
            src = Path(os.path.normpath(os.path.abspath(src)))
            (out / "src-share").write_text(str(src))
        if before is not None:
            before(out)
        disk = None
        if scratch_disk:
            disk = work / "scratch.img"
            with open(disk, "wb") as f:
                f.truncate(SCRATCH_DISK_MIB << 20)
        console = work / "console.log"
        cmd = qemu_command(
            qemu,
            files,
            out,
            console,
            machine=machine,
            acc=acc,
            tsc_khz=tsc_khz,
            memory_mib=memory_mib,
            cpus=min(cpus, os.cpu_count() or 1),
            disk=disk,
            src=src,
        )
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_set_pdeathsig,
        )
        try:
            qemu_out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise VMError(
                f"the VM did not finish within {timeout:.0f} s (killed)",
                _read(console) + _read(out / "stdout")[-4000:] + _read(out / "stderr")[-4000:],
            ) from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        seconds = time.monotonic() - started
        text = _read(console)
        rc_text = _read(out / "rc").strip()
        if not rc_text:
            raise VMError(
                f"the VM exited ({proc.returncode}) without an exit status "
                f"(machine {machine}, accel {acc.name}); qemu said: "
                f"{qemu_out.decode(errors='replace').strip()}",
                text,
            )
        if after is not None:
            after(out)
        return Result(int(rc_text), _read(out / "stdout"), _read(out / "stderr"), text, seconds)


def main(args: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.vm.harness", description=__doc__)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--cwd", default=os.getcwd())
    parser.add_argument("--console", action="store_true", help="print the guest console too")
    parser.add_argument("--arch", choices=(X86_64, AARCH64), default=X86_64)
    parser.add_argument("--src", help="a host directory shown in the guest (aarch64)")
    parser.add_argument("command", nargs="+")
    ns = parser.parse_args(args)
    try:
        res = run(
            ns.command,
            cwd=ns.cwd,
            timeout=ns.timeout,
            arch=ns.arch,
            src=Path(ns.src) if ns.src else None,
        )
    except (VMUnavailable, VMError) as exc:
        print(f"corral-vm: {exc}", file=sys.stderr)
        return 125
    if ns.console:
        sys.stderr.write(res.console)
    sys.stdout.write(res.out)
    sys.stderr.write(res.err)
    print(f"corral-vm: exit {res.rc} after {res.seconds:.1f} s", file=sys.stderr)
    return res.rc


if __name__ == "__main__":
    sys.exit(main())
