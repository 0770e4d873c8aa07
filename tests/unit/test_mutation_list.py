"""scripts/mutation.py's hand-written mutations still apply: each one's text is in its file
exactly once, and each names tests that exist (else the check silently stops checking)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("mutation", REPO / "scripts" / "mutation.py")
assert _spec is not None and _spec.loader is not None
mutation = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("mutation", mutation)  # dataclasses look their module up
_spec.loader.exec_module(mutation)


@pytest.mark.parametrize("m", mutation.MUTANTS, ids=lambda m: m.id)
def test_mutation_applies_once_and_names_real_tests(m: object) -> None:
    assert (REPO / m.path).read_text().count(m.old) == 1  # type: ignore[attr-defined]
    assert m.old != m.new  # type: ignore[attr-defined]
    for t in m.tests:  # type: ignore[attr-defined]
        assert (REPO / t.split("::")[0]).exists(), t


def test_explained_survivors_are_mutations() -> None:
    assert set(mutation.EXPLAINED) <= {m.id for m in mutation.MUTANTS}
