"""The server's own components (controllers, scheduler) reach the API through a Unix socket in
the data dir, plain HTTP with a token made at start: the socket is the owner's only, a request
there without the token or with a wrong one is refused (401), and the components
work through it (a namespace gets its kube-root-ca.crt from the root CA publisher)."""

from __future__ import annotations

import asyncio
import base64
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.client import ApiClient, ClientConfig, ClientError
from orchestrator.client.rest import CONFIGMAPS, NAMESPACES, PODS
from testkit.kubeserver import NO_SCHEDULER, Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("loopback"), extra=NO_SCHEDULER)
    srv.start()
    try:
        yield srv
    finally:
        assert srv.stop() == 0
    assert not (srv.data_dir / "loopback.sock").exists()  # removed on the way out


def test_components_reach_the_api_through_the_loopback_socket(server: Server) -> None:
    sock = server.data_dir / "loopback.sock"
    st = sock.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    ca = base64.b64decode(
        yaml.safe_load(server.kubeconfig.read_text())["clusters"][0]["cluster"][
            "certificate-authority-data"
        ]
    ).decode()

    async def main() -> None:
        anonymous = ClientConfig(server="http://localhost", unix_socket=str(sock))
        async with ApiClient(anonymous) as c:
            with pytest.raises(ClientError) as e:
                await c.create(NAMESPACES, None, {"metadata": {"name": "loopback-anon"}})
            assert e.value.code == 401
            with pytest.raises(ClientError) as e:
                await c.list(PODS)
            assert e.value.code == 401
        wrong = ClientConfig(server="http://localhost", unix_socket=str(sock), token="nope")
        async with ApiClient(wrong) as c:
            with pytest.raises(ClientError) as e:
                await c.list(PODS)
            assert e.value.code == 401

    asyncio.run(main())
    code, _ = server.json("POST", "/api/v1/namespaces", {"metadata": {"name": "loopback-ns"}})
    assert code == 201
    deadline = time.monotonic() + 30
    while True:  # published by the controllers, which talk through the socket
        code, body = server.json("GET", CONFIGMAPS.path("loopback-ns", "kube-root-ca.crt"))
        if code == 200:
            assert body["data"] == {"ca.crt": ca}
            break
        assert time.monotonic() < deadline, "no kube-root-ca.crt in the new namespace"
        time.sleep(0.1)
    log = Path(server.log).read_text()
    assert "components use HTTPS" not in log
