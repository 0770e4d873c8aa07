"""The proxy subresources' name and path parsing (orchestrator.apiserver.proxyroute)."""

from __future__ import annotations

import pytest

from orchestrator.apiserver.proxyroute import raw_tail, split_scheme_name_port


@pytest.mark.parametrize(
    ("ref", "want"),
    [
        ("web", ("", "web", "")),
        ("web:8080", ("", "web", "8080")),
        ("web:http", ("", "web", "http")),
        ("https:web:443", ("https", "web", "443")),
        ("http:web:", ("http", "web", "")),
        (":web:80", ("", "web", "80")),
        ("ftp:web:21", None),
        ("a:b:c:d", None),
        (":80", None),
        ("", None),
    ],
)
def test_split_scheme_name_port(ref: str, want: tuple[str, str, str] | None) -> None:
    assert split_scheme_name_port(ref) == want


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/api/v1/namespaces/d/pods/web/proxy", ""),
        ("/api/v1/namespaces/d/pods/web/proxy/", "/"),
        ("/api/v1/namespaces/d/pods/web:80/proxy/a%20b/c/?x=1", "/a%20b/c/"),
        ("/api/v1/namespaces/d/pods/web/proxy/proxy/pods/x", "/proxy/pods/x"),
        ("/api/v1/namespaces/pods/pods/proxy/proxy/x", "/x"),
        ("/api/v1/namespaces/d/pods/web/proxy/../../x", "/../../x"),
        ("/api/v1/nodes/n1/proxy/healthz", "/healthz"),
        ("/api/v1/nodes/proxy/proxy", ""),
        ("/api/v1/namespaces/d/services/s/proxy//x", "//x"),
    ],
)
def test_raw_tail(path: str, want: str) -> None:
    assert raw_tail(path, not path.startswith("/api/v1/nodes/")) == want
