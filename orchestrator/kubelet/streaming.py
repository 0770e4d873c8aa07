"""``exec`` and ``attach`` on the kubelet's port over a WebSocket, in Kubernetes' remote command
protocol (``channel.k8s.io``, ``v4.channel.k8s.io``, ``v5.channel.k8s.io``).

Every binary message starts with a channel byte: 0 stdin (client to node), 1 stdout, 2 stderr,
3 the error channel (v4 and later: a ``metav1.Status`` JSON written once, at the end; before
v4: the error's text), 4 terminal resizes (``{"Width": w, "Height": h}``, client to node); v5
adds 255, the close signal ``[255, channel]`` a client sends when its stdin ends. The node
writes an empty message on the lowest channel it writes to once the streams are open, runs the
command (``runtime.pod.api``: ``PodRuntime.exec``) in a thread of its own with pipes (or a
pseudo-terminal for ``tty``) for its standard streams, and closes the socket (1000) after the
status. ``attach`` speaks the same protocol (``_Session``: the client's side of both) to a
running container through its monitor (``PodRuntime.attach``) when the container's spec sets
``stdin`` or ``tty``; without either, its output comes from its log."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import struct
import subprocess
import termios
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from aiohttp import WSMsgType, web

from runtime.pod import api

__all__ = [
    "PORTFORWARD_PROTOCOL",
    "PROTOCOLS",
    "exec_websocket",
    "port_forward_websocket",
    "status_for",
]

log = logging.getLogger("corral.agent.exec")

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V1 = "channel.k8s.io"
PROTOCOLS = (V5, V4, V1)

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

# How long a tty exec waits for the client's first size before starting the command (the
# client sends it as soon as the streams are open; a command started earlier sees 0x0).
FIRST_SIZE_WAIT = 1.0


def status_for(code: int | None, error: str | None = None) -> dict[str, Any]:
    """The ``metav1.Status`` the error channel carries: Success, a non-zero exit code (which
    kubectl exits with) or an error running the command."""
    if error is not None:
        return {"metadata": {}, "status": "Failure", "message": error, "reason": "InternalError"}
    if not code:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


async def _send(ws: web.WebSocketResponse, channel: int, data: bytes) -> None:
    """A message on ``channel``; nothing once the client is gone."""
    if ws.closed:
        return
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_bytes(bytes([channel]) + data)


async def _open(request: web.Request) -> tuple[web.WebSocketResponse, str]:
    """The WebSocket of an exec or attach, and the protocol the client and we agreed on."""
    ws = web.WebSocketResponse(protocols=PROTOCOLS, autoping=True, max_msg_size=0)
    await ws.prepare(request)
    return ws, ws.ws_protocol or ""


async def _finish(ws: web.WebSocketResponse, proto: str, status: dict[str, Any]) -> None:
    """The status on the error channel (JSON from v4 on, else only a failure's text), then
    the close (1000)."""
    if proto in (V5, V4):
        await _send(ws, ERROR, json.dumps(status).encode())
    elif status["status"] != "Success":
        await _send(ws, ERROR, status["message"].encode())
    await ws.close()


class _Session(ABC):
    """The client's side of an exec or attach: what it sends (stdin, terminal sizes, v5's
    close signal) is demultiplexed to ``write_stdin``, ``set_size`` and ``close_stdin``."""

    def __init__(self, ws: web.WebSocketResponse, tty: bool) -> None:
        self.ws = ws
        self.tty = tty
        self.first_size = asyncio.Event()

    async def send(self, channel: int, data: bytes) -> None:
        await _send(self.ws, channel, data)

    @abstractmethod
    async def write_stdin(self, data: bytes) -> None: ...

    @abstractmethod
    async def set_size(self, spec: bytes) -> None: ...

    @abstractmethod
    async def close_stdin(self) -> None: ...

    async def read_client(self) -> None:
        """Demultiplex what the client sends until its socket closes."""
        async for msg in self.ws:
            # a text message counts as its bytes, as kube's wsstream reads it (the Python
            # client sends str stdin that way)
            raw = msg.data.encode() if msg.type is WSMsgType.TEXT else msg.data
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT) or not raw:
                continue
            channel, data = raw[0], raw[1:]
            if channel == STDIN and data:
                await self.write_stdin(data)
            elif channel == RESIZE and self.tty:
                await self.set_size(data)
                self.first_size.set()
            elif channel == CLOSE and data[:1] == bytes([STDIN]):
                await self.close_stdin()
        await self.close_stdin()


def _size(spec: bytes) -> tuple[int, int] | None:
    """(width, height) of a resize message (``{"Width": w, "Height": h}``)."""
    try:
        size = json.loads(spec)
        return int(size.get("Width") or 0), int(size.get("Height") or 0)
    except (ValueError, TypeError, AttributeError):
        log.info("a resize that is not {Width, Height}: %r", spec[:100])
        return None


class _Exec(_Session):
    """One exec: the child's ends of its streams, ours, and the socket."""

    def __init__(self, ws: web.WebSocketResponse, tty: bool, stdin: bool, out: bool, err: bool):
        super().__init__(ws, tty)
        self.child: dict[str, int] = {}  # stream -> the child's fd (closed once it is done)
        self.ours: dict[int, int] = {}  # channel -> our fd (stdin: write end; else read end)
        self.stdin_transport: asyncio.WriteTransport | None = None
        if tty:
            master, slave = os.openpty()
            self.child = {"stdin": slave, "stdout": slave, "stderr": slave}
            self.ours = {STDOUT: os.dup(master)}  # the pump's; master: stdin and resizes
            self.master: int | None = master
            return
        self.master = None
        if stdin:
            r, w = os.pipe()
            self.child["stdin"], self.ours[STDIN] = r, w
        if out:
            r, w = os.pipe()
            self.child["stdout"], self.ours[STDOUT] = w, r
        if err:
            r, w = os.pipe()
            self.child["stderr"], self.ours[STDERR] = w, r

    def close_child(self) -> None:
        for fd in set(self.child.values()):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.child = {}

    async def pump(self, channel: int) -> None:
        """Copy one of the child's outputs to its channel until the child's end closes."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        pipe = os.fdopen(self.ours.pop(channel), "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while True:
                try:
                    chunk = await reader.read(65536)
                except OSError:  # EIO: a pty whose last slave closed
                    break
                if not chunk:
                    break
                await self.send(channel, chunk)
        finally:
            transport.close()

    async def stdin_writer(self) -> None:
        loop = asyncio.get_running_loop()
        fd = self.master if self.tty else self.ours.pop(STDIN, None)
        if fd is None:
            return
        if self.tty:
            fd = os.dup(fd)
        pipe = os.fdopen(fd, "wb", buffering=0)
        self.stdin_transport, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)

    async def write_stdin(self, data: bytes) -> None:
        t = self.stdin_transport
        if t is not None and not t.is_closing():
            t.write(data)

    async def set_size(self, spec: bytes) -> None:
        size = _size(spec)
        if self.master is None or size is None:
            return
        with contextlib.suppress(OSError):
            packed = struct.pack("HHHH", size[1], size[0], 0, 0)
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, packed)

    async def close_stdin(self) -> None:
        t = self.stdin_transport
        if t is None or t.is_closing():
            return
        if self.tty:
            t.write(b"\x04")  # a terminal's end of file
            return
        t.close()  # after what is buffered is written


async def exec_websocket(
    request: web.Request,
    runtime: api.PodRuntime,
    uid: str,
    container: str,
    command: Sequence[str],
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> web.WebSocketResponse:
    """Run ``command`` in ``container`` of pod ``uid`` for the client on this WebSocket."""
    ws, proto = await _open(request)
    ex = _Exec(ws, tty, stdin, stdout, stderr and not tty)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[subprocess.CompletedProcess[bytes]] = loop.create_future()
    client = asyncio.create_task(ex.read_client())
    pumps: list[asyncio.Task[None]] = []
    started = False
    try:
        first = STDOUT if stdout else STDERR if stderr and not tty else ERROR
        await ex.send(first, b"")
        await ex.stdin_writer()
        pumps = [asyncio.create_task(ex.pump(ch)) for ch in list(ex.ours)]
        if tty:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ex.first_size.wait(), FIRST_SIZE_WAIT)

        def settle(result: Any, error: BaseException | None) -> None:
            if done.done():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)

        def run() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = runtime.exec(
                    uid,
                    command,
                    container,
                    tty,
                    stdin=ex.child.get("stdin", subprocess.DEVNULL),
                    stdout=ex.child.get("stdout", subprocess.DEVNULL),
                    stderr=ex.child.get("stderr", subprocess.DEVNULL),
                )
            except Exception as e:  # handed to the loop
                error = e
            finally:
                ex.close_child()
            loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=run, name=f"exec-{uid}-{container}", daemon=True).start()
        started = True
        error: str | None = None
        code: int | None = None
        try:
            code = (await done).returncode
        except api.PodError as e:
            error = e.message
        except Exception as e:  # the runtime could not be run at all
            error = f"exec in container {container}: {e}"
        await asyncio.gather(*pumps, return_exceptions=True)
        if ex.stdin_transport is not None:
            ex.stdin_transport.close()
        if ex.master is not None:
            os.close(ex.master)
            ex.master = None
        await _finish(ws, proto, status_for(code, error))
    finally:
        client.cancel()
        for t in pumps:
            t.cancel()
        if not started:  # the command's thread closes the child's ends once it is done
            ex.close_child()
        for fd in ex.ours.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        if ex.master is not None:
            with contextlib.suppress(OSError):
                os.close(ex.master)
    return ws


# ============================================================================= port-forward

PORTFORWARD_PROTOCOL = "v4.channel.k8s.io"  # the kubelet's WebSocket port-forward framing
DATA, PF_ERROR = 0, 1


async def port_forward_websocket(
    request: web.Request, runtime: api.PodRuntime, uid: str, port: int
) -> web.WebSocketResponse:
    """One TCP connection to ``port`` of pod ``uid`` (its loopback, in its network namespace)
    over this WebSocket, in the kubelet's framing: channel 0 the data, channel 1 an error's
    text; the first message on each is the port (2 bytes, little endian). ``[255, 0]`` (v5's
    close signal) from the client ends what it writes (a half-close); the socket closes
    (1000) once the pod's side is done."""
    ws = web.WebSocketResponse(protocols=(PORTFORWARD_PROTOCOL,), autoping=True, max_msg_size=0)
    await ws.prepare(request)
    prefix = struct.pack("<H", port)
    await _send(ws, DATA, prefix)
    await _send(ws, PF_ERROR, prefix)
    loop = asyncio.get_running_loop()
    try:
        sock = await loop.run_in_executor(None, runtime.port_connect, uid, port)
    except (api.PodError, OSError) as e:
        text = e.message if isinstance(e, api.PodError) else str(e)
        await _send(ws, PF_ERROR, f"error forwarding port {port} to pod {uid}: {text}".encode())
        await ws.close()
        return ws
    reader, writer = await asyncio.open_connection(sock=sock)

    async def upstream() -> None:
        async for msg in ws:
            if msg.type is not WSMsgType.BINARY or not msg.data:
                continue
            if msg.data[0] == DATA and len(msg.data) > 1:
                writer.write(msg.data[1:])
                await writer.drain()
            elif msg.data[0] == CLOSE and msg.data[1:2] == bytes([DATA]):
                break
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()

    up = asyncio.create_task(upstream())
    try:
        while chunk := await reader.read(65536):
            await _send(ws, DATA, chunk)
    except OSError as e:
        await _send(ws, PF_ERROR, f"error forwarding port {port}: {e}".encode())
    finally:
        up.cancel()
        writer.close()
        await ws.close()
    return ws


