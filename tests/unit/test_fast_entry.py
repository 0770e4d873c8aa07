"""scripts/fast_entry.py: the launchers setup.sh puts in place of pip's console-script shims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _path_of(argv: list[str]) -> list[str]:
    code = "import json, sys; print(json.dumps(sys.path))"
    return json.loads(subprocess.run([*argv, "-c", code], capture_output=True, check=True).stdout)


def test_the_launcher_starts_without_site_and_finds_what_site_would(tmp_path: Path) -> None:
    script = tmp_path / "corral-oci"
    subprocess.run(
        [sys.executable, str(REPO / "scripts/fast_entry.py"), str(script), "runtime.cli.oci:main"],
        check=True,
    )
    first = script.read_text().splitlines()[0]
    assert first == f"#!{sys.executable} -S"
    # The entries it appends are those site adds: the site-packages and the .pth entries.
    added = [p for p in _path_of([sys.executable]) if p not in _path_of([sys.executable, "-S"])]
    assert f"sys.path += {added!r}" in script.read_text()
    assert any(p.endswith("site-packages") for p in added)
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("corral-oci version ")
    res = subprocess.run(
        [str(script), "--root", str(tmp_path / "root"), "state", "c1"],
        capture_output=True,
        text=True,
    )
    assert (res.returncode, res.stderr) == (
        1,
        "corral-oci: state c1: container does not exist: c1\n",
    )


def test_a_bad_entry_is_refused(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts/fast_entry.py"), str(tmp_path / "x"), "nofunction"],
        capture_output=True,
        text=True,
    )
    assert res.returncode != 0 and "expected MODULE:FUNCTION" in res.stderr
    assert not (tmp_path / "x").exists()
