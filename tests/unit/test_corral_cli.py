"""The `corral` front end: one error-to-exit-code boundary, and the version from the metadata."""

from __future__ import annotations

import errno
import importlib.metadata
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from corral_cli import errors
from corral_cli.main import cli


def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), env=env)
    return res.exit_code, res.output


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "CORRAL_IMAGE_STORE": str(tmp_path / "store"),
        "CORRAL_STATE_ROOT": str(tmp_path / "state"),
        "CORRAL_POD_ROOT": str(tmp_path / "pods"),
    }


def test_every_command_group_fails_through_the_one_boundary(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("podCIDR: [\n")
    cases = [
        (["image", "rm", "nope"], 1, "corral: image rm: not found: image nope\n"),
        (
            ["run", "nope:1"],
            125,
            "corral: run nope:1: find image(nope:1): not found: image nope:1\n",
        ),
        (["logs", "x1"], 1, "corral: logs x1: container does not exist: x1\n"),
        (["pod", "inspect", "nope"], 1, "corral: pod inspect nope: nope: no such pod\n"),
        (["pod", "exec", "nope", "--"], 1, "corral: pod exec nope: no command given\n"),
        (
            ["pod", "run", str(tmp_path / "no.yaml")],
            1,
            f"corral: pod run {tmp_path}/no.yaml: cannot read {tmp_path}/no.yaml: "
            "No such file or directory\n",
        ),
        (["network", "gc", "--network-config", str(bad)], 1, f"corral: network gc: {bad}: "),
    ]
    for args, code, line in cases:
        got_code, out = _invoke(*args, env=env)
        assert (got_code, out[: len(line)]) == (code, line), args
        assert "Traceback" not in out


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("!!python/object/apply:os.system ['true']\n", "invalid YAML at line 1, column 1: could"),
        ("kind: Pod\n---\nkind: Pod\n", "expected one Pod document, found 2"),
        ("[" * 10000 + "]" * 10000, "invalid YAML"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ],
    ids=["python-tag", "two-documents", "nested", "not-utf8"],
)
def test_a_pod_file_that_is_no_manifest_is_one_line(
    env: dict[str, str], tmp_path: Path, text: str | bytes, reason: str
) -> None:
    """`pod run` read the file with yaml.safe_load: a YAML error was three lines, a deep
    nesting a RecursionError traceback (the pure-Python loader), bad UTF-8 a traceback."""
    f = tmp_path / "pod.yaml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, out = _invoke("pod", "run", str(f), env=env)
    assert code == 1 and out.count("\n") == 1 and "Traceback" not in out, out
    assert out.startswith(f"corral: pod run {f}: ") and reason in out, out


def test_rm_reports_each_container_it_could_not_remove(env: dict[str, str]) -> None:
    assert _invoke("rm", "a", "b", env=env) == (
        1,
        "corral: rm a: container does not exist: a\ncorral: rm b: container does not exist: b\n",
    )


def test_run_errors_keep_podmans_exit_codes() -> None:
    from runtime.ctr import RunError
    from runtime.errors import NotFound, SpawnError

    assert errors.exit_code(RunError("exec", "sh", SpawnError("execve(sh)", errno.ENOENT))) == 127
    assert errors.exit_code(RunError("exec", "sh", SpawnError("execve(sh)", errno.EACCES))) == 126
    assert errors.exit_code(RunError("mount rootfs", "/x", "Invalid argument")) == 125
    assert errors.exit_code(NotFound("x1")) == 1
    assert errors.exit_code(OSError(errno.EIO, "I/O error")) == 1
    assert errors.exit_code(RuntimeError("a bug")) is None


def test_a_bug_is_not_turned_into_one_line() -> None:
    @click.group(cls=errors.Group)
    def root() -> None:
        pass

    @root.command()
    def boom() -> None:
        with errors.failing("boom"):
            raise KeyError("a bug")

    @root.command()
    def ours() -> None:
        with errors.failing("ours"):
            raise OSError(errno.EACCES, "Permission denied")

    res = CliRunner().invoke(root, ["boom"])
    assert isinstance(res.exception, KeyError)
    res = CliRunner().invoke(root, ["ours"])
    assert (res.exit_code, res.output) == (1, "corral: ours: [Errno 13] Permission denied\n")


def test_the_version_is_the_dist_info_directory_s_unless_other_metadata_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral_common import version

    monkeypatch.setattr(importlib.metadata, "version", lambda dist: "4.5.6")
    site = tmp_path / "site"
    (site / "corral-1.2.3.dist-info").mkdir(parents=True)
    (site / "corral_cli-7.7.7.dist-info").mkdir()  # another distribution's, with a like name
    (site / "corral_cli-7.7.7.dist-info" / "METADATA").write_text("Name: corral_cli\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(site)])
    assert version.version() == "4.5.6"  # no METADATA: not metadata, importlib.metadata decides
    (site / "corral-1.2.3.dist-info" / "METADATA").write_text("Name: corral\nVersion: 1.2.3\n")
    assert version.version() == "1.2.3"
    src = tmp_path / "src"  # a source tree with setuptools' egg-info, first on the path
    (src / "corral.egg-info").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [str(src), str(site)])
    assert version.version() == "4.5.6"


def test_versions_come_from_the_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.cli import oci

    assert _invoke("--version") == (0, f"corral version {importlib.metadata.version('corral')}\n")
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: f"{dist}-9.8.7")
    assert _invoke("-v") == (0, "corral version corral-9.8.7\n")
    res = CliRunner().invoke(oci.cli, ["--version"])
    assert (res.exit_code, res.output) == (0, "corral-oci version corral-9.8.7\nspec: 1.1.0\n")


def test_each_command_is_loaded_by_its_name_and_the_names_are_all_of_them() -> None:
    # The root group imports a command's module at its use (corral_cli.main.COMMAND_MODULES):
    # every name it lists gives that command, and the modules add no command it does not list.
    from corral_cli.main import COMMAND_MODULES

    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name, name
    assert sorted(cli.commands) == sorted(COMMAND_MODULES) == cli.list_commands(ctx)
    assert cli.get_command(ctx, "nope") is None
