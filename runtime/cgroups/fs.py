"""The only place that touches cgroup files: every failure becomes a CgroupError naming the file.

cgroupfs files are written with one ``write(2)`` each (the kernel parses a whole value per call)
and opened without O_CREAT, so a missing knob fails with ENOENT instead of creating a plain file
(which matters for the unit tests, whose fake hierarchies are ordinary directories).
"""

from __future__ import annotations

import errno
import os

from runtime.errors import CgroupError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable


def write_file(path: str, value: str) -> None:
    """Write ``value`` to the cgroup file ``path`` in one write(2)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as exc:
        raise CgroupError.from_oserror(f"write {path}", exc) from exc
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise CgroupError.from_oserror(f"write {path}", exc) from exc
    finally:
        os.close(fd)


def write_all(directory: str, writes: Iterable[tuple[str, str]]) -> None:
    """Write ``(file, value)`` pairs in order; a write refused with EINVAL is retried at the end.

    The kernel validates some knobs against their siblings' current values: lowering the CFS
    period can exceed the parent's quota until the new quota is written, raising the burst can
    exceed the old quota, and memory.limit_in_bytes must stay below memory.memsw.limit_in_bytes.
    runc copes by deferring such a write until after the others; this does the same, generically,
    and still reports the error if the retry fails too.
    """
    deferred: list[tuple[str, str]] = []
    for name, value in writes:
        try:
            write_file(os.path.join(directory, name), value)
        except CgroupError as exc:
            if exc.errno != errno.EINVAL:
                raise
            deferred.append((name, value))
    for name, value in deferred:
        write_file(os.path.join(directory, name), value)


def _read_text(path: str) -> str:
    # Bytes, decoded: a text-mode open of "ascii" would look the codec up (an import), and
    # cgroup files hold no "\r" for its newline translation to change.
    with open(path, "rb") as f:
        return f.read().decode("ascii", "replace")


def read_file(path: str) -> str:
    try:
        return _read_text(path)
    except OSError as exc:
        raise CgroupError.from_oserror(f"read {path}", exc) from exc


def read_optional(path: str) -> str | None:
    """The file's text, or None if it does not exist (a knob this kernel or host lacks, or a
    cgroup removed meanwhile: v1 answers ENODEV for the files of a cgroup being removed)."""
    try:
        return _read_text(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise CgroupError.from_oserror(f"read {path}", exc) from exc


def read_int(path: str) -> int | None:
    """A single-number file; None when missing or "max"."""
    text = read_optional(path)
    if text is None:
        return None
    text = text.strip()
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise CgroupError(f"read {path}", errno.EINVAL, f"not a number: {text!r}") from exc


def parse_keyed(text: str | None) -> dict[str, int]:
    """Parse flat-keyed files such as memory.stat, cpu.stat, memory.events, memory.oom_control."""
    out: dict[str, int] = {}
    if not text:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def read_pids(path: str) -> list[int]:
    """The pids listed in a cgroup.procs file; an empty list if the cgroup is gone."""
    text = read_optional(path)
    if text is None:
        return []
    return [int(tok) for tok in text.split()]


def makedirs(path: str) -> list[str]:
    """mkdir -p; returns the directories this call created, outermost first."""
    missing: list[str] = []
    current = os.path.normpath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    created: list[str] = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o755)
        except FileExistsError:
            continue
        except OSError as exc:
            raise CgroupError.from_oserror(f"mkdir {directory}", exc) from exc
        created.append(directory)
    return created
