"""configMap and secret volumes written as the kubelet's atomic writer does, so that a
container reading them never sees half of an update:

    volumes/<name>/..2026_12_03_02_10_00.123456789/<the files>   one directory per version
    volumes/<name>/..data -> ..2026_12_03_02_10_00.123456789     the current version
    volumes/<name>/<key> -> ..data/<key>                          one per top-level entry

An update writes the new version's directory, points a temporary symlink at it and renames it
over ``..data`` (one atomic step), then adds and removes the top-level links and removes the old
version. Everything is done relative to the volume's directory fd, without following a symlink
a container may have planted (the volume is the pod's)."""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runtime.errors import CorralError
from runtime.pod.record import PodRecord
from runtime.pod.sources import ProjectedFile
from runtime.pod.store import InvalidState, PodDir, PodError, PodState

__all__ = ["DATA", "project", "refresh", "write_projected"]

DATA = "..data"
_TMP = "..data_tmp"


def _version_name() -> str:
    ns = time.time_ns()
    return "..{}.{:09d}".format(time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime(ns // 10**9)),
                                ns % 10**9)  # fmt: skip


def _write_file(dirfd: int, rel: str, source: str, mode: int) -> None:
    """Copy ``source`` to ``rel`` below the directory ``dirfd`` (a fresh version): ``rel``
    must stay inside, directories are made beneath, the file is created O_EXCL|O_NOFOLLOW."""
    from runtime.pod.subpath import check_sub_path, make_dirs_beneath

    why = check_sub_path(rel)
    if why:
        raise CorralError(f"item path {rel!r} {why}")
    parent, _, name = rel.strip("/").rpartition("/")
    try:
        pfd = make_dirs_beneath(dirfd, parent) if parent else os.dup(dirfd)
        _copy_beneath(pfd, name, source, mode)
    except OSError as e:  # two items that cannot both be (a and a/b), '.', ...
        if e.errno == errno.ENOTDIR:
            why = "a component is a file of another item"
        elif e.errno == errno.EEXIST:
            why = "is already a file or directory of the volume"
        else:
            why = f"{e.strerror}: {e.filename}" if e.filename else (e.strerror or str(e))
        raise CorralError(f"item path {rel!r}: {why}") from e


def _copy_beneath(pfd: int, name: str, source: str, mode: int) -> None:
    """Copy ``source`` to a new file ``name`` in the directory ``pfd`` (closed here)."""
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(name, flags, mode, dir_fd=pfd)
        try:
            os.fchmod(out, mode)  # not the umask's
            with open(source, "rb") as src, os.fdopen(out, "wb", closefd=False) as dst:
                shutil.copyfileobj(src, dst)
        finally:
            os.close(out)
    finally:
        os.close(pfd)


def write_projected(vdir: Path, rel: str, source: str, mode: int) -> None:
    """Copy ``source`` to ``rel`` below the directory ``vdir``, as ``project`` writes a
    version's files (beneath it, through no symlink)."""
    vfd = os.open(vdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _write_file(vfd, rel, source, mode)
    finally:
        os.close(vfd)


def _current(vfd: int) -> str | None:
    try:
        target = os.readlink(DATA, dir_fd=vfd)
    except FileNotFoundError:
        return None
    return target if target.startswith("..") and "/" not in target else None


def project(vdir: Path, files: Sequence[ProjectedFile]) -> bool:
    """Make the volume ``vdir`` (an existing directory) show ``files``; False when it already
    showed exactly these (same paths, modes and contents)."""
    vfd = os.open(vdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        old = _current(vfd)
        if old is not None and _same(vdir / old, files):
            return False
        version = _version_name()
        os.mkdir(version, 0o755, dir_fd=vfd)
        dfd = os.open(version, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                      dir_fd=vfd)  # fmt: skip
        try:
            for f in files:
                _write_file(dfd, f.path, f.source, f.mode)
        except BaseException:
            os.close(dfd)
            shutil.rmtree(version, dir_fd=vfd, ignore_errors=True)
            raise
        os.close(dfd)
        try:
            os.unlink(_TMP, dir_fd=vfd)
        except FileNotFoundError:
            pass
        os.symlink(version, _TMP, dir_fd=vfd)
        os.rename(_TMP, DATA, src_dir_fd=vfd, dst_dir_fd=vfd)
        tops = {f.path.strip("/").split("/")[0] for f in files}
        for name in os.listdir(vfd):
            if name.startswith(".."):
                continue
            if name not in tops:
                target = _readlink(vfd, name)
                if target is not None and target.startswith(DATA + "/"):
                    os.unlink(name, dir_fd=vfd)
        for name in sorted(tops):
            if _readlink(vfd, name) is None:
                try:
                    os.symlink(f"{DATA}/{name}", name, dir_fd=vfd)
                except FileExistsError:
                    raise CorralError(
                        f"{vdir}/{name} exists and is not a link of the volume"
                    ) from None
        if old is not None and old != version:
            shutil.rmtree(old, dir_fd=vfd, ignore_errors=True)
        return True
    finally:
        os.close(vfd)


def _readlink(dirfd: int, name: str) -> str | None:
    try:
        return os.readlink(name, dir_fd=dirfd)
    except OSError:
        return None


def _same(version: Path, files: Sequence[ProjectedFile]) -> bool:
    want = {f.path.strip("/"): f for f in files}
    have: set[str] = set()
    for dirpath, _dirs, names in os.walk(version):
        for n in names:
            have.add(os.path.relpath(os.path.join(dirpath, n), version))
    if have != set(want):
        return False
    for rel, f in want.items():
        p = version / rel
        try:
            st = os.lstat(p)
            if (st.st_mode & 0o7777) != f.mode or p.read_bytes() != Path(f.source).read_bytes():
                return False
        except OSError:
            return False
    return True


def refresh(pd: PodDir, volume: str, definition: Mapping[str, Any] | None = None) -> bool:
    """Project a configMap or secret volume of a prepared or running pod again from its
    source (the files its local source holds now): a new version swapped in atomically.
    ``definition`` (the volume as a manifest has it, same name and kind) replaces the one
    in pod.json first (new ``items``). False when nothing changed."""
    from runtime.pod.launch import load_pod
    from runtime.pod.sources import projected_files

    record = pd.record()
    if record is None:
        raise PodError(pd.uid, f"{pd.path}/pod.json is missing")
    if pd.state not in (PodState.PREPARED, PodState.RUNNING):
        raise InvalidState(pd.uid, f"cannot refresh a volume of a pod in {pd.state.value}/")
    if definition is not None:
        record = _with_volume(record, volume, definition)
    try:
        source = load_pod(record).volume(volume).source
    except KeyError:
        raise PodError(pd.uid, f"no volume {volume!r}") from None
    from runtime.pod.manifest import ConfigMapVolume, SecretVolume

    if not isinstance(source, ConfigMapVolume | SecretVolume):
        raise PodError(pd.uid, f"volume {volume!r} is not a configMap or secret volume")
    rel = (record.volumes or {}).get(volume)
    if rel is None:
        raise PodError(pd.uid, f"volume {volume!r} was not made")
    if definition is not None:
        pd.write_record(record)  # validated by load_pod above
    try:
        return project(pd.path / rel, projected_files(source))
    except (OSError, CorralError) as e:
        raise PodError(pd.uid, f"refresh volume {volume!r}: {e}") from e


def _with_volume(record: PodRecord, volume: str, definition: Mapping[str, Any]) -> PodRecord:
    if definition.get("name") != volume:
        raise PodError(record.uid, f"the new definition of volume {volume!r} names another")
    manifest = dict(record.manifest or {})
    spec = dict(manifest.get("spec") or {})
    old = [v for v in spec.get("volumes") or [] if v.get("name") == volume]
    kinds = {k for k in ("configMap", "secret") if old and k in old[0]}
    if not old or not kinds or not kinds <= set(definition):
        raise PodError(record.uid, f"volume {volume!r}: only the same kind can replace it")
    spec["volumes"] = [dict(definition) if v.get("name") == volume else v
                       for v in spec.get("volumes") or []]  # fmt: skip
    manifest["spec"] = spec
    return record.replace(manifest=manifest)