# ============================================================================= attach


class _Attached(_Session):
    """An attach through the container's monitor (``api.Attachment``, a non-blocking
    SOCK_SEQPACKET socket used from the loop). Input goes through a small queue that
    ``writer`` drains once the client's first terminal size is there (as an exec's command
    starts): the size may come on a stream of its own (SPDY), after input that makes the
    container ask for it; a full queue holds the client back."""

    def __init__(self, ws: web.WebSocketResponse, tty: bool, att: api.Attachment) -> None:
        super().__init__(ws, tty)
        self.att = att
        self.stdin_done = False
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)

    async def _put(self, message: bytes) -> None:
        if self.att.sock.fileno() < 0:
            return
        with contextlib.suppress(OSError):
            await asyncio.get_running_loop().sock_sendall(self.att.sock, message)

    async def writer(self) -> None:
        if self.tty:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.first_size.wait(), FIRST_SIZE_WAIT)
        while True:
            message = await self.queue.get()
            await self._put(message)
            self.queue.task_done()

    async def write_stdin(self, data: bytes) -> None:
        if self.att.stdin and not self.stdin_done:
            for message in self.att.stdin_messages(data):
                await self.queue.put(message)

    async def set_size(self, spec: bytes) -> None:
        size = _size(spec)
        if size is not None:
            await self._put(self.att.resize_message(*size))

    async def close_stdin(self) -> None:
        if self.att.stdin and not self.stdin_done:
            self.stdin_done = True
            await self.queue.put(self.att.end_stdin_message())

    async def output(self, stdout: bool, stderr: bool) -> str | None:
        """The container's output to the client until its run ends; an error's text."""
        loop = asyncio.get_running_loop()
        pending = list(self.att.early)
        self.att.early.clear()
        while True:
            try:
                message = (
                    pending.pop(0)
                    if pending
                    else await loop.sock_recv(self.att.sock, self.att.MESSAGE_MAX)
                )
                got = self.att.decode(message)
            except api.PodError as e:
                return e.message
            except OSError as e:
                return f"attach to container {self.att.container}: {e}"
            if got is None:
                return None
            channel, data = got
            channel = STDOUT if self.tty else channel
            if (channel == STDOUT and stdout) or (channel == STDERR and stderr):
                await self.send(channel, data)


