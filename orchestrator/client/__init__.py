"""The cluster's client: REST over HTTPS, informers (list + watch caches), a work queue and
leader election. Scheduler, controllers, kubelet and proxy reach the cluster only through this
package (import-linter keeps them off the store and the API server's code)."""

from __future__ import annotations

from .informer import Handler, Informer, Transform, meta_key, split_key, strip_managed_fields
from .leader import LeaderElector, micro_time, parse_time
from .rest import (
    AlreadyExists,
    ApiClient,
    ClientConfig,
    ClientError,
    Conflict,
    Gone,
    NotFound,
    Obj,
    ResourceRef,
    WatchEvent,
    load_kubeconfig,
)
from .workqueue import ShutDown, WorkQueue

__all__ = [
    "AlreadyExists",
    "ApiClient",
    "ClientConfig",
    "ClientError",
    "Conflict",
    "Gone",
    "Handler",
    "Informer",
    "LeaderElector",
    "NotFound",
    "Obj",
    "ResourceRef",
    "ShutDown",
    "Transform",
    "WatchEvent",
    "WorkQueue",
    "load_kubeconfig",
    "meta_key",
    "micro_time",
    "parse_time",
    "split_key",
    "strip_managed_fields",
]
