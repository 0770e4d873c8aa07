"""The cluster's shared files sealed under the join token (orchestrator.apiserver.bootstrap)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.apiserver.bootstrap import FILES, BootstrapError, _adopt, seal, unseal
from orchestrator.apiserver.pki import ensure_pki


def test_sealed_files_open_only_with_their_token() -> None:
    files = {rel: f"content of {rel}".encode() for rel in FILES}
    blob = seal("s3cret", files)
    assert b"content of" not in blob
    assert unseal("s3cret", blob) == files
    with pytest.raises(BootstrapError, match="does not open with this token"):
        unseal("other", blob)
    with pytest.raises(BootstrapError, match="malformed"):
        unseal("s3cret", b"{}")


def test_adopting_the_cluster_ca_drops_leaves_of_the_old_one(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    p = ensure_pki(mine / "tls", "127.0.0.1")
    ensure_pki(theirs / "tls", "127.0.0.1")
    shared = {rel: (theirs / rel).read_bytes() for rel in FILES if (theirs / rel).exists()}
    _adopt(mine, shared)
    assert p.ca_cert.read_bytes() == (theirs / "tls/server-ca.crt").read_bytes()
    assert not p.serving_cert.exists() and not p.admin_cert.exists()  # signed by the old CA
    again = ensure_pki(mine / "tls", "127.0.0.1")  # made again, by the shared CA
    assert again.serving_cert.exists() and again.admin_cert.exists()
