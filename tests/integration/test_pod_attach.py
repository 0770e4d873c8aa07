"""Attach to a pod container through its monitor (``runtime.pod.api.attach``): real monitors,
real pipes and ptys. A container with ``stdin: true`` keeps its stdin open for attach clients
(``stdinOnce``: until the first one is done); ``tty: true`` makes it the monitor's pty, which
the client resizes; output reaches the client and the log files both. The ``pods`` fixture
(tests/integration/test_pods.py) checks that nothing is left behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runtime.pod import api
from tests.integration import test_pods
from tests.integration.test_pods import Pods, sh, until

# the fixtures of test_pods: a pod root, image store and cgroup parent each, checked empty after
pods, image_tar = test_pods.pods, test_pods.image_tar

pytestmark = pytest.mark.root


def read_until(att: api.Attachment, *want: bytes) -> dict[int, bytes]:
    """What the attachment receives, by channel, until all of ``want`` is in it."""
    got: dict[int, bytes] = {1: b"", 2: b""}
    att.sock.settimeout(60)
    while not all(w in got[1] + got[2] for w in want):
        msg = att.recv()
        if msg is None:
            raise AssertionError(f"the run ended before {want!r}: {got}")
        got[msg[0]] += msg[1]
    return got


def test_attach_stdin_pipe_echoes_and_logs(pods: Pods) -> None:
    """stdin: true without a tty: a pipe; what the client sends is the container's input,
    its stdout and stderr come back on their channels and are logged as ever."""
    script = 'while read l; do echo "out:$l"; echo "err:$l" >&2; done; echo eof'
    uid = pods.run(pods.manifest("cat", [sh("c", script, stdin=True)]))
    pods.running_pid(uid, "c")
    with api.attach(uid, pods.opts, "c", stdin=True) as att:
        att.send_stdin(b"hello\n")
        got = read_until(att, b"err:hello\n", b"out:hello\n")
        assert b"out:hello\n" in got[1] and b"err:hello\n" in got[2], got
        assert b"err:" not in got[1] and b"out:" not in got[2], got
    until("the log", lambda: "out:hello" in api.logs(uid, pods.opts, "c"))
    # Without stdinOnce the end of an attach leaves stdin open: a second client is read.
    with api.attach(uid, pods.opts, "c", stdin=True) as att:
        att.send_stdin(b"again\n")
        read_until(att, b"out:again")
    assert pods.container(uid, "c").state == "Running"
    assert "eof" not in api.logs(uid, pods.opts, "c")


def test_attach_stdin_once_closes_stdin_after_the_first_attach(pods: Pods) -> None:
    script = "cat; echo stdin-closed"
    uid = pods.run(
        pods.manifest("once", [sh("c", script, stdin=True, stdinOnce=True)], restartPolicy="Never")
    )
    pods.running_pid(uid, "c")
    # An attach without stdin does not count.
    api.attach(uid, pods.opts, "c").close()
    with api.attach(uid, pods.opts, "c", stdin=True) as att:
        att.send_stdin(b"x1\n")
        read_until(att, b"x1")
    st = pods.wait(uid)
    assert st.phase == "Succeeded", st
    assert api.logs(uid, pods.opts, "c") == ["x1", "stdin-closed"]


def test_attach_tty_prompt_command_and_resize(pods: Pods) -> None:
    """tty: true and stdin: the monitor's pty master is the client's: a shell prompt (no
    newline: it never reached a log line), a command, and a resize the shell sees."""
    shell = {"name": "sh", "command": ["sh", "-i"], "stdin": True, "tty": True}
    uid = pods.run(pods.manifest("tty", [shell], restartPolicy="Never"))
    pods.running_pid(uid, "sh")
    with api.attach(uid, pods.opts, "sh", stdin=True) as att:
        att.resize(91, 37)
        att.send_stdin(b"stty size; echo do''ne\n")
        got = read_until(att, b"done")
        assert b"37 91" in got[1], got
        att.send_stdin(b"echo $((6*7))\n")
        assert b"42" in read_until(att, b"42")[1]
        att.send_stdin(b"exit 3\n")
        while att.recv() is not None:  # the end of the run hangs up
            pass
    st = pods.wait(uid)
    assert st.container("sh").exit_code == 3, st


def test_attach_is_refused_without_stdin(pods: Pods) -> None:
    """Without stdin: true the container's stdin is /dev/null; an attach with stdin is
    refused, saying why; without stdin nor tty there is no attach socket at all."""
    uid = pods.run(
        pods.manifest(
            "plain",
            [
                sh("t", "readlink /proc/self/fd/0; sleep 3600", tty=True),
                sh("p", "readlink /proc/self/fd/0; sleep 3600"),
            ],
        )
    )
    pods.running_pid(uid, "t")
    pods.running_pid(uid, "p")
    until("the logs", lambda: api.logs(uid, pods.opts, "p") and api.logs(uid, pods.opts, "t"))
    assert api.logs(uid, pods.opts, "p") == ["/dev/null"]
    with pytest.raises(api.PodError, match="does not keep stdin open: its spec does not set"):
        api.attach(uid, pods.opts, "t", stdin=True)
    api.attach(uid, pods.opts, "t").close()  # output only: served
    with pytest.raises(api.PodError, match="serves no attach"):
        api.attach(uid, pods.opts, "p")
    pod_dir = Path(pods.opts.root) / "run" / uid
    assert sorted(p.name for p in (pod_dir / "attach").iterdir()) == ["t"]
    api.stop(uid, pods.opts, grace=0)
    exited = Path(pods.opts.root) / "exited" / uid
    assert not (exited / "attach").exists()


def test_corral_pod_attach(pods: Pods) -> None:
    """``corral pod attach -i POD CONTAINER``: stdin to the container until its end (with
    stdinOnce that closes the container's stdin), the output until the run ends."""
    uid = pods.run(
        pods.manifest(
            "cli", [sh("c", "cat; echo stdin-closed >&2", stdin=True, stdinOnce=True)],
            restartPolicy="Never",
        )
    )  # fmt: skip
    pods.running_pid(uid, "c")
    argv = [test_pods.CORRAL, "pod", *pods.global_args(), "attach", "-i", uid, "c"]
    p = subprocess.run(argv, input="one\ntwo\n", capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p
    assert p.stdout == "one\ntwo\n" and p.stderr == "stdin-closed\n", p
    p = subprocess.run(argv[:-3] + [uid, "nope"], capture_output=True, text=True)
    assert p.returncode != 0 and "no container 'nope'" in p.stderr, p
