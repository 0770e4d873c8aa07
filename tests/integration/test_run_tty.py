"""``corral run -d -t``: the detached container's terminal is held by its corral-monitor.

The monitor creates the container with ``corral-oci create --console-socket``, receives the
pty master and logs what the terminal writes as stdout, as podman's conmon does: with the
terminal's ``\\r\\n`` line ends, stderr included (the process's stdio is the terminal).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.test_images import mounts_under
from tests.integration.test_run import Corral, corral, image_tar, imported, wait_until  # noqa: F401 (fixtures)

pytestmark = pytest.mark.root

# `tty` names stdin's terminal; `[ -t 1 ]` asks whether stdout is one.
ON_A_TTY = "tty; [ -t 1 ] && echo TTY; echo to-stderr >&2"


def _ctr_dir(c: Corral, cid: str) -> Path:
    return c.store / "containers" / cid


def test_detached_tty_logs_show_the_terminal_stop_and_rm_leave_nothing(
    corral: Corral,  # noqa: F811
    imported: str,  # noqa: F811
) -> None:
    script = f'{ON_A_TTY}; trap "echo bye; exit 7" USR1; while :; do sleep 0.05; done'
    cid = corral.ok("run", "-d", "-t", "--name", "term", "--entrypoint", "sh", imported,
                    "-c", script).strip()  # fmt: skip
    (item,) = corral.ps()
    assert item["status"] == "running"
    # the process's stdio is a pty of the container's own devpts, not the monitor's pipes
    assert os.readlink(f"/proc/{item['pid']}/fd/1") == "/dev/pts/0"
    want = "/dev/pts/0\r\nTTY\r\nto-stderr\r\n"
    wait_until(lambda: corral.ok("logs", "term") == want)
    res = corral("logs", "term")
    assert (res.out, res.err) == (want, "")  # the terminal is one stream: stdout
    # the console socket lives only while `create` runs
    assert [n for n in os.listdir(_ctr_dir(corral, cid)) if n.endswith(".sock")] == []
    assert corral.ok("stop", "term") == "term\n"
    (item,) = corral.ps()
    assert (item["status"], item["exit_code"]) == ("exited", 7)
    assert corral.ok("logs", cid) == want + "bye\r\n"
    assert mounts_under(corral.tmp) == []
    corral.ok("rm", "term")
    corral.assert_clean()


def test_detached_tty_gets_a_new_terminal_on_every_restart(
    corral: Corral,  # noqa: F811
    imported: str,  # noqa: F811
) -> None:
    cid = corral.ok("run", "-d", "-t", "--restart", "on-failure:1", "--entrypoint", "sh",
                    imported, "-c", f"{ON_A_TTY}; exit 3").strip()  # fmt: skip

    def over() -> bool:
        (item,) = corral.ps()
        return item["status"] == "exited"

    wait_until(over)
    (item,) = corral.ps()
    assert (item["exit_code"], item["restarts"]) == (3, 1)
    res = corral("logs", cid)
    assert (res.out, res.err) == ("/dev/pts/0\r\nTTY\r\nto-stderr\r\n" * 2, "")
    # the end of a terminal (EIO on the pty master) is an end of file, not an error
    monitor_log = (_ctr_dir(corral, cid) / "monitor.log").read_text()
    assert "read stdout" not in monitor_log, monitor_log
    corral.ok("rm", cid)
    corral.assert_clean()


def test_detached_without_tty_has_no_terminal(
    corral: Corral,  # noqa: F811
    imported: str,  # noqa: F811
) -> None:
    """The control: without -t the monitor's pipes are stdout and stderr."""
    cid = corral.ok("run", "-d", "--entrypoint", "sh", imported, "-c", ON_A_TTY).strip()

    def over() -> bool:
        (item,) = corral.ps()
        return item["status"] == "exited"

    wait_until(over)
    res = corral("logs", cid)
    assert (res.out, res.err) == ("not a tty\n", "to-stderr\n")
    corral.ok("rm", cid)
    corral.assert_clean()
