"""``metrics.k8s.io/v1beta1``, what ``kubectl top`` reads: NodeMetrics and PodMetrics, served
by the API server itself where a k3s cluster runs metrics-server behind the aggregator.

As metrics-server does, it scrapes each kubelet's ``/metrics/resource`` (cumulative CPU
seconds and the memory working set, orchestrator.kubelet.server) and turns two samples into a
CPU rate over the time between them, the ``window``. A request uses the sample the previous
request left when it is at least MIN_WINDOW old (and no older than MAX_WINDOW); otherwise it
takes two, MIN_WINDOW apart. CPU is given in nanocores, memory in bytes (BinarySI), as
metrics-server gives them. A node whose kubelet cannot be reached, and the pods on it, are
left out of lists (metrics-server logs them and serves the rest); asked for by name they are
NotFound, as metrics-server answers.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from . import errors
from .podlogs import kubelet_address, kubelet_connector, url_host
from .resources import by_path
from .selectors import Selector, label_selector

__all__ = ["GROUP", "RESOURCES", "VERSION", "MetricsApi", "parse_resource_metrics"]

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
RESOURCES = (("nodes", "NodeMetrics", False), ("pods", "PodMetrics", True))
MIN_WINDOW = 1.0  # seconds between the two samples of a rate
MAX_WINDOW = 120.0  # an older sample is taken again
SCRAPE_TIMEOUT = 10.0

Series = dict[tuple[str, ...], tuple[float, float]]  # labels -> (value, time in seconds)


@dataclass
class Sample:
    time: float
    node: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> (v, t)
    # (namespace, pod) -> container -> metric -> (value, time)
    containers: dict[tuple[str, str], dict[str, dict[str, tuple[float, float]]]] = field(
        default_factory=dict
    )


def _labels(text: str) -> dict[str, str] | None:
    """``a="x",b="y"`` (Prometheus' escapes) -> dict; None when it does not parse."""
    out: dict[str, str] = {}
    i = 0
    while i < len(text):
        eq = text.find("=", i)
        if eq < 0 or eq + 1 >= len(text) or text[eq + 1] != '"':
            return None
        key = text[i:eq].strip().lstrip(",").strip()
        j, value = eq + 2, []
        while j < len(text) and text[j] != '"':
            if text[j] == "\\" and j + 1 < len(text):
                value.append({"n": "\n"}.get(text[j + 1], text[j + 1]))
                j += 2
            else:
                value.append(text[j])
                j += 1
        if j >= len(text):
            return None
        out[key] = "".join(value)
        i = j + 1
        while i < len(text) and text[i] in ", ":
            i += 1
    return out


def parse_resource_metrics(text: str, now: float) -> Sample:
    """A kubelet's ``/metrics/resource`` answer: the node's and the containers' CPU seconds
    and working sets (samples without a timestamp are stamped ``now``)."""
    sample = Sample(now)
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, _, rest = line.partition("{")
            body, _, tail = rest.rpartition("}")
            labels = _labels(body)
        else:
            name, _, tail = line.partition(" ")
            labels = {}
        parts = tail.split()
        if labels is None or not parts:
            continue
        try:
            value = float(parts[0])
            stamp = int(parts[1]) / 1000 if len(parts) > 1 else now
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        metric = name.strip()
        if metric.startswith("node_"):
            sample.node[metric[5:]] = (value, stamp)
        elif metric.startswith("container_") and {"namespace", "pod", "container"} <= set(labels):
            pod = sample.containers.setdefault((labels["namespace"], labels["pod"]), {})
            pod.setdefault(labels["container"], {})[metric[10:]] = (value, stamp)
    return sample


def _rate(old: tuple[float, float] | None, new: tuple[float, float] | None) -> int | None:
    """Nanocores between two (cpu seconds, time) samples; None when they do not make one
    (a restart reset the counter, no time passed)."""
    if old is None or new is None or new[1] <= old[1] or new[0] < old[0]:
        return None
    return int((new[0] - old[0]) / (new[1] - old[1]) * 1e9)


def binary_si(n: int) -> str:
    """Bytes as a BinarySI quantity in canonical form (``16264Ki``, ``3Mi``, ``1000``)."""
    for suffix, power in (("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if n and n % (1 << power) == 0:
            return f"{n >> power}{suffix}"
    return str(n)


def _duration(seconds: float) -> str:
    """A Go time.Duration's String() for the window (``1.004s``, ``20s``)."""
    ms = round(seconds * 1000)
    whole, frac = divmod(ms, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".") + "s"


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class MetricsApi:
    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self._last: dict[str, Sample] = {}  # node name -> its latest sample
        self._lock = asyncio.Lock()

    async def _scrape(
        self, session: aiohttp.ClientSession, node: dict[str, Any], ctx: ssl.SSLContext
    ) -> Sample:
        host, port = kubelet_address(node)
        host = url_host(host)
        async with session.get(f"https://{host}:{port}/metrics/resource", ssl=ctx) as r:
            if r.status != 200:
                raise aiohttp.ClientResponseError(
                    r.request_info, r.history, status=r.status, message=await r.text()
                )
            return parse_resource_metrics(await r.text(), time.time())

    async def _samples(
        self, nodes: list[dict[str, Any]], ctx: ssl.SSLContext | None, netns: str | None
    ) -> dict[str, tuple[Sample, Sample]]:
        """node name -> (older, newer) sample, for the nodes whose kubelet answered (reached
        with ``ctx`` from ``netns``)."""
        if ctx is None:
            raise errors.ApiError(503, "ServiceUnavailable", "no client credentials for kubelets")
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
        async with (
            self._lock,
            aiohttp.ClientSession(timeout=timeout, connector=kubelet_connector(netns)) as s,
        ):

            async def scrape_all(which: list[dict[str, Any]]) -> dict[str, Sample]:
                got = await asyncio.gather(
                    *(self._scrape(s, n, ctx) for n in which), return_exceptions=True
                )
                return {
                    n["metadata"]["name"]: g
                    for n, g in zip(which, got, strict=True)
                    if isinstance(g, Sample)
                }

            now = time.time()
            fresh = await scrape_all(nodes)
            older: dict[str, Sample] = {}
            again = []
            for name in fresh:
                last = self._last.get(name)
                if last is not None and MIN_WINDOW <= now - last.time <= MAX_WINDOW:
                    older[name] = last
                else:
                    again.append(name)
            if again:
                await asyncio.sleep(MIN_WINDOW)
                later = await scrape_all([n for n in nodes if n["metadata"]["name"] in again])
                for name, sample in later.items():
                    older[name] = fresh[name]
                    fresh[name] = sample
            self._last.update(fresh)
            return {name: (older[name], fresh[name]) for name in fresh if name in older}

    async def handle(
        self,
        request: web.Request,
        version: str,
        tail: str,
        ctx: ssl.SSLContext | None,
        netns: str | None,
    ) -> web.Response:
        if version != VERSION:
            raise errors.not_found_path()
        if request.method != "GET":
            raise errors.method_not_allowed()
        segs = [s for s in tail.split("/") if s]
        ns: str | None = None
        if len(segs) >= 3 and segs[0] == "namespaces":
            ns, segs = segs[1], segs[2:]
        if not segs or len(segs) > 2 or segs[0] not in ("nodes", "pods"):
            raise errors.not_found_path()
        resource, name = segs[0], (segs[1] if len(segs) > 1 else None)
        if resource == "nodes" and ns is not None:
            raise errors.not_found_path()
        selector = label_selector(request.query.get("labelSelector")) or (lambda obj: True)
        if resource == "nodes":
            items = await self._node_metrics(name, selector, ctx, netns)
        else:
            items = await self._pod_metrics(ns, name, selector, ctx, netns)
        kind = "NodeMetrics" if resource == "nodes" else "PodMetrics"
        if name is not None:
            if not items:
                shown = name if resource == "nodes" else f"{ns}/{name}"
                raise errors.not_found(f"{kind.lower()}", shown, GROUP)
            return web.json_response(items[0])
        return web.json_response(
            {"kind": f"{kind}List", "apiVersion": f"{GROUP}/{VERSION}", "metadata": {},
             "items": items}
        )  # fmt: skip

    async def _nodes(self, name: str | None) -> list[dict[str, Any]]:
        res = by_path("", "v1", "nodes")
        if name is not None:
            try:
                return [await self.storage.get(res, None, name)]
            except errors.ApiError as e:
                if e.code == 404:
                    return []
                raise
        return list((await self.storage.list(res, None))[0])

    async def _node_metrics(
        self, name: str | None, selector: Selector, ctx: ssl.SSLContext | None, netns: str | None
    ) -> list[dict[str, Any]]:
        nodes = [n for n in await self._nodes(name) if selector(n)]
        samples = await self._samples(nodes, ctx, netns)
        out = []
        for node in nodes:
            meta = node["metadata"]
            pair = samples.get(meta["name"])
            if pair is None:
                continue
            old, new = pair
            cpu = _rate(old.node.get("cpu_usage_seconds_total"),
                        new.node.get("cpu_usage_seconds_total"))  # fmt: skip
            mem = new.node.get("memory_working_set_bytes")
            if cpu is None or mem is None:
                continue
            t = new.node["cpu_usage_seconds_total"][1]
            window = t - old.node["cpu_usage_seconds_total"][1]
            out.append(
                {
                    "kind": "NodeMetrics",
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "metadata": {
                        "name": meta["name"],
                        "creationTimestamp": _stamp(time.time()),
                        "labels": meta.get("labels") or {},
                    },
                    "timestamp": _stamp(t),
                    "window": _duration(window),
                    "usage": {"cpu": f"{cpu}n", "memory": binary_si(int(mem[0]))},
                }
            )
        return out

    async def _pod_metrics(
        self,
        ns: str | None,
        name: str | None,
        selector: Selector,
        ctx: ssl.SSLContext | None,
        netns: str | None,
    ) -> list[dict[str, Any]]:
        res = by_path("", "v1", "pods")
        if name is not None:
            assert ns is not None
            try:
                pods = [await self.storage.get(res, ns, name)]
            except errors.ApiError as e:
                if e.code != 404:
                    raise
                pods = []
        else:
            pods = list((await self.storage.list(res, ns))[0])
        pods = [
            p
            for p in pods
            if selector(p)
            and (p.get("spec") or {}).get("nodeName")
            and (p.get("status") or {}).get("phase") == "Running"
        ]
        wanted = {p["spec"]["nodeName"] for p in pods}
        nodes = [n for n in await self._nodes(None) if n["metadata"]["name"] in wanted]
        samples = await self._samples(nodes, ctx, netns)
        out = []
        for pod in pods:
            meta = pod["metadata"]
            pair = samples.get(pod["spec"]["nodeName"])
            if pair is None:
                continue
            old, new = pair
            key = (meta.get("namespace") or "", meta["name"])
            before, after = old.containers.get(key, {}), new.containers.get(key, {})
            containers, stamps, windows = [], [], []
            for cname in sorted(after):
                cpu_new = after[cname].get("cpu_usage_seconds_total")
                cpu_old = (before.get(cname) or {}).get("cpu_usage_seconds_total")
                mem = after[cname].get("memory_working_set_bytes")
                cpu = _rate(cpu_old, cpu_new)
                if cpu is None or mem is None or cpu_new is None or cpu_old is None:
                    continue
                containers.append(
                    {"name": cname, "usage": {"cpu": f"{cpu}n", "memory": binary_si(int(mem[0]))}}
                )
                stamps.append(cpu_new[1])
                windows.append(cpu_new[1] - cpu_old[1])
            if not containers:
                continue  # metrics-server leaves out a pod it has no container of
            out.append(
                {
                    "kind": "PodMetrics",
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "metadata": {
                        "name": meta["name"],
                        "namespace": meta.get("namespace") or "",
                        "creationTimestamp": _stamp(time.time()),
                        "labels": meta.get("labels") or {},
                    },
                    "timestamp": _stamp(max(stamps)),
                    "window": _duration(max(windows)),
                    "containers": containers,
                }
            )
        return out
