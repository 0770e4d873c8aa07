"""corral-oci's two parsers: the hand-written one of the hot commands and click's.

Each command line below goes through both to the same library call (recorded, not run): the
fast path must take a line exactly as click does, or leave it to click.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from click.testing import CliRunner

from runtime import container
from runtime.cli import oci
from runtime.errors import NotFound

Call = tuple[str, tuple[Any, ...], dict[str, Any]]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """The library's lifecycle functions, recording their arguments instead of running."""
    seen: list[Call] = []
    results: dict[str, Any] = {"run": 0, "state": {"id": "c1", "status": "created"}}
    for name in ("create", "run", "start", "state", "kill", "delete"):

        def record(*args: Any, _name: str = name, **kw: Any) -> Any:
            seen.append((_name, args, kw))
            return results.get(_name)

        monkeypatch.setattr(container, name, record)
    return seen


def _fast(argv: list[str]) -> tuple[int, str]:
    parsed = oci.parse(argv)
    assert parsed is not None, argv
    ctx, cmd, cid, opts = parsed
    return cmd.run(ctx, cid, opts), f"{ctx.root} {ctx.log} {ctx.log_format} {ctx.debug}"


def _click(argv: list[str]) -> tuple[int, str]:
    seen: list[str] = []
    real = oci.Ctx.__init__

    def init(self: oci.Ctx, *args: Any) -> None:
        real(self, *args)
        seen.append(f"{self.root} {self.log} {self.log_format} {self.debug}")

    oci.Ctx.__init__ = init  # type: ignore[method-assign]
    try:
        res = CliRunner().invoke(oci.cli, argv)
    finally:
        oci.Ctx.__init__ = real  # type: ignore[method-assign]
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res.exit_code, seen[0]


HOT = [
    ["--root", "/r", "create", "-b", "/b", "c1"],
    ["--root=/r", "create", "c1", "--bundle=/b", "--pid-file", "/p", "--no-pivot",
     "--preserve-fds", "2", "--console-socket", "s", "--no-new-keyring"],
    ["run", "-d", "--keep", "c1", "-b", "bundle"],
    ["--root", "/r", "run", "--preserve-fds=1", "c1"],
    ["--log", "/l", "--log-format", "json", "start", "c1"],
    ["--debug", "--rootless", "false", "--criu=x", "state", "c1"],
    ["kill", "c1"],
    ["kill", "c1", "KILL", "-a"],
    ["kill", "--all", "c1", "9"],
    ["delete", "-f", "c1"],
    ["delete", "c1", "--force"],
    ["delete", ""],
]  # fmt: skip


@pytest.mark.parametrize("argv", HOT, ids=" ".join)
def test_the_fast_path_makes_the_same_call_as_click(calls: list[Call], argv: list[str]) -> None:
    fast = _fast(argv)
    fast_calls = list(calls)
    calls.clear()
    assert _click(argv) == fast
    assert calls == fast_calls
    assert len(calls) == 1


def test_run_takes_a_start_gate_fd_either_way(calls: list[Call]) -> None:
    """``run --start-gate FD`` (the pod monitor's): passed on to ``container.run``, and made
    close-on-exec first, so that nothing the runtime starts inherits it."""
    r, w = os.pipe()
    try:
        argv = ["run", "-d", "--start-gate", str(r), "c1"]
        os.set_inheritable(r, True)
        fast = _fast(argv)
        assert not os.get_inheritable(r)
        fast_calls = list(calls)
        calls.clear()
        os.set_inheritable(r, True)
        assert _click(argv) == fast
        assert not os.get_inheritable(r)
        assert calls == fast_calls
        assert [c[2]["start_gate"] for c in calls] == [r]
    finally:
        os.close(r)
        os.close(w)


ELSEWHERE = [
    [],
    ["--help"],
    ["-v"],
    ["--systemd-cgroup", "create", "c1"],
    ["--log-format", "xml", "state", "c1"],
    ["--root"],
    ["kill"],
    ["kill", "c1", "KILL", "extra"],
    ["state", "c1", "c2"],
    ["create", "c1", "--help"],
    ["create", "--preserve-fds", "many", "c1"],
    ["create", "c1", "--bundle"],
    ["run", "-dk", "c1"],
    ["run", "-b/b", "c1"],
    ["run", "--start-gate", "three", "c1"],
    ["delete", "--", "c1"],
    ["delete", "--force=1", "c1"],
    ["start", "--root", "/r", "c1"],
    ["exec", "c1", "true"],
    ["list"],
    ["pause", "c1"],
]


@pytest.mark.parametrize("argv", ELSEWHERE, ids=" ".join)
def test_anything_else_is_left_to_click(argv: list[str]) -> None:
    assert oci.parse(argv) is None


def test_an_error_is_one_line_and_one_log_entry_either_way(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing(cid: str, *args: Any, **kw: Any) -> None:
        raise NotFound(cid)

    monkeypatch.setattr(container, "start", missing)
    log = tmp_path / "log.json"
    argv = ["--log", str(log), "--log-format", "json", "start", "c1"]
    with pytest.raises(SystemExit) as exc:
        oci.run_command(argv)
    assert exc.value.code == 1
    assert capsys.readouterr().err == "corral-oci: start c1: container does not exist: c1\n"
    res = CliRunner().invoke(oci.cli, argv)
    assert res.exit_code == 1
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and lines[0][:60] == lines[1][:60]
    assert '"msg":"start c1: container does not exist: c1"' in lines[0]
