"""The ``proxy`` subresources: ``pods/proxy``, ``services/proxy`` and ``nodes/proxy``
(``kubectl get --raw /api/v1/namespaces/NS/services/web:80/proxy/``, ``kubectl proxy`` then
a browser, the Python client's ``connect_get_namespaced_pod_proxy_with_path``).

The name segment is kube's ``[scheme:]name[:port]`` (scheme ``http`` or ``https``). Each
request is passed on as it came: method, query, body and headers, less the hop-by-hop ones
and the caller's credentials, plus ``X-Forwarded-*``; the answer comes back as the target
gave it (status, headers, body streamed, not decompressed).

- A **pod** is reached through the kubelet of its node (``/podProxy/...``,
  ``orchestrator.kubelet.server``), which connects from the node's network namespace to the
  pod's address, where kube-apiserver dials the pod's IP itself: on a cluster whose nodes
  live in network namespaces of one machine the API server has no route to the pods. The
  port defaults to the first port a container declares, then 80; a pod without a routable
  IP is "address not allowed", as kube answers.
- A **service** is one of its endpoints, as kube's ResourceLocation picks it: a port number
  names the service port that has it (503 when none does), the Endpoints subset with a port
  of that name, an address at random whose targetRef pod still has that IP; then as a pod.
- A **node**'s own port (none given, or the kubelet's) is its kubelet's HTTPS API
  (``/healthz``, ``/pods``); another port is fetched from the node's address directly.

Not done as kube does: links in HTML answers are not rewritten to the proxy's path, and a
connection upgrade (a WebSocket through the proxy) is refused.
"""

from __future__ import annotations

import ipaddress
import random
import ssl
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from orchestrator.httprelay import relay, request_headers

from . import errors
from .podlogs import kubelet_address, kubelet_connector, url_host
from .resources import by_path

__all__ = ["proxy", "raw_tail", "split_scheme_name_port"]

SCHEMES = ("", "http", "https")
# What the caller authenticated with: kube-apiserver's authentication filter drops
# Authorization; impersonation is the API server's business.
CREDENTIALS = frozenset({"authorization"})
ERROR_HEADER = "X-Corral-Proxy-Error"  # the kubelet's mark on an answer that is its own error


def split_scheme_name_port(ref: str) -> tuple[str, str, str] | None:
    """``name``, ``name:port`` or ``scheme:name:port`` (utilnet.SplitSchemeNamePort);
    None when it is none of them."""
    parts = ref.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        return None
    if not name or scheme not in SCHEMES:
        return None
    return scheme, name, port


def raw_tail(raw_path: str, namespaced: bool) -> str:
    """The path after ``/api/v1/[namespaces/<ns>/]<resource>/<name>/proxy`` in the request's
    path as sent (still percent-encoded, dot segments and all), "" when nothing follows, with
    its trailing slash kept."""
    parts = raw_path.split("?", 1)[0].split("/")
    at = 7 if namespaced else 5  # "", api, v1, [namespaces, ns,] resource, name, proxy
    rest = parts[at + 1 :]
    return "/" + "/".join(rest) if rest else ""


