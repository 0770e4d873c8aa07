"""``exec`` on the kubelet's port over a WebSocket, in Kubernetes' remote command protocol
(``channel.k8s.io``, ``v4.channel.k8s.io``, ``v5.channel.k8s.io``).

Every binary message starts with a channel byte: 0 stdin (client to node), 1 stdout, 2 stderr,
3 the error channel (v4 and later: a ``metav1.Status`` JSON written once, at the end; before
v4: the error's text), 4 terminal resizes (``{"Width": w, "Height": h}``, client to node); v5
adds 255, the close signal ``[255, channel]`` a client sends when its stdin ends. The node
writes an empty message on the lowest channel it writes to once the streams are open, runs the
command (``runtime.pod.api``: ``PodRuntime.exec``) in a thread of its own with pipes (or a
pseudo-terminal for ``tty``) for its standard streams, and closes the socket (1000) after the
status."""

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


def _set_size(fd: int, spec: bytes) -> None:
    try:
        size = json.loads(spec)
        width, height = int(size.get("Width") or 0), int(size.get("Height") or 0)
    except (ValueError, TypeError, AttributeError):
        log.info("exec: a resize that is not {Width, Height}: %r", spec[:100])
        return
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


async def _send(ws: web.WebSocketResponse, channel: int, data: bytes) -> None:
    """A message on ``channel``; nothing once the client is gone."""
    if ws.closed:
        return
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_bytes(bytes([channel]) + data)


class _Exec:
    """One exec: the child's ends of its streams, ours, and the socket."""

    def __init__(self, ws: web.WebSocketResponse, tty: bool, stdin: bool, out: bool, err: bool):
        self.ws = ws
        self.tty = tty
        self.child: dict[str, int] = {}  # stream -> the child's fd (closed once it is done)
        self.ours: dict[int, int] = {}  # channel -> our fd (stdin: write end; else read end)
        self.first_size = asyncio.Event()
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

    async def send(self, channel: int, data: bytes) -> None:
        await _send(self.ws, channel, data)

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

    def write_stdin(self, data: bytes) -> None:
        t = self.stdin_transport
        if t is not None and not t.is_closing():
            t.write(data)

    def close_stdin(self) -> None:
        t = self.stdin_transport
        if t is None or t.is_closing():
            return
        if self.tty:
            t.write(b"\x04")  # a terminal's end of file
            return
        t.close()  # after what is buffered is written

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
                self.write_stdin(data)
            elif channel == RESIZE and self.master is not None:
                _set_size(self.master, data)
                self.first_size.set()
            elif channel == CLOSE and data[:1] == bytes([STDIN]):
                self.close_stdin()
        self.close_stdin()


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
    ws = web.WebSocketResponse(protocols=PROTOCOLS, autoping=True, max_msg_size=0)
    await ws.prepare(request)
    proto = ws.ws_protocol or ""
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
        status = status_for(code, error)
        if proto in (V5, V4):
            await ex.send(ERROR, json.dumps(status).encode())
        elif status["status"] != "Success":
            await ex.send(ERROR, status["message"].encode())
        await ws.close()
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


async def attach_websocket(
    request: web.Request,
    runtime: api.PodRuntime,
    uid: str,
    container: str,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> web.WebSocketResponse:
    """The output of ``container``'s current run from now on, in the exec protocol, until
    that run ends (then ``Success``). The runtime serves no container stdin, so what the
    client sends on channel 0 is dropped; its output comes from the container's log (line by
    line: stdout on 1, stderr on 2, both on 1 with ``tty``)."""
    ws = web.WebSocketResponse(protocols=PROTOCOLS, autoping=True, max_msg_size=0)
    await ws.prepare(request)
    proto = ws.ws_protocol or ""
    loop = asyncio.get_running_loop()

    def current_run() -> str | None:
        """The start time of the container's run while it runs, else None."""
        try:
            c = runtime.status(uid).container(container)
        except (api.PodError, KeyError):
            return None
        return c.started_at if c.state == "Running" else None

    run = await loop.run_in_executor(None, current_run)
    first = STDOUT if stdout else STDERR if stderr else ERROR
    await _send(ws, first, b"")
    error: str | None = None
    if run is None:
        error = f"container {container} is not running"
    else:
        error = await _attach_output(ws, runtime, uid, container, stdout, stderr, tty, run)
    status = status_for(0, error)
    if proto in (V5, V4):
        await _send(ws, ERROR, json.dumps(status).encode())
    elif error is not None:
        await _send(ws, ERROR, error.encode())
    await ws.close()
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
