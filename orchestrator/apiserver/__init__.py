"""The Kubernetes API server: discovery, the generic resource layer over the store (CRUD,
list, watch, patch), Table output, Status errors, TLS and client-certificate authentication.

    run_server(ServerConfig(data_dir=Path("/var/lib/corral/server")))   # corral server
"""

from __future__ import annotations

from .server import ServerConfig, ServerError, run_server

__all__ = ["ServerConfig", "ServerError", "run_server"]
