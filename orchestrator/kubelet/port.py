"""The kubelet's port, bound and listening from the agent's start, served from its first
connection on: the HTTPS server behind it (``orchestrator.kubelet.server``: aiohttp's web
server and the streaming protocols, some 3 MiB of modules an agent keeps for good once
imported) is imported then. An idle node, which nobody has asked for logs, exec, attach or a
port forward, does without it. A port that cannot be bound, or a serving certificate that
cannot be loaded, still fails the start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.client import Obj
from runtime.pod import api

if TYPE_CHECKING:
    from .server import KubeletServer

__all__ = ["KubeletPort", "serving_context"]

log = logging.getLogger("corral.agent.server")

BACKLOG = 128  # asyncio's default for a server


def serving_context(cert: Path, key: Path, ca_pem: bytes) -> ssl.SSLContext:
    """The kubelet's TLS: its serving certificate; clients need one of the cluster CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=ca_pem.decode())
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class KubeletPort:
    """``start`` binds and listens; the first connection starts the ``KubeletServer``, which
    accepts it and the ones after."""

    def __init__(
        self,
        runtime: api.PodRuntime,
        find_pod: Callable[[str], Obj | None],
        cert: Path,
        key: Path,
        ca_pem: bytes,
        list_pods: Callable[[], list[Obj]] | None = None,
    ) -> None:
        self.runtime = runtime
        self.find_pod = find_pod
        self.list_pods = list_pods
        self.cert, self.key, self.ca_pem = cert, key, ca_pem
        self.server: KubeletServer | None = None  # once a connection came
        self._sock: socket.socket | None = None
        self._ctx: ssl.SSLContext | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        """Listen on host:port; with ``sock`` (a fresh TCP socket, made in the node's network
        namespace, say), bind that one to it."""
        self._ctx = serving_context(self.cert, self.key, self.ca_pem)
        if sock is None:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._first_connection)
        log.info("kubelet serving on https://%s:%d", host, port)

    def _first_connection(self) -> None:
        assert self._sock is not None
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._task = asyncio.create_task(self._serve(self._sock), name="kubelet-server")

    async def _serve(self, sock: socket.socket) -> None:
        assert self._ctx is not None
        try:
            from .server import KubeletServer

            server = KubeletServer(
                self.runtime, self.find_pod, self.cert, self.key, self.ca_pem, self.list_pods
            )
            self.server = server
            await server.serve(sock, self._ctx)
        except Exception:  # the node runs on; its port refuses connections from now on
            log.exception("kubelet: cannot serve on its port")
            sock.close()

    async def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._task is None:
            with contextlib.suppress(ValueError, OSError):  # closed already: nothing to remove
                asyncio.get_running_loop().remove_reader(sock.fileno())
        else:
            await asyncio.gather(self._task, return_exceptions=True)
        if self.server is not None:
            await self.server.stop()
        sock.close()
