"""A minimal container rootfs for tests: static busybox, the corral-test helper, users.

``build_rootfs(dest)`` lays it out in ``dest``; ``cached_rootfs(cache_dir)`` builds it once per
input (busybox binary, helper binary, this file) and hands back the same directory after that.
Nothing here needs root: files are owned by whoever builds them.

Layout::

    bin/busybox           Debian's busybox-static
    bin/<applet>          -> busybox, one per ``busybox --list`` entry
    bin/corral-test       testkit/helper/corral-test.c, static
    proc sys dev etc usr/bin home/tester mnt out     0755
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
import time
import warnings
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
    "mnt": 0o755,  # mount points tests give their containers: the tree is shared and
    "out": 0o755,  # read-only, so a runtime must not have to make one in it
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


def tree_manifest(root: Path) -> str:
    """What the tree under ``root`` holds, one line per entry: its path, type and mode, owner
    and size, and a symlink's target or a file's content hash."""
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            what = ""
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            rel = os.path.relpath(path, root)
            lines.append(f"{rel!r} {st.st_mode:o} {st.st_uid}:{st.st_gid} {st.st_size} {what!r}")
    return "\n".join(lines) + "\n"


def manifest_changes(want: str, have: str) -> list[str]:
    """The paths that differ between two manifests: ``+p`` added, ``-p`` gone, ``~p`` changed."""

    def entries(text: str) -> dict[str, str]:
        return {line.split(" ", 1)[0]: line for line in text.splitlines() if line}

    w, h = entries(want), entries(have)
    out = [f"+{p}" for p in h.keys() - w.keys()] + [f"-{p}" for p in w.keys() - h.keys()]
    out += [f"~{p}" for p in w.keys() & h.keys() if w[p] != h[p]]
    return sorted(out, key=lambda x: x[1:])


STALE_AFTER = 6 * 3600  # seconds a replaced tree is kept for whoever still uses it


def cached_rootfs(cache_dir: Path) -> Path:
    """Build the rootfs under ``cache_dir`` once and return it on every later call.

    The directory is named after a hash of its inputs, built in a temp dir and renamed into
    place, so a concurrent or interrupted build never exposes a partial tree. Callers must
    treat it as read-only: copy it, or bind-mount it read-only (and mount only on the
    directories it has). One that did not (a file planted, a mount point made, a mode
    changed) would break every later run that shares the cache: the tree's manifest, written
    next to it when it was built, is checked at each call; a tree that no longer matches is
    moved aside (kept for a while: a test of another run may still use it), a new one is
    built in its place, and a warning names what had changed.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    busybox = find_busybox()
    helper = build_helper(cache_dir / "helper")
    h = hashlib.sha256()
    for part in (busybox.read_bytes(), helper.read_bytes(), Path(__file__).read_bytes()):
        h.update(hashlib.sha256(part).digest())
    final = cache_dir / f"rootfs-{h.hexdigest()[:16]}"
    stamp = cache_dir / f"{final.name}.manifest"
    with open(cache_dir / ".rootfs.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one check, or one build, at a time
        _remove_stale(cache_dir)
        have = tree_manifest(final) if final.is_dir() else None
        try:
            want: str | None = stamp.read_text()
        except FileNotFoundError:
            want = None
        if have is not None and have == want:
            return final
        tmp = Path(tempfile.mkdtemp(prefix=".rootfs-tmp-", dir=cache_dir))
        try:
            build_rootfs(tmp, helper=helper, busybox=busybox)
            built = tree_manifest(tmp)
            staged = stamp.with_name(f".{stamp.name}.tmp")
            staged.write_text(built)
            if have != built:  # (a tree from before the manifests that matches is kept)
                if have is not None:
                    changes = manifest_changes(want or built, have)
                    warnings.warn(
                        f"the shared test rootfs {final} had been written into"
                        f" ({', '.join(changes[:10])}): built again",
                        stacklevel=2,
                    )
                    stale = cache_dir / f".rootfs-stale-{tmp.name}"
                    os.rename(final, stale)
                    os.utime(stale)  # replaced now: kept STALE_AFTER from here
                os.rename(tmp, final)
            os.rename(staged, stamp)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return final


def _remove_stale(cache_dir: Path) -> None:
    """Remove the trees replaced (and the unfinished builds) more than STALE_AFTER ago."""
    now = time.time()
    for p in cache_dir.iterdir():
        if p.name.startswith((".rootfs-stale-", ".rootfs-tmp-")):
            try:
                old = now - p.lstat().st_mtime > STALE_AFTER
            except OSError:
                continue
            if old:
                shutil.rmtree(p, ignore_errors=True)


def _install(src: Path, dst: Path, mode: int) -> None:
    shutil.copyfile(src, dst)
    dst.chmod(mode)


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    path.chmod(mode)
