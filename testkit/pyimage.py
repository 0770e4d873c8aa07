"""A test image with this machine's Python and the packages a program imports, on top of the
busybox test rootfs: for pods that run real clients (the ``kubernetes`` Python client) with
no registry and no network.

``python_rootfs(base, dest, modules)`` copies ``base`` and adds, at the paths they have here:
the interpreter (``PYTHON`` names it), the whole standard library but its tests, tools and
build files, every shared library the interpreter and the extension modules link (``ldd``),
and ``lib``/``lib64`` links into ``usr`` as merged-usr Debian has them. The third-party modules
are the ones importing ``modules`` loads (traced in a child interpreter: ``sys.modules``), with
their compiled ``__pycache__`` files and the data files beside them (``certifi``'s
``cacert.pem``), and the packages named ``whole`` entirely; they go to ``SITE``, which the
image's ``PYTHONPATH`` names. A module the program imports later, lazily, from elsewhere is
missing: its ImportError says so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

__all__ = ["PYTHON", "PYTHON_ENV", "SITE", "python_rootfs"]

PYTHON = "/usr/bin/python3"  # in the image: the interpreter
SITE = "/opt/python"
PYTHON_ENV = [f"PYTHONPATH={SITE}", "PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"]
# Parts of the standard library no client needs (tests, GUI, build files, installers).
_SKIP = re.compile(
    r"^(test|idlelib|tkinter|turtledemo|ensurepip|lib2to3|pydoc_data|distutils|config-.*)$"
)

_TRACE = """
import importlib.util, json, sys
for name in sys.argv[1:]:
    __import__(name)
files = []
for mod in list(sys.modules.values()):
    f = getattr(mod, "__file__", None)
    if f:
        files.append(f)
        if f.endswith(".py"):
            try:
                files.append(importlib.util.cache_from_source(f))
            except NotImplementedError:
                pass
print(json.dumps(files))
"""


def _copy(src: Path, root: Path, dest: str | None = None) -> None:
    """``src`` (a file or symlink) to ``root``/``dest`` (default: its own absolute path)."""
    target = root / (dest or str(src)).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        return
    if src.is_symlink():
        os.symlink(os.readlink(src), target)
        _copy(src.resolve(), root)  # what it points at, at its own path
    elif src.is_file():
        shutil.copy2(src, target)


def _libraries(binaries: list[Path]) -> set[Path]:
    """The shared libraries ``binaries`` link, their loader included (``ldd``)."""
    out = subprocess.run(
        ["ldd", *map(str, binaries)], capture_output=True, text=True, check=False
    ).stdout
    found = set()
    for line in out.splitlines():
        # "\tlibc.so.6 => /lib/.../libc.so.6 (0x...)" or "\t/lib64/ld-linux-x86-64.so.2 (0x...)"
        if line.startswith("\t"):
            path = line.split("=>")[-1].split()[0]
            if path.startswith("/"):
                found.add(Path(path))
    return found


def python_rootfs(
    base: Path, dest: Path, modules: tuple[str, ...], whole: tuple[str, ...] = ()
) -> Path:
    """``dest``: ``base`` with this machine's Python and what ``modules`` import; the
    packages ``whole`` entirely (their sources: a package that imports its modules on first
    use, as the kubernetes client's models)."""
    shutil.copytree(base, dest, symlinks=True)
    for name in ("lib", "lib64"):
        (dest / "usr" / name).mkdir(parents=True, exist_ok=True)
        if not (dest / name).exists():
            (dest / name).symlink_to(f"usr/{name}")
    python = Path(os.path.realpath(sys.executable))
    _copy(python, dest)
    link = dest / PYTHON.lstrip("/")
    if not link.exists():
        link.symlink_to(python.name)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = Path(sysconfig.get_config_var("DESTSHARED") or stdlib / "lib-dynload")
    for dirpath, dirnames, filenames in os.walk(stdlib):
        if Path(dirpath) == stdlib:
            dirnames[:] = [d for d in dirnames if not _SKIP.match(d) and d != "site-packages"]
        for f in filenames:
            _copy(Path(dirpath, f), dest)
    extensions = sorted(dynload.glob("*.so")) if dynload.is_dir() else []
    for ext in extensions:
        _copy(ext, dest)
    traced = subprocess.run(
        [sys.executable, "-c", _TRACE, *modules], capture_output=True, text=True, check=True
    ).stdout
    sites = {Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    packages: set[Path] = set()
    native: list[Path] = []
    for name in json.loads(traced):
        path = Path(name)
        site = next((s for s in sites if path.is_relative_to(s)), None)
        if site is None or not path.exists():
            continue  # the standard library's (copied above) or a frozen module
        _copy(path, dest, f"{SITE}/{path.relative_to(site)}")
        if path.suffix == ".so":
            native.append(path)
        if path.parent != site and path.parent.name != "__pycache__":
            packages.add(path.parent)
    for pkg in packages:  # the data files beside the modules
        site = next(s for s in sites if pkg.is_relative_to(s))
        for f in pkg.iterdir():
            if f.is_file() and f.suffix not in (".py", ".pyc", ".pyi", ".so"):
                _copy(f, dest, f"{SITE}/{f.relative_to(site)}")
    for name in whole:
        top = Path(importlib.util.find_spec(name).origin or "").parent  # type: ignore[union-attr]
        site = next(s for s in sites if top.is_relative_to(s))
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for f in filenames:
                path = Path(dirpath, f)
                if path.suffix != ".pyc":
                    _copy(path, dest, f"{SITE}/{path.relative_to(site)}")
                    if path.suffix == ".so":
                        native.append(path)
    for lib in _libraries([python, *extensions, *native]):
        _copy(lib, dest)
    return dest
