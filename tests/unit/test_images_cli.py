"""`corral image ...`: thin commands over images.store.Store."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from corral_cli.main import cli
from testkit.imagebuild import Entry, oci_files, tar_entries, write_tar


def test_image_commands(tmp_path: Path) -> None:
    files, built = oci_files([tar_entries([Entry("a", data=b"x")])], ref_name="demo:1")
    src = write_tar(tmp_path / "demo.tar", files)
    store = str(tmp_path / "store")
    r = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        res = r.invoke(cli, ["image", "--store", store, *args])
        return res.exit_code, res.output

    assert run("import", str(src)) == (0, f"{built.config_digest} demo:1\n")
    code, out = run("ls")
    assert code == 0 and "demo:1" in out and built.config_digest[7:19] in out
    code, out = run("ls", "--json")
    assert json.loads(out)[0]["id"] == built.config_digest
    code, out = run("inspect", "demo:1")
    assert json.loads(out)["config"]["rootfs"]["diff_ids"] == built.diff_ids
    assert run("save", "demo:1", "-o", str(tmp_path / "o.tar"), "--format", "oci-archive")[0] == 0
    assert (tmp_path / "o.tar").stat().st_size > 0
    code, out = run("rm", "nothere")
    assert code == 1 and "corral: image rm: not found: image nothere" in out
    assert run("rm", "demo:1")[0] == 0
    code, out = run("prune")
    assert code == 0 and out.startswith("removed 0 images")
    code, out = run("import", str(tmp_path / "o.tar"), "--name", "back")
    assert code == 0 and out.endswith("back:latest\n")


def test_import_refuses_another_architecture_unless_platform_says(tmp_path: Path) -> None:
    from images import platforms
    from testkit.imagebuild import config_for

    layer = tar_entries([Entry("a", data=b"x")])
    other = "arm64" if platforms.host().architecture != "arm64" else "amd64"
    config = {**config_for([layer]), "architecture": other}
    config.pop("variant", None)
    files, built = oci_files([layer], config, ref_name="foreign:1")
    src = write_tar(tmp_path / "foreign.tar", files)
    store = str(tmp_path / "store")
    r = CliRunner()
    res = r.invoke(cli, ["image", "--store", store, "import", str(src)])
    assert res.exit_code == 1
    assert "corral: image import: " in res.output
    assert f"image is for {platforms.normalize('linux', other)}, this host runs" in res.output
    assert f"(--platform {platforms.normalize('linux', other)} takes it anyway)" in res.output
    res = r.invoke(
        cli, ["image", "--store", store, "import", "--platform", f"linux/{other}", str(src)]
    )
    assert (res.exit_code, res.output) == (0, f"{built.config_digest} foreign:1\n")
    res = r.invoke(cli, ["image", "--store", store, "import", "--platform", "linux//x", str(src)])
    assert res.exit_code == 1 and "platform 'linux//x': want OS/ARCH[/VARIANT]" in res.output
