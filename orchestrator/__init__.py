"""Corral orchestrator: the store (``orchestrator.store``) and the Kubernetes API server
(``orchestrator.apiserver``); the agent, scheduler and controllers are to come."""