async def attach_websocket(
    request: web.Request,
    runtime: api.PodRuntime,
    uid: str,
    container: str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    served: bool,
) -> web.WebSocketResponse:
    """``container``'s output from now on, in the exec protocol, until its run ends (then
    ``Success``), and with ``stdin`` its input. ``served``: the container's spec sets
    ``stdin`` or ``tty``, so its monitor serves the attach (stdin, output as it comes,
    resizes); else its output comes from its log, line by line (stdout on 1, stderr on 2,
    both on 1 with ``tty``), and stdin is refused."""
    ws, proto = await _open(request)
    loop = asyncio.get_running_loop()
    first = STDOUT if stdout else STDERR if stderr and not tty else ERROR
    await _send(ws, first, b"")
    if served:
        try:
            att = await loop.run_in_executor(None, runtime.attach, uid, container, stdin)
        except api.PodError as e:
            await _finish(ws, proto, status_for(0, e.message))
            return ws
        tasks: list[asyncio.Task[Any]] = []
        try:
            att.sock.setblocking(False)
            session = _Attached(ws, tty, att)
            client = asyncio.create_task(session.read_client())
            out = asyncio.create_task(session.output(stdout, stderr))
            tasks = [client, out, asyncio.create_task(session.writer())]
            await asyncio.wait([client, out], return_when=asyncio.FIRST_COMPLETED)
            if not out.done():
                # The client went away: what it sent, and the end of its stdin, go first.
                tasks.append(asyncio.create_task(session.queue.join()))
                await asyncio.wait([tasks[-1], out], return_when=asyncio.FIRST_COMPLETED)
            if out.done():
                await _finish(ws, proto, status_for(0, out.result()))
        finally:
            for t in tasks:
                t.cancel()
            # the socket is closed once no task waits on it any more
            await asyncio.gather(*tasks, return_exceptions=True)
            att.close()
        return ws

    def current_run() -> str | None:
        """The start time of the container's run while it runs, else None."""
        try:
            c = runtime.status(uid).container(container)
        except (api.PodError, KeyError):
            return None
        return c.started_at if c.state == "Running" else None

    run = await loop.run_in_executor(None, current_run)
    error: str | None = None
    if stdin:
        error = f"container {container} does not keep stdin open: its spec does not set stdin: true"
    elif run is None:
        error = f"container {container} is not running"
    else:
        error = await _attach_output(ws, runtime, uid, container, stdout, stderr, tty, run)
    await _finish(ws, proto, status_for(0, error))
    return ws


