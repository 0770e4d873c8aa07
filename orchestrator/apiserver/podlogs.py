"""``pods/log``: the API server proxies ``kubectl logs [-f]`` to the kubelet of the pod's node
(``https://<InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/...``), with a
client certificate of the cluster (``system:masters``), verifying the kubelet's serving
certificate against the cluster CA. The answer is streamed through as it comes."""

from __future__ import annotations

import socket
import ssl
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web

from . import errors
from .resources import by_path

__all__ = [
    "LOG_PARAMS",
    "check_log_options",
    "kubelet_address",
    "kubelet_connector",
    "pod_container",
    "pod_log",
    "url_host",
]

LOG_PARAMS = ("follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime",
              "limitBytes")  # fmt: skip


def pod_container(pod: dict[str, Any], asked: str | None) -> str:
    spec = pod.get("spec") or {}
    names = [c["name"] for c in spec.get("containers") or []]
    inits = [c["name"] for c in spec.get("initContainers") or []]
    ephemeral = [c["name"] for c in spec.get("ephemeralContainers") or []]
    name = pod["metadata"]["name"]
    if asked:
        if asked not in names + inits + ephemeral:
            raise errors.bad_request(f"container {asked} is not valid for pod {name}")
        return asked
    default = (pod["metadata"].get("annotations") or {}).get(
        "kubectl.kubernetes.io/default-container"
    )
    if default in names:
        return str(default)
    if len(names) == 1:
        return names[0]
    raise errors.bad_request(
        f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
    )


def url_host(host: str) -> str:
    """An address as a URL's host (an IPv6 one in brackets)."""
    return f"[{host}]" if ":" in host else host


def kubelet_address(node: dict[str, Any]) -> tuple[str, int]:
    st = node.get("status") or {}
    port = ((st.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250
    for kind in ("InternalIP", "ExternalIP", "Hostname"):
        for a in st.get("addresses") or []:
            if a.get("type") == kind and a.get("address"):
                return str(a["address"]), int(port)
    raise errors.ApiError(
        500, "InternalError", f"node {node['metadata']['name']} has no address for its kubelet"
    )


def kubelet_connector(netns: str | None) -> aiohttp.TCPConnector | None:
    """Connections to kubelets made from the network namespace ``netns`` (``--kubelet-netns``,
    the egress to the nodes of a cluster on one machine); None: from ours."""
    if netns is None:
        return None
    from runtime.network import in_netns

    def socket_factory(info: Any) -> socket.socket:
        family, kind, proto = info[0], info[1], info[2]
        return in_netns(netns, lambda: socket.socket(family, kind, proto))

    return aiohttp.TCPConnector(socket_factory=socket_factory)


def check_log_options(query: Any, name: str) -> None:
    """kube-apiserver's checks of PodLogOptions, before the pod is looked up: integers (int64)
    and booleans that parse (400), then ValidatePodLogOptions (422, naming the field)."""
    numbers: dict[str, int] = {}
    for key in ("tailLines", "sinceSeconds", "limitBytes"):
        value = query.get(key)
        if value is None or value == "":
            continue
        try:
            numbers[key] = int(value)
        except ValueError:
            numbers[key] = 2**64  # out of range below
        if not -(2**63) <= numbers[key] < 2**63:
            raise errors.bad_request(f"invalid value for {key}: {value!r} is not an int64")
    for key in ("follow", "previous", "timestamps", "insecureSkipTLSVerifyBackend"):
        value = query.get(key)
        if value is not None and value.lower() not in ("", "true", "false", "1", "0"):
            raise errors.bad_request(f"invalid value for {key}: {value!r} is not a boolean")
    problems = [
        ("tailLines", "must be greater than or equal to 0", numbers.get("tailLines", 0) < 0),
        ("limitBytes", "must be greater than 0", numbers.get("limitBytes", 1) < 1),
        ("sinceSeconds", "must be greater than 0", numbers.get("sinceSeconds", 1) < 1),
    ]
    for key, text, bad in problems:
        if bad:
            raise errors.invalid(
                "PodLogOptions", name, key, f"Invalid value: {numbers[key]}: {text}"
            )
    since_time = query.get("sinceTime")
    if since_time:
        try:
            datetime.fromisoformat(since_time.replace("Z", "+00:00"))
        except ValueError:
            raise errors.bad_request(
                f"invalid value for sinceTime: {since_time!r} is not an RFC 3339 time"
            ) from None
    if query.get("sinceTime") and "sinceSeconds" in numbers:
        raise errors.invalid(
            "PodLogOptions",
            name,
            "",
            "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
        )


async def pod_log(
    request: web.Request,
    storage: Any,
    ns: str,
    name: str,
    ctx: ssl.SSLContext | None,
    netns: str | None = None,
) -> web.StreamResponse:
    check_log_options(request.query, name)
    pod = await storage.get(by_path("", "v1", "pods"), ns, name)
    container = pod_container(pod, request.query.get("container"))
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    if ctx is None:
        raise errors.ApiError(503, "ServiceUnavailable", "no client credentials for kubelets")
    node = await storage.get(by_path("", "v1", "nodes"), None, node_name)
    host, port = kubelet_address(node)
    host = url_host(host)
    params = {k: request.query[k] for k in LOG_PARAMS if k in request.query}
    url = f"https://{host}:{port}/containerLogs/{ns}/{name}/{container}"
    follow = params.get("follow") in ("true", "1")
    timeout = aiohttp.ClientTimeout(total=None if follow else 60, sock_connect=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, connector=kubelet_connector(netns)) as session,
            session.get(url, params=params, ssl=ctx) as r,
        ):
            if r.status != 200:
                text = (await r.text()).strip()
                code = r.status if r.status in (400, 403, 404) else 500
                reason = {400: "BadRequest", 403: "Forbidden", 404: "NotFound"}.get(code)
                raise errors.ApiError(code, reason or "InternalError", text)
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await resp.prepare(request)
            async for chunk in r.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
    except aiohttp.ClientError as e:
        raise errors.ApiError(
            500, "InternalError", f"Get {url}: the kubelet of node {node_name}: {e}"
        ) from None
