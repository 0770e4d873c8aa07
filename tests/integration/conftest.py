"""Fixtures shared by the integration modules."""

from __future__ import annotations

import pytest

from tests.kubeserver import KUBECTL_VERSIONS, Kubectl, Server, kubectl_for


@pytest.fixture(scope="module", params=list(KUBECTL_VERSIONS))
def kubectl(
    request: pytest.FixtureRequest, server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Kubectl:
    """Each kubectl (1.32 and 1.20, skipped where not installed) against the module's own
    ``server`` fixture; a module with a ``kubectl`` of its own keeps that one."""
    return kubectl_for(request.param, server, tmp_path_factory)