async def _attach_output(
    ws: web.WebSocketResponse,
    runtime: api.PodRuntime,
    uid: str,
    container: str,
    stdout: bool,
    stderr: bool,
    tty: bool,
    run: str,
) -> str | None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[api.LogLine | None] = asyncio.Queue()
    stop = threading.Event()
    checked = [0.0]

    def ended() -> bool:
        if stop.is_set():
            return True
        now = loop.time()
        if now - checked[0] < 0.5:
            return False
        checked[0] = now
        try:
            c = runtime.status(uid).container(container)
        except (api.PodError, KeyError):
            return True
        return c.state != "Running" or c.started_at != run

    def pump() -> None:
        try:
            skip = len(runtime.log_lines(uid, container, False))
            n = 0
            for line in runtime.follow_log_lines(uid, container, 0.1, ended):
                n += 1
                if n > skip:
                    loop.call_soon_threadsafe(queue.put_nowait, line)
        except api.PodError as e:
            log.info("attach %s/%s: %s", uid, container, e)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    async def drop_input() -> None:
        async for _ in ws:
            pass
        stop.set()  # the client went away

    thread = threading.Thread(target=pump, name=f"attach-{uid}-{container}", daemon=True)
    thread.start()
    reader = asyncio.create_task(drop_input())
    try:
        while (line := await queue.get()) is not None:
            channel = STDERR if line.stream == "stderr" and not tty else STDOUT
            if (channel == STDOUT and stdout) or (channel == STDERR and stderr):
                await _send(ws, channel, f"{line.text}\n".encode())
    finally:
        stop.set()
        reader.cancel()
    return None
