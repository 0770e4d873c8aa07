"""A pod's containers from outside: their logs (current and previous run, or followed across
restarts and rotations), exec, attach (the monitor's attach socket of a container whose spec
sets ``stdin`` or ``tty``), and TCP connections to the pod's own ports (port-forward)."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from runtime.pod.logs import LogLine
from runtime.pod.prepare import PodOptions
from runtime.pod.store import InvalidState, PodDir, PodError, PodState

__all__ = [
    "Attachment",
    "Stdio",
    "attach",
    "container_names",
    "exec_in",
    "follow_log_lines",
    "follow_logs",
    "log_lines",
    "logs",
    "port_connect",
]

Stdio = int | IO[Any] | None  # as subprocess.run takes it


def container_names(pd: PodDir, container: str | None) -> list[str]:
    """The pod's containers, or just ``container`` when the pod has it."""
    names = pd.record_or_blank().container_names
    if container is None:
        return names
    if container not in names:
        raise PodError(pd.uid, f"no container {container!r} (the pod has {', '.join(names)})")
    return [container]


def logs(pd: PodDir, container: str | None = None, previous: bool = False) -> list[str]:
    """The text lines of a container's current run (``previous``: the run before)."""
    return [ln.text for ln in log_lines(pd, container, previous)]


def log_lines(pd: PodDir, container: str | None = None, previous: bool = False) -> list[LogLine]:
    """The lines of a container's current run (``previous``: the run before), with the time
    and stream of each."""
    from runtime.pod.logs import read_log, runs

    names = container_names(pd, container)
    if container is None:
        app = pd.record_or_blank().app_containers
        if len(app) != 1:
            raise PodError(pd.uid, f"a container name must be given: one of {', '.join(names)}")
        names = app
    log_dir = pd.path / "logs" / names[0]
    have = runs(log_dir)
    if not have:
        return []
    run_no = have[-1] - (1 if previous else 0)
    if previous and run_no not in have:
        raise PodError(pd.uid, f"container {names[0]!r} has no previous run")
    return read_log(log_dir, run_no, names[0])


def follow_logs(
    pd: PodDir,
    container: str | None = None,
    interval: float = 0.1,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[str, str]]:
    """(container, line) as they are written, all containers or one, across restarts and
    rotations, until the pod has finished (or ``should_stop()``)."""
    for line in follow_log_lines(pd, container, interval, should_stop):
        yield line.container, line.text


