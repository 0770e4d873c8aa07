"""kubemodel/_generated.py is what kubemodel/gen.py makes from kubemodel/schema.json, and the
object model imports nothing of Corral's (no root)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kubemodel import gen

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_gives_the_committed_file() -> None:
    assert gen.render(gen.load_schema()) == gen.OUTPUT.read_text()


def test_schema_has_every_root_and_what_it_references() -> None:
    schema = gen.load_schema()
    assert set(gen.ROOTS) <= set(schema)
    assert gen.trim(schema) == schema  # trimmed: nothing unreachable, nothing missing


def test_kubemodel_imports_nothing_of_ours() -> None:
    code = (
        "import sys, kubemodel, kubemodel.gen\n"
        "ours = sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('runtime', 'images', 'orchestrator', 'tests', 'bench'))\n"
        "print(ours)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