def forward_headers(request: web.Request) -> dict[str, str]:
    """The caller's headers to pass on (``httprelay.request_headers`` less credentials),
    plus X-Forwarded-For/-Host/-Proto/-Uri."""
    out = {
        k: v
        for k, v in request_headers(request, CREDENTIALS).items()
        if not k.lower().startswith("impersonate-")
    }
    peer = request.remote or ""
    prior = out.pop("X-Forwarded-For", "")
    if peer:
        out["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    elif prior:
        out["X-Forwarded-For"] = prior
    out["X-Forwarded-Host"] = request.host
    out["X-Forwarded-Proto"] = request.scheme
    out["X-Forwarded-Uri"] = request.raw_path
    return out


def _routable(ip: str | None) -> bool:
    try:
        addr = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    # Go's IsGlobalUnicast: not unspecified, loopback, link-local, multicast or broadcast
    return not (
        addr.is_unspecified
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or (addr.version == 4 and str(addr) == "255.255.255.255")
    )


async def proxy(
    request: web.Request,
    storage: Any,
    resource: str,
    ns: str | None,
    ref: str,
    ctx: ssl.SSLContext | None,
    netns: str | None = None,
) -> web.StreamResponse:
    """``<resource>/<ref>/proxy[/<path>]`` for pods, services or nodes."""
    if request.headers.get("Upgrade"):
        raise errors.bad_request(
            f"{resource}/proxy: a connection upgrade ({request.headers['Upgrade']}) through "
            "the proxy is not supported"
        )
    singular = resource[:-1]
    split = split_scheme_name_port(ref)
    if split is None:
        raise errors.bad_request(f"invalid {singular} request {ref!r}")
    scheme, name, port = split
    tail = raw_tail(request.raw_path, ns is not None)
    if resource == "nodes":
        return await _node(request, storage, name, scheme, port, tail, ctx, netns)
    assert ns is not None
    if resource == "services":
        pod, port = await _service_endpoint(storage, ns, name, port, ref)
    else:
        pod = await storage.get(by_path("", "v1", "pods"), ns, name)
        if not port:
            for c in (pod.get("spec") or {}).get("containers") or []:
                if c.get("ports"):
                    port = str(c["ports"][0].get("containerPort", ""))
                    break
        if not _routable((pod.get("status") or {}).get("podIP")):
            raise errors.bad_request("address not allowed")
    return await _via_kubelet(request, storage, pod, scheme or "http", port or "80", tail, ctx,
                              netns)  # fmt: skip


async def _service_endpoint(
    storage: Any, ns: str, name: str, port: str, ref: str
) -> tuple[dict[str, Any], str]:
    """The pod and port a service's proxy request goes to (kube's service ResourceLocation)."""
    if port.isdigit():
        svc = await storage.get(by_path("", "v1", "services"), ns, name)
        for sp in (svc.get("spec") or {}).get("ports") or []:
            if str(sp.get("port")) == str(int(port)):
                port = sp.get("name") or ""
                break
        else:
            raise errors.ApiError(
                503, "ServiceUnavailable", f'no service port {int(port)} found for service "{name}"'
            )
    eps = await storage.get(by_path("", "v1", "endpoints"), ns, name)
    subsets = list(eps.get("subsets") or [])
    if not subsets:
        raise errors.ApiError(
            503, "ServiceUnavailable", f'no endpoints available for service "{name}"'
        )
    start = random.randrange(len(subsets))
    for i in range(len(subsets)):
        ss = subsets[(start + i) % len(subsets)]
        addresses = list(ss.get("addresses") or [])
        if not addresses:
            continue
        for p in ss.get("ports") or []:
            if (p.get("name") or "") != port:
                continue
            first = random.randrange(len(addresses))
            for j in range(len(addresses)):
                addr = addresses[(first + j) % len(addresses)]
                pod = await _address_pod(storage, ns, addr)
                if pod is not None:
                    return pod, str(p.get("port", ""))
    raise errors.ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{ref}"')


async def _address_pod(storage: Any, ns: str, addr: dict[str, Any]) -> dict[str, Any] | None:
    """The pod an endpoint address names, when it still has that address (isValidAddress)."""
    target = addr.get("targetRef") or {}
    if target.get("kind") != "Pod" or not target.get("name"):
        return None
    try:
        pod = await storage.get(
            by_path("", "v1", "pods"), target.get("namespace") or ns, target["name"]
        )
    except errors.ApiError:
        return None
    status = pod.get("status") or {}
    ips = {status.get("podIP")} | {p.get("ip") for p in status.get("podIPs") or []}
    return pod if addr.get("ip") in ips else None


async def _node_of(storage: Any, pod: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
    return node_name, await storage.get(by_path("", "v1", "nodes"), None, node_name)


async def _via_kubelet(
    request: web.Request,
    storage: Any,
    pod: dict[str, Any],
    scheme: str,
    port: str,
    tail: str,
    ctx: ssl.SSLContext | None,
    netns: str | None,
) -> web.StreamResponse:
    if ctx is None:
        raise errors.ApiError(503, "ServiceUnavailable", "no client credentials for kubelets")
    node_name, node = await _node_of(storage, pod)
    host, kport = kubelet_address(node)
    meta = pod["metadata"]
    url = (
        f"https://{url_host(host)}:{kport}/podProxy/{meta['namespace']}/{meta['name']}"
        f"/{scheme}/{quote(port, safe='')}{tail or '/'}"
    )
    return await _relay(request, url, ctx, netns, f"the kubelet of node {node_name}")


async def _node(
    request: web.Request,
    storage: Any,
    name: str,
    scheme: str,
    port: str,
    tail: str,
    ctx: ssl.SSLContext | None,
    netns: str | None,
) -> web.StreamResponse:
    node = await storage.get(by_path("", "v1", "nodes"), None, name)
    host, kport = kubelet_address(node)
    if not port or port == str(kport):
        if ctx is None:
            raise errors.ApiError(503, "ServiceUnavailable", "no client credentials for kubelets")
        url = f"https://{url_host(host)}:{kport}{tail or '/'}"
        return await _relay(request, url, ctx, netns, f"the kubelet of node {name}")
    url = f"{scheme or 'http'}://{url_host(host)}:{quote(port, safe='')}{tail or '/'}"
    return await _relay(request, url, False, netns, f"node {name}")


async def _relay(
    request: web.Request,
    url: str,
    ssl_arg: ssl.SSLContext | bool,
    netns: str | None,
    what: str,
) -> web.StreamResponse:
    """``request`` passed on to ``url``; its answer streamed back as it comes."""

    async def check(r: aiohttp.ClientResponse) -> None:
        if r.headers.get(ERROR_HEADER):
            text = (await r.text()).strip()
            raise errors.ApiError(
                503, "ServiceUnavailable", f"error trying to reach service: {text}"
            )

    try:
        return await relay(
            request,
            url,
            forward_headers(request),
            ssl=ssl_arg,
            connector=kubelet_connector(netns),
            check=check,
        )
    except aiohttp.ClientError as e:
        raise errors.ApiError(
            503, "ServiceUnavailable", f"error trying to reach service: {what}: {e}"
        ) from None
