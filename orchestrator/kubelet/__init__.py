"""The kubelet and agent: a node that joins the cluster with a token and runs the pods bound to
it through the node runtime (``runtime.pod.api``, its only door to the node), reporting back
through the API (``orchestrator.client``, its only door to the cluster).

The names below load their module at first use: ``corral agent`` checks its options with
``orchestrator.kubelet.config`` alone, without the agent's own modules (aiohttp, the node
runtime), which only the agent's process imports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral_common.lazy import lazy_names

if TYPE_CHECKING:
    from .agent import AgentError, run_agent, serve_agent
    from .config import AgentConfig
    from .join import JoinError

__all__ = ["AgentConfig", "AgentError", "JoinError", "run_agent", "serve_agent"]

_HOMES = {
    "AgentConfig": "config",
    "AgentError": "agent",
    "run_agent": "agent",
    "serve_agent": "agent",
    "JoinError": "join",
}


__getattr__ = lazy_names(__name__, _HOMES, globals())
