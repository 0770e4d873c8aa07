"""Default paths are written once, in corral_common.defaults, and every layer reads them there."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from corral_common import defaults

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("runtime", "images", "orchestrator", "corral_cli", "kubemodel")
PREFIXES = ("/var/lib/corral", "/run/corral", "/etc/corral")


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            out.add(id(body[0].value))
    return out


def _path_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings(tree)
    return [
        f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docs
        and node.value.startswith(PREFIXES)
    ]


def test_no_default_path_is_written_outside_corral_common() -> None:
    found = [
        hit
        for pkg in PACKAGES
        if (REPO / pkg).is_dir()
        for path in sorted((REPO / pkg).rglob("*.py"))
        for hit in _path_literals(path)
    ]
    assert found == []


def test_the_layers_read_the_one_place() -> None:
    from images import store
    from runtime import ctr, state
    from runtime.network import cni, config
    from runtime.pod import prepare
    from runtime.pod import store as pod_store

    assert store.DEFAULT_ROOT == ctr.IMAGE_ROOT == prepare.PodOptions().image_root
    assert store.DEFAULT_ROOT == defaults.IMAGE_ROOT
    assert ctr.STATE_ROOT == defaults.CONTAINER_STATE_ROOT
    assert state.DEFAULT_ROOT == defaults.OCI_STATE_ROOT
    assert pod_store.DEFAULT_ROOT == prepare.PodOptions().root == defaults.POD_ROOT
    assert prepare.PodOptions().cgroup_parent == defaults.POD_CGROUP_PARENT
    assert prepare.DEFAULT_NETWORK_CONFIG == defaults.NETWORK_CONFIG
    assert str(cni.DEFAULT_CACHE_DIR) == defaults.CNI_CACHE_DIR
    if "CORRAL_NETWORK_DIR" not in os.environ:
        assert str(config.DEFAULT_STATE_DIR) == defaults.NETWORK_STATE_DIR