def follow_log_lines(
    pd: PodDir,
    container: str | None = None,
    interval: float = 0.1,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[LogLine]:
    """``follow_logs`` with the time and stream of each line."""
    from runtime.pod.logs import LogFollower

    names = container_names(pd, container)
    follower = LogFollower(pd.store.root / "run" / pd.uid / "logs", names)
    try:
        while True:
            pd.refresh()
            done = pd.state is not PodState.RUNNING or (should_stop is not None and should_stop())
            if pd.state is PodState.EXITED:
                follower.logs_dir = pd.path / "logs"
                for t in follower.tails.values():
                    t.log_dir = pd.path / "logs" / t.container
            yield from follower.poll()
            if done:
                return
            time.sleep(interval)
    finally:
        follower.close()


def exec_in(
    pd: PodDir,
    opts: PodOptions,
    command: Sequence[str],
    container: str | None = None,
    tty: bool = False,
    stdin: Stdio = subprocess.DEVNULL,
    stdout: Stdio = None,
    stderr: Stdio = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` in a running container of the pod (the first app container unless
    ``container``); stdio as for ``subprocess.run``. The runtime is the one the pod was
    created with (``opts`` for a pod whose record has no options)."""
    if pd.state is not PodState.RUNNING:
        raise InvalidState(pd.uid, f"cannot exec in a pod in {pd.state.value}/")
    rec = pd.record_or_blank()
    if container is None:
        app = rec.app_containers
        if not app:
            raise PodError(pd.uid, "exec: the pod has no app container")
        container = app[0]
    container_names(pd, container)
    popts = rec.pod_options(opts)
    argv = [*popts.runtime_argv(), "--root", str(pd.path / "runtime"), "exec"]
    if tty:
        argv.append("-t")
    argv += [container, *command]
    # With a terminal for stdin, a session of its own: that terminal becomes the runtime's
    # controlling one (runtime.console), so the caller's resizes reach it as SIGWINCH.
    own_session = tty and _is_tty(stdin)
    return subprocess.run(
        argv,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        check=False,
        start_new_session=own_session,
    )


def _is_tty(stdio: Stdio) -> bool:
    if isinstance(stdio, int):
        return stdio >= 0 and os.isatty(stdio)
    if stdio is None:
        return False
    try:
        return os.isatty(stdio.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def port_connect(pd: PodDir, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to ``port`` on the pod's loopback (127.0.0.1, then ::1), made in the
    pod's network namespace, as the kubelet's port-forward does: a port the pod binds on any
    address, or on its loopback only, is reached. The socket stays in that namespace; the
    caller owns it."""
    from runtime.network import in_netns

    if not 0 < port < 65536:
        raise PodError(pd.uid, f"port-forward: {port} is not a TCP port")
    if pd.state is not PodState.RUNNING:
        raise InvalidState(pd.uid, f"cannot forward a port of a pod in {pd.state.value}/")
    try:
        pid = int((pd.path / "monitor.pid").read_text().strip())
    except (OSError, ValueError):
        raise InvalidState(pd.uid, "port-forward: the pod has no monitor") from None

    def connect() -> socket.socket:
        errors: list[str] = []
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect((host, port))
            except OSError as e:
                sock.close()
                errors.append(f"{host}: {e.strerror or e}")
                continue
            sock.settimeout(None)
            return sock
        raise PodError(pd.uid, f"port-forward to port {port}: {'; '.join(errors)}")

    try:
        return in_netns(f"/proc/{pid}/ns/net", connect)
    except PodError:
        raise
    except Exception as e:  # the namespace is gone: the pod stopped meanwhile
        raise PodError(pd.uid, f"port-forward to port {port}: {e}") from None


# ============================================================================= attach

# The attach socket's channels (csrc/monitor/attach.c): Kubernetes' remote command ones.
STDIN, STDOUT, STDERR, ERROR, RESIZE, TAKE_STDIN, END_STDIN = 0, 1, 2, 3, 4, 5, 255
MESSAGE_MAX = 1 + 16 * 1024  # the monitor reads output 16 KiB at a time
ANSWER_WAIT = 30.0  # seconds: the monitor answers at once unless it is wedged


class Attachment:
    """A client of a running container's attach socket: its output from now on
    (``recv``/``decode``), and, when attached with ``stdin``, its input (``send_stdin``,
    ``end_stdin``) and its terminal's size (``resize``). ``sock`` is a SOCK_SEQPACKET socket,
    one message per ``recv``; with ``stdinOnce`` the end of the first attachment that took
    stdin (``end_stdin`` or ``close``) closes the container's stdin."""

    MESSAGE_MAX = MESSAGE_MAX  # a buffer this large holds any message of the monitor

    def __init__(self, sock: socket.socket, pod: str, container: str, stdin: bool) -> None:
        self.sock = sock
        self.pod = pod
        self.container = container
        self.stdin = stdin
        self.early: list[bytes] = []  # messages read before the answer to TAKE_STDIN

    def decode(self, message: bytes) -> tuple[int, bytes] | None:
        """(1 stdout | 2 stderr, data) of one message; None at the end of the run; a
        ``PodError`` for the monitor's refusal."""
        if not message:
            return None
        if message[0] == ERROR:
            raise PodError(self.pod, f"attach to {self.container}: {message[1:].decode()}")
        return message[0], message[1:]

    def recv(self) -> tuple[int, bytes] | None:
        """The next output (blocking): ``decode`` of the next message."""
        if self.early:
            return self.decode(self.early.pop(0))
        return self.decode(self.sock.recv(MESSAGE_MAX))

    # The messages, for a caller that sends them itself (from an event loop)
    @staticmethod
    def stdin_messages(data: bytes) -> list[bytes]:
        step = MESSAGE_MAX - 1
        return [bytes([STDIN]) + data[i : i + step] for i in range(0, len(data), step)]

    @staticmethod
    def resize_message(width: int, height: int) -> bytes:
        return bytes([RESIZE]) + struct.pack("=HH", width & 0xFFFF, height & 0xFFFF)

    @staticmethod
    def end_stdin_message() -> bytes:
        return bytes([END_STDIN])

    def send_stdin(self, data: bytes) -> None:
        if not self.stdin:
            raise PodError(self.pod, f"attach to {self.container}: attached without stdin")
        for message in self.stdin_messages(data):
            self.sock.sendall(message)

    def end_stdin(self) -> None:
        """This client's input is over (with stdinOnce: the container's stdin closes)."""
        if self.stdin:
            self.sock.sendall(self.end_stdin_message())

    def resize(self, width: int, height: int) -> None:
        """The container's terminal is ``width`` columns by ``height`` rows (SIGWINCH)."""
        self.sock.sendall(self.resize_message(width, height))

    def close(self) -> None:
        self.sock.close()

    def copy(self, stdin: int | None, stdout: int, stderr: int) -> None:
        """Copy the output to ``stdout`` and ``stderr`` and, when attached with stdin,
        ``stdin`` to the container, until the run ends. A terminal for ``stdin`` is raw
        meanwhile and its size (now and at each SIGWINCH) is the container's."""
        import select
        import signal

        from runtime.console import _raw

        def size(*_: object) -> None:
            with contextlib.suppress(OSError):
                cols, rows = os.get_terminal_size(stdin or 0)
                self.resize(cols, rows)

        tty = stdin is not None and self.stdin and os.isatty(stdin)
        previous = signal.signal(signal.SIGWINCH, size) if tty else None
        if tty:
            size()
        reading = stdin is not None and self.stdin
        try:
            with _raw(stdin) if tty and stdin is not None else contextlib.nullcontext():
                while True:
                    fds = [self.sock] + ([stdin] if reading and stdin is not None else [])
                    try:
                        ready, _, _ = select.select(fds, [], [], None if not self.early else 0)
                    except InterruptedError:
                        continue
                    if self.early or self.sock in ready:
                        got = self.recv()
                        if got is None:
                            return
                        _write_all(stdout if got[0] == STDOUT else stderr, got[1])
                    if reading and stdin is not None and stdin in ready:
                        data = os.read(stdin, 65536)
                        if data:
                            self.send_stdin(data)
                        else:
                            reading = False
                            self.end_stdin()
        finally:
            if previous is not None:
                signal.signal(signal.SIGWINCH, previous)

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach(pd: PodDir, container: str | None = None, stdin: bool = False) -> Attachment:
    """Attach to a running container of the pod (the first app container unless
    ``container``): its output from now on and, with ``stdin``, its stdin. A container whose
    spec sets neither ``stdin`` nor ``tty`` has no attach socket; one without ``stdin`` (or
    whose stdin a ``stdinOnce`` attach closed) refuses ``stdin``: ``PodError``s that say so."""
    if container is None:
        app = pd.record_or_blank().app_containers
        if not app:
            raise PodError(pd.uid, "attach: the pod has no app container")
        container = app[0]
    container_names(pd, container)  # a name the pod never had is named as such, in any state
    if pd.state is not PodState.RUNNING:
        raise InvalidState(pd.uid, f"cannot attach to a pod in {pd.state.value}/")
    # Through an open directory fd, as the monitor binds it: the pod directory's path may
    # not fit in a socket address.
    try:
        dirfd = os.open(pd.path / "attach", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        dirfd = -1
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        try:
            if dirfd < 0:
                raise FileNotFoundError
            sock.connect(f"/proc/self/fd/{dirfd}/{container}")
        except (FileNotFoundError, ConnectionRefusedError):
            raise PodError(
                pd.uid,
                f"attach to {container}: it serves no attach (its spec sets neither stdin "
                "nor tty, or the container is not running)",
            ) from None
        except OSError as e:
            raise PodError(pd.uid, f"attach to {container}: connect: {e.strerror or e}") from None
        finally:
            if dirfd >= 0:
                os.close(dirfd)
        att = Attachment(sock, pd.uid, container, stdin)
        if stdin:
            sock.settimeout(ANSWER_WAIT)
            sock.sendall(bytes([TAKE_STDIN]))
            # Output may come before the answer: it is kept for recv.
            answer = sock.recv(MESSAGE_MAX)
            while answer and answer[0] in (STDOUT, STDERR):
                att.early.append(answer)
                answer = sock.recv(MESSAGE_MAX)
            if not answer:
                raise PodError(pd.uid, f"attach to {container}: the container's run ended")
            if answer[0] != TAKE_STDIN:
                att.decode(answer)  # raises the monitor's refusal
            sock.settimeout(None)
        return att
    except BaseException:
        sock.close()
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
