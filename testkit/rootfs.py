"""A minimal container rootfs for tests: static busybox, the corral-test helper, users.

``build_rootfs(dest)`` lays it out in ``dest``; ``cached_rootfs(cache_dir)`` builds it once per
input (busybox binary, helper binary, this file) and hands back the same directory after that.
Nothing here needs root: files are owned by whoever builds them.

Layout::

    bin/busybox           Debian's busybox-static
    bin/<applet>          -> busybox, one per ``busybox --list`` entry
    bin/corral-test       testkit/helper/corral-test.c, static
    proc sys dev etc usr/bin home/tester     0755
    tmp                   1777
    root                  0700
    etc/passwd etc/group  root 0, daemon 1, nobody 65534, tester 1000; group extra 2000 (tester)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import BinaryIO

from testkit.helper.build import build_helper

BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))

REQUIRED_APPLETS = (
    "sh", "true", "false", "echo", "cat", "ls", "sleep", "id", "hostname", "env", "mount",
    "ps", "kill", "mkdir", "touch", "grep", "head", "wc", "printf",
)  # fmt: skip

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
tester:x:1000:1000:tester:/home/tester:/bin/sh
"""

GROUP = """\
root:x:0:
daemon:x:1:
tester:x:1000:
extra:x:2000:tester
nogroup:x:65534:
"""

_DIRS = {
    "bin": 0o755,
    "proc": 0o755,
    "sys": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "tmp": 0o1777,
    "root": 0o700,
    "usr": 0o755,
    "usr/bin": 0o755,
    "home": 0o755,
    "home/tester": 0o755,
}

_PT_INTERP = 3


class RootfsError(Exception):
    """The test rootfs could not be built."""


class BusyboxMissing(RootfsError):
    """No static busybox on this machine (Debian package busybox-static)."""


class NotElf(RootfsError):
    """The file is not an ELF file."""


def elf_interpreter(path: Path | str) -> str | None:
    """The program interpreter (PT_INTERP) an ELF file names, None if it names none;
    ``NotElf`` if it is not an ELF file."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2):
            raise NotElf(f"{path}: not an ELF file")
        is64 = ident[4] == 2
        end = "<" if ident[5] == 1 else ">"
        if is64:
            phoff, phentsize, phnum = _unpack(f, end + "16xQ14xHH", 0x10)
        else:
            phoff, phentsize, phnum = _unpack(f, end + "12xI10xHH", 0x10)
        for i in range(phnum):
            (p_type,) = _unpack(f, end + "I", phoff + i * phentsize)
            if p_type == _PT_INTERP:
                # Elf64_Phdr: type, flags, offset, vaddr, paddr, filesz; Elf32: type, offset,
                # vaddr, paddr, filesz
                phdr = end + ("I4xQ8x8xQ" if is64 else "II4x4xI")
                _, p_offset, p_filesz = _unpack(f, phdr, phoff + i * phentsize)
                f.seek(p_offset)
                return f.read(p_filesz).rstrip(b"\0").decode()
    return None


def is_static_elf(path: Path) -> bool:
    """True if ``path`` is an ELF executable without a program interpreter."""
    try:
        return elf_interpreter(path) is None
    except NotElf:
        return False


def _unpack(f: BinaryIO, fmt: str, offset: int) -> tuple[int, ...]:
    f.seek(offset)
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise RootfsError("truncated ELF file")
    return struct.unpack(fmt, data)


def find_busybox() -> Path:
    """The host's static busybox, or ``BusyboxMissing``."""
    for path in BUSYBOX_CANDIDATES:
        if path.is_file() and is_static_elf(path):
            return path
    where = " or ".join(map(str, BUSYBOX_CANDIDATES))
    raise BusyboxMissing(f"no static busybox at {where} (install busybox-static)")


