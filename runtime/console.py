"""Terminals: the console socket a container's pty master comes back on, and the copy loop
`run`/`exec` use in the foreground (runc's behaviour without --console-socket).

The container process opens a pty from its own devpts, keeps the slave as its controlling
terminal and sends the master over a unix socket (SCM_RIGHTS). With ``--console-socket`` the
socket is the caller's (podman's conmon); in the foreground it is one end of our own pair.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios
import tty
from collections.abc import Iterator

from .errors import ConfigError, SysError


def connect(path: str) -> socket.socket:
    """Connect to a --console-socket path (a listening unix stream socket)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise SysError(f"connect console socket {path}", e.errno or errno.EIO) from None
    return s


def check(terminal: bool, console_socket: str | None, detached: bool) -> None:
    """runc's rules for a terminal and a console socket."""
    if terminal and detached and not console_socket:
        raise ConfigError(
            "process.terminal", "cannot allocate a tty when detaching without --console-socket"
        )
    if console_socket and not terminal:
        raise ConfigError(
            "console-socket", "cannot use --console-socket when process.terminal is false"
        )


def receive_master(sock: socket.socket) -> int:
    """The pty master fd the container process sent over ``sock``."""
    try:
        _, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    except OSError as e:
        raise SysError("receive pty master", e.errno or errno.EIO) from None
    if not fds:
        raise SysError("receive pty master", errno.EPROTO, "no fd in the message")
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]


def _copy_winsize(src: int, dst: int) -> None:
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def _take_terminal(fd: int) -> None:
    """A session leader without a terminal (a caller that started us in a session of our own
    on its pty, as the kubelet's exec does) makes ``fd`` its controlling terminal, so a
    resize of that pty reaches us as SIGWINCH. Anyone else keeps what they have."""
    if os.getsid(0) != os.getpid():
        return
    try:
        os.close(os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY))
        return  # we have a controlling terminal already
    except OSError:
        pass
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSCTTY, 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def proxy(master: int, pid: int) -> None:
    """Copy our stdin to the pty and the pty to our stdout until process ``pid`` exits and
    its output is drained. Our terminal (if any) is raw meanwhile; SIGWINCH follows it."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    pidfd = os.pidfd_open(pid)
    stdin_open = True
    try:
        os.fstat(stdin)
    except OSError:
        stdin_open = False
    if stdin_open and os.isatty(stdin):
        _take_terminal(stdin)
        _copy_winsize(stdin, master)
    previous = signal.signal(
        signal.SIGWINCH, lambda *_: stdin_open and _copy_winsize(stdin, master)
    )
    try:
        with _raw(stdin) if stdin_open else contextlib.nullcontext():
            exited = False
            while True:
                fds = [master] + ([stdin] if stdin_open else []) + ([] if exited else [pidfd])
                try:
                    ready, _, _ = select.select(fds, [], [], 0.05 if exited else None)
                except InterruptedError:
                    continue
                if pidfd in ready:
                    exited = True
                if master in ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError as e:
                        if e.errno != errno.EIO:  # EIO: every slave fd is closed
                            raise
                        data = b""
                    if not data:
                        break
                    _write_all(stdout, data)
                elif exited:
                    break  # exited and nothing more to read
                if stdin_open and stdin in ready:
                    data = os.read(stdin, 65536)
                    if not data:
                        stdin_open = False
                        # Pass end-of-file on as the terminal's EOF character.
                        with contextlib.suppress(OSError):
                            _write_all(master, b"\x04")
                    else:
                        with contextlib.suppress(OSError):
                            _write_all(master, data)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(pidfd)
