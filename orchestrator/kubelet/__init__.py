"""The kubelet and agent: a node that joins the cluster with a token and runs the pods bound to
it through the node runtime (``runtime.pod.api``, its only door to the node), reporting back
through the API (``orchestrator.client``, its only door to the cluster)."""

from __future__ import annotations

from .agent import AgentConfig, AgentError, run_agent, serve_agent
from .join import JoinError

__all__ = ["AgentConfig", "AgentError", "JoinError", "run_agent", "serve_agent"]
