"""scripts/all_skipped.py, on JUnit reports pytest really writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "all_skipped.py"


def _report(tmp_path: Path, body: str) -> Path:
    (tmp_path / "test_x.py").write_text("import pytest\n\n" + body)
    xml = tmp_path / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junit-xml={xml}",
         str(tmp_path / "test_x.py")],
        capture_output=True, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    return xml


@pytest.mark.parametrize(
    ("body", "every_one_skipped"),
    [
        (
            "def test_a():\n    pytest.skip('no kernel')\n\ndef test_b():\n    pytest.skip('no')\n",
            True,
        ),
        ("def test_a():\n    pytest.skip('no kernel')\n\ndef test_b():\n    pass\n", False),
        ("def test_a():\n    pass\n", False),
        ("", False),  # nothing collected: pytest's own exit status 5 says so
    ],
)
def test_all_skipped(tmp_path: Path, body: str, every_one_skipped: bool) -> None:
    xml = _report(tmp_path, body)
    rc = subprocess.run([sys.executable, str(SCRIPT), str(xml)], check=False).returncode
    assert rc == (0 if every_one_skipped else 1)