def _applets(busybox: Path) -> list[str]:
    try:
        out = subprocess.run(
            [str(busybox), "--list"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RootfsError(f"{busybox} --list failed: {e}") from e
    names = sorted({n for n in out.split() if n and "/" not in n and n not in ("busybox", ".")})
    missing = [a for a in REQUIRED_APPLETS if a not in names]
    if missing:
        raise RootfsError(f"{busybox} lacks applets: {', '.join(missing)}")
    return names


def build_rootfs(dest: Path, helper: Path | None = None, busybox: Path | None = None) -> Path:
    """Create the test rootfs in ``dest`` (absent or empty) and return ``dest``.

    ``helper`` is a built corral-test binary; without it one is compiled into a temp dir.
    ``busybox`` defaults to ``find_busybox()``.
    """
    busybox = busybox or find_busybox()
    if not is_static_elf(busybox):
        raise BusyboxMissing(f"{busybox} is not a static executable (install busybox-static)")
    applets = _applets(busybox)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise RootfsError(f"{dest} is not empty")
    dest.chmod(0o755)

    for rel, mode in _DIRS.items():
        d = dest / rel
        d.mkdir(exist_ok=True)
        d.chmod(mode)  # explicit: mkdir is subject to the umask

    bindir = dest / "bin"
    _install(busybox, bindir / "busybox", 0o755)
    for name in applets:
        if name != "corral-test":
            os.symlink("busybox", bindir / name)
    if helper is None:
        with tempfile.TemporaryDirectory(prefix="corral-helper-") as tmp:
            _install(build_helper(Path(tmp)), bindir / "corral-test", 0o755)
    else:
        _install(helper, bindir / "corral-test", 0o755)

    _write(dest / "etc/passwd", PASSWD, 0o644)
    _write(dest / "etc/group", GROUP, 0o644)
    return dest


def tree_fingerprint(root: Path) -> str:
    """A hash of what the tree under ``root`` holds: every entry's path, type, mode, owner and
    size, a symlink's target and a file's content."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            h.update(f"{rel}\0{st.st_mode:o} {st.st_uid} {st.st_gid} {st.st_size} ".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.fsencode(os.readlink(path)))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
            h.update(b"\n")
    return h.hexdigest()


def cached_rootfs(cache_dir: Path) -> Path:
    """Build the rootfs under ``cache_dir`` once and return it on every later call.

    The directory is named after a hash of its inputs, built in a temp dir and renamed into
    place, so a concurrent or interrupted build never exposes a partial tree. Callers must
    treat it as read-only: copy it, or bind-mount it read-only. One that did not (a file
    planted, a mode changed) would break every later run that shares the cache: the tree's
    fingerprint, written next to it when it was built, is checked at each call, and a tree
    that no longer matches it is replaced by a new build.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    busybox = find_busybox()
    helper = build_helper(cache_dir / "helper")
    h = hashlib.sha256()
    for part in (busybox.read_bytes(), helper.read_bytes(), Path(__file__).read_bytes()):
        h.update(hashlib.sha256(part).digest())
    final = cache_dir / f"rootfs-{h.hexdigest()[:16]}"
    stamp = cache_dir / f"{final.name}.fingerprint"
    with open(cache_dir / ".rootfs.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one check, or one build, at a time
        have = tree_fingerprint(final) if final.is_dir() else None
        try:
            if have is not None and stamp.read_text() == have:
                return final
        except FileNotFoundError:
            pass
        tmp = Path(tempfile.mkdtemp(prefix=".rootfs-tmp-", dir=cache_dir))
        try:
            build_rootfs(tmp, helper=helper, busybox=busybox)
            want = tree_fingerprint(tmp)
            staged = stamp.with_name(f".{stamp.name}.tmp")
            staged.write_text(want)
            if have != want:  # (a tree from before the fingerprints that matches is kept)
                if have is not None:
                    os.rename(final, tmp.with_name(tmp.name.replace("-tmp-", "-stale-")))
                os.rename(tmp, final)
            os.rename(staged, stamp)
        finally:
            for left in (tmp, tmp.with_name(tmp.name.replace("-tmp-", "-stale-"))):
                if left.exists():
                    shutil.rmtree(left)
    return final


def _install(src: Path, dst: Path, mode: int) -> None:
    shutil.copyfile(src, dst)
    dst.chmod(mode)


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    path.chmod(mode)
