"""What the report says about the machine and the versions; where this process's cgroups are."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from corral_common import hostsys

REPO = Path(__file__).resolve().parent.parent
CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True, slots=True)
class CgroupMount:
    mountpoint: str
    root: str  # the mount's root inside its hierarchy
    fstype: str  # cgroup or cgroup2
    options: frozenset[str]  # super options: controllers, name=...


def parse_cgroup_mounts(mountinfo: str) -> list[CgroupMount]:
    return [
        CgroupMount(
            mountpoint=m.mountpoint,
            root=m.root,
            fstype=m.fstype,
            options=frozenset(m.super_options.split(",")),
        )
        for m in hostsys.parse_mountinfo(mountinfo)
        if m.fstype in ("cgroup", "cgroup2")
    ]


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``{"memory": "/x", "name=systemd": "/", "": "/"}`` ("" is the cgroup2 line)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for name in parts[1].split(",") if parts[1] else [""]:
            out[name] = parts[2]
    return out


def own_dir(mount: CgroupMount, own: dict[str, str]) -> str | None:
    """The directory of this process's own cgroup in ``mount``'s hierarchy, if visible."""
    if mount.fstype == "cgroup2":
        path = own.get("")
    else:
        path = next((own[o] for o in sorted(mount.options) if o in own and o), None)
    if path is None:
        return None
    rel = os.path.relpath(path, mount.root)
    if rel.startswith(".."):
        return None
    return os.path.normpath(os.path.join(mount.mountpoint, rel))


def cgroup_mounts() -> list[CgroupMount]:
    return parse_cgroup_mounts(hostsys.read_mountinfo())


def self_cgroup() -> dict[str, str]:
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        return parse_proc_cgroup(f.read())


def cgroup_layout() -> str:
    from runtime.cgroups import detect_layout

    layout = detect_layout(CGROUP_ROOT).value
    if layout == "hybrid":
        try:
            with open(os.path.join(CGROUP_ROOT, "unified", "cgroup.controllers")) as f:
                ctl = f.read().strip() or "none"
        except OSError:
            ctl = "?"
        return f"hybrid (v1 controllers; cgroup2 at {CGROUP_ROOT}/unified with: {ctl})"
    return layout


def remove_cgroup_everywhere(name: str) -> list[str]:
    """rmdir ``name`` (a relative cgroupsPath) below this process's own cgroup in every
    hierarchy, deepest directories first; return what could not be removed."""
    own = self_cgroup()
    left = []
    for mount in cgroup_mounts():
        base = own_dir(mount, own)
        if base is None:
            continue
        top = os.path.join(base, name)
        if os.path.isdir(top):
            left += remove_tree_dirs(top)
    return left


def remove_tree_dirs(top: str) -> list[str]:
    """rmdir ``top`` and every directory below it, deepest first (a cgroup holds only
    directories to remove); return what could not be removed (gone is fine)."""
    return remove_dirs([d for d, _dirs, _files in os.walk(top)])


def remove_dirs(dirs: list[str]) -> list[str]:
    """rmdir ``dirs``, deepest first; return what could not be removed (gone is fine)."""
    left = []
    for d in sorted(dirs, key=len, reverse=True):
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            left.append(d)
    return left


# Our packages, as the wheel lists them (pyproject.toml [tool.setuptools] packages).
PACKAGES = ("corral_common", "corral_cli", "kubemodel", "runtime", "images", "orchestrator")


def compile_bytecode() -> None:
    """Compile our packages' bytecode where it is missing or stale, as pip does when it
    installs a wheel: the commands under test then start as an installed Corral does. A
    checkout run with PYTHONDONTWRITEBYTECODE set would otherwise compile every module it
    imports from source at each start (about 25 ms per corral-oci command). Likewise the
    table of the methods @dataclass compiles (runtime._dataclass_cache), as scripts/setup.sh
    fills it: in a process of its own, which this one's dataclasses are not part of."""
    import compileall

    for pkg in PACKAGES:
        if not compileall.compile_dir(str(REPO / pkg), quiet=1):
            raise OSError(f"compileall {pkg}: a module does not compile")
    subprocess.run(
        [sys.executable, "-m", "runtime._dataclass_cache"],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    lines = [x for x in out.stdout.splitlines() if x.strip()]
    return lines[0].strip() if lines else "unknown"


def _runc_version() -> str:
    binary = shutil.which("runc")
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    lines = out.stdout.splitlines()
    first = lines[0].strip() if lines else "unknown"
    commit = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("commit:")), "")
    return f"{first} ({commit})" if commit else first


#: What a run writes: a change to these alone does not make the tree dirty.
OUTPUTS = ("bench/RESULTS.md", "bench/results.json")


def dirty_paths(porcelain: str) -> list[str]:
    """Tracked files with changes, from ``git status --porcelain``, the outputs left out."""
    out = []
    for line in porcelain.splitlines():
        path = line[3:].split(" -> ")[-1].strip()
        if path and path not in OUTPUTS:
            out.append(path)
    return out


def tree_state() -> tuple[str, list[str]]:
    """The commit checked out (full id, "unknown" outside git) and the tracked files changed
    since (the outputs aside)."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        )
        return out.stdout

    rev = git("rev-parse", "HEAD").strip() or "unknown"
    return rev, dirty_paths(git("status", "--porcelain", "--untracked-files=no"))


def describe_rev(rev: str, dirty: list[str]) -> str:
    if not dirty:
        return rev
    shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
    return f"{rev} plus uncommitted changes ({shown})"


def corral_rev() -> str:
    return describe_rev(*tree_state())


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cores": str(os.cpu_count() or 0),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "cgroup layout": cgroup_layout(),
        "load average at the end (1, 5, 15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def versions() -> dict[str, str]:
    crun = shutil.which("crun")
    podman = shutil.which("podman")
    conmon = shutil.which("conmon")
    return {
        "corral": corral_rev(),
        "runc": _runc_version(),
        "crun": _first_line([crun, "--version"]) if crun else "not installed",
        "podman": _first_line([podman, "--version"]) if podman else "not installed",
        "conmon": _first_line([conmon, "--version"]) if conmon else "not installed",
        "python": platform.python_version() + f" ({sys.executable})",
    }
