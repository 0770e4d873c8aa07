"""The agent's own process. ``corral agent`` parses and checks its options with click, then
replaces itself (execve, same pid) with this entry, which imports neither click nor any other
command's modules: an idle agent holds for good whatever its process imported (issues #15,
#20: the agent's idle memory; click and what it imports are about 0.6 MiB of it).

The checked configuration reaches the new program through an inherited memfd (a pickle of
the ``AgentConfig``); ``sys.path`` is the one the ``corral`` command ran with, and the process
title is set back to the command line the user typed, for ``ps``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from orchestrator.kubelet import AgentConfig

__all__ = ["exec_agent", "lean_imports", "main"]

# While the agent imports its modules (issue #15: an idle agent holds for good whatever it
# imported): aiohttp builds two default client TLS contexts at import, each loading the whole
# CA bundle file (about 1 MiB apiece) that none of the agent's connections uses (the API's and
# the join's have the cluster CA; image pulls make their own, at pull time, from the
# environment as it was); frozenlist's compiled module costs 1 MiB more than its Python twin,
# which aiohttp only uses for its signal lists. The hashed CA directory stays where it was.
_IMPORT_ENV = {"SSL_CERT_FILE": os.devnull, "FROZENLIST_NO_EXTENSIONS": "1"}
# shutil imports bz2 and lzma (with libbz2 and liblzma: 0.6 MiB) only to list its archive
# formats, which the agent never makes nor unpacks: kept out while its modules are imported,
# they import as ever afterwards (tarfile imports them when it reads a .tar.bz2 or .tar.xz).
_IMPORT_BLOCKED = ("bz2", "lzma")


@contextmanager
def lean_imports() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _IMPORT_ENV}
    os.environ.update(_IMPORT_ENV)
    blocked = [m for m in _IMPORT_BLOCKED if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # type: ignore[assignment]  # an ImportError, as if not built
    try:
        yield
    finally:
        for m in blocked:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def exec_agent(cfg: AgentConfig) -> NoReturn:
    """Run the agent with ``cfg`` in this process, started again as ``main``."""
    import pickle

    fd = os.memfd_create("corral-agent-config", 0)  # no CLOEXEC: the new program reads it
    data = memoryview(pickle.dumps(cfg))
    while data:
        data = data[os.write(fd, data) :]
    os.lseek(fd, 0, os.SEEK_SET)
    title = " ".join(["corral", *sys.argv[1:]])
    code = (
        f"import sys; sys.path[:] = {sys.path!r}; from corral_cli.agent_main import main;"
        f" main({fd}, {title!r})"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-S", "-c", code])


def main(fd: int, title: str) -> NoReturn:
    """The agent process: read the configuration, serve until SIGTERM/SIGINT. Errors end it
    as the ``corral`` command's boundary would: one line, exit status 1."""
    import pickle

    import prctl

    prctl.set_proctitle(title)
    with lean_imports():
        with os.fdopen(fd, "rb") as f:
            cfg = pickle.load(f)  # imports the configuration's modules (orchestrator.kubelet)
        from orchestrator.kubelet import AgentError, JoinError, serve_agent
    try:
        serve_agent(cfg)
    except (AgentError, JoinError) as e:
        print(f"corral: agent: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
