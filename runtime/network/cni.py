"""The CNI backend: run standard CNI plugins from a network configuration list.

As the spec (and libcni) does: ADD runs the conflist's plugins in order, each given the previous
one's result as ``prevResult``; DEL runs them in reverse with the cached ADD result; CHECK runs
them in order with the cached result. Each plugin is an executable found in ``plugin_dirs``, run
with CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH (and CNI_ARGS) in its
environment and its configuration on stdin, inside the node's network namespace. A plugin that
declares ``capabilities`` gets the matching capability arguments (e.g. ``portMappings``) in
``runtimeConfig``. Results of ADD are cached on disk (like libcni's /var/lib/cni/results) so
CHECK and DEL work from another process.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral_common import hostsys
from corral_common.defaults import CNI_CACHE_DIR
from runtime.network.errors import CniError, NetworkConfigError
from runtime.network.netns import Netns, in_netns

DEFAULT_PLUGIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni", "/usr/libexec/cni")
DEFAULT_CACHE_DIR = Path(CNI_CACHE_DIR)


@dataclass(frozen=True)
class CniNetwork:
    name: str
    cni_version: str
    plugins: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_conflist(cls, source: str | os.PathLike[str] | Mapping[str, Any]) -> CniNetwork:
        """A conflist from a file or its parsed dict; a single-plugin .conf is accepted too."""
        data: Any = source
        if not isinstance(source, Mapping):
            data = json.loads(Path(source).read_text())
        if not isinstance(data, Mapping):
            raise NetworkConfigError("conflist", "must be a JSON object")
        plugins = data.get("plugins")
        if plugins is None and "type" in data:
            plugins = [{k: v for k, v in data.items() if k not in ("name", "cniVersion")}]
        if not plugins or not isinstance(plugins, list):
            raise NetworkConfigError("plugins", "a conflist needs a non-empty plugins list")
        for i, p in enumerate(plugins):
            if not isinstance(p, Mapping) or not isinstance(p.get("type"), str):
                raise NetworkConfigError(f"plugins[{i}].type", "required")
        if not isinstance(data.get("name"), str) or not data["name"]:
            raise NetworkConfigError("name", "required")
        return cls(str(data["name"]), str(data.get("cniVersion", "1.0.0")), tuple(plugins))


@dataclass(frozen=True)
class CniResult:
    raw: Mapping[str, Any]

    @property
    def ips(self) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        return [ipaddress.ip_interface(ip["address"]) for ip in self.raw.get("ips", [])]

    @property
    def ip(self) -> ipaddress.IPv4Address | None:
        """The first IPv4 address."""
        for i in self.ips:
            if isinstance(i, ipaddress.IPv4Interface):
                return i.ip
        return None

    @property
    def interfaces(self) -> list[Mapping[str, Any]]:
        return list(self.raw.get("interfaces", []))


class CniBackend:
    def __init__(
        self,
        network: CniNetwork,
        plugin_dirs: Sequence[str] = DEFAULT_PLUGIN_DIRS,
        cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
        node_netns: Netns | str | int | None = None,
    ) -> None:
        self.network = network
        self.plugin_dirs = tuple(plugin_dirs)
        self.cache_dir = Path(cache_dir)
        self.ns = Netns.of(node_netns)

    def _find(self, kind: str) -> str:
        for d in self.plugin_dirs:
            path = os.path.join(d, kind)
            if os.access(path, os.X_OK):
                return path
        raise CniError(f"plugin {kind}", 7, "failed to find plugin", f"in {list(self.plugin_dirs)}")

    def _cache(self, cid: str, ifname: str) -> Path:
        return self.cache_dir / "results" / f"{self.network.name}-{cid}-{ifname}"

    def _exec(
        self,
        command: str,
        plugin: Mapping[str, Any],
        cid: str,
        netns: Netns,
        ifname: str,
        prev: Mapping[str, Any] | None,
        capability_args: Mapping[str, Any],
        cni_args: Mapping[str, str],
    ) -> Mapping[str, Any] | None:
        conf = dict(plugin)
        conf["name"] = self.network.name
        conf["cniVersion"] = self.network.cni_version
        conf.pop("capabilities", None)
        caps = {k: v for k, v in capability_args.items() if plugin.get("capabilities", {}).get(k)}
        if caps:
            conf["runtimeConfig"] = caps
        if prev is not None:
            conf["prevResult"] = prev
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns.proc_path(),
            "CNI_IFNAME": ifname,
            "CNI_PATH": os.pathsep.join(self.plugin_dirs),
        }
        if cni_args:
            env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in cni_args.items())
        path = self._find(str(plugin["type"]))
        step = f"cni {command} {plugin['type']} ({self.network.name}, {cid})"

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [path], input=json.dumps(conf), env=env, capture_output=True, text=True,
                timeout=60,
            )  # fmt: skip

        res = in_netns(self.ns, run)
        out: Any = None
        if res.stdout.strip():
            try:
                out = json.loads(res.stdout)
            except json.JSONDecodeError:
                out = None
        if res.returncode != 0:
            if isinstance(out, Mapping) and "code" in out:
                raise CniError(
                    step, int(out["code"]), str(out.get("msg", "")), str(out.get("details", ""))
                )  # noqa: E501
            raise CniError(step, 999, f"exit status {res.returncode}", res.stderr.strip())
        if command == "ADD" and not isinstance(out, Mapping):
            raise CniError(step, 999, "no result", res.stderr.strip())
        return out if isinstance(out, Mapping) else None

    def add(
        self,
        container_id: str,
        netns: Netns | str | int,
        ifname: str = "eth0",
        capability_args: Mapping[str, Any] | None = None,
        cni_args: Mapping[str, str] | None = None,
    ) -> CniResult:
        ns, caps, args = Netns.of(netns), dict(capability_args or {}), dict(cni_args or {})
        prev: Mapping[str, Any] | None = None
        for plugin in self.network.plugins:
            prev = self._exec("ADD", plugin, container_id, ns, ifname, prev, caps, args)
        assert prev is not None
        cache = self._cache(container_id, ifname)
        cache.parent.mkdir(parents=True, exist_ok=True)
        hostsys.host().write_atomic(
            cache,
            json.dumps(
                {
                    "kind": "cniCacheV1",
                    "containerId": container_id,
                    "ifName": ifname,
                    "networkName": self.network.name,
                    "capabilityArgs": caps,
                    "cniArgs": args,
                    "result": prev,
                }  # fmt: skip
            ),
            0o644,
        )
        return CniResult(prev)

    def cached(self, container_id: str, ifname: str = "eth0") -> Mapping[str, Any] | None:
        try:
            return json.loads(self._cache(container_id, ifname).read_text())
        except FileNotFoundError:
            return None

    def check(self, container_id: str, netns: Netns | str | int, ifname: str = "eth0") -> None:
        cached = self.cached(container_id, ifname)
        if cached is None:
            raise CniError(
                f"cni CHECK ({self.network.name}, {container_id})", 999, "no cached result"
            )  # noqa: E501
        for plugin in self.network.plugins:
            self._exec(
                "CHECK", plugin, container_id, Netns.of(netns), ifname, cached["result"],
                cached.get("capabilityArgs", {}), cached.get("cniArgs", {}),
            )  # fmt: skip

    def delete(
        self,
        container_id: str,
        netns: Netns | str | int | None,
        ifname: str = "eth0",
        capability_args: Mapping[str, Any] | None = None,
    ) -> None:
        """DEL in reverse order; ``netns`` may be None when the namespace is gone (plugins then
        release what they hold outside it, e.g. host-local addresses and portmap rules)."""
        cached = self.cached(container_id, ifname) or {}
        caps = dict(capability_args or cached.get("capabilityArgs", {}))
        ns = Netns.of(netns) if netns is not None else Netns(path="")
        for plugin in reversed(self.network.plugins):
            self._exec(
                "DEL", plugin, container_id, ns, ifname, cached.get("result"), caps,
                cached.get("cniArgs", {}),
            )  # fmt: skip
        self._cache(container_id, ifname).unlink(missing_ok=True)
