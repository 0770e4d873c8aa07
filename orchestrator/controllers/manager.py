"""The controller manager (as kube-controller-manager): the controllers of one process over
one informer factory, started once this process holds the ``kube-system/kube-controller-manager``
Lease, stopped when it loses it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from orchestrator.client import ApiClient, ClientConfig, LeaderElector, NotFound, ResourceRef
from orchestrator.client.events import EventRecorder
from orchestrator.client.rest import (
    CERTIFICATESIGNINGREQUESTS,
    CONTROLLERREVISIONS,
    ENDPOINTSLICES,
    PERSISTENTVOLUMES,
    REPLICATIONCONTROLLERS,
    STORAGECLASSES,
)

from .base import Client, Controller, InformerFactory, Metrics
from .certificates import CsrCleaner, CsrSigner, SigningCA
from .clusterdns import ClusterDnsController
from .cronjob import CronJobController
from .daemonset import DaemonSetController
from .deployment import DeploymentController
from .endpoints import EndpointsController, EndpointSliceController
from .gc import GarbageCollector
from .job import JobController
from .namespaced import NodeIpamController, ServiceAccountController
from .nodelifecycle import NodeLifecycleController
from .podautoscaler import HPAS, HorizontalPodAutoscalerController
from .replicaset import ReplicaSetController, ReplicationManager
from .resourcequota import ResourceQuotaController
from .rootca import RootCAPublisher
from .servicelb import ServiceLBController
from .statefulset import StatefulSetController
from .volumes import LocalPathProvisioner, PersistentVolumeController

__all__ = ["CONTROLLERS", "ManagerConfig", "ControllerManager", "run_controller_manager"]

log = logging.getLogger("corral.controllers")


@dataclass(frozen=True)
class ManagerConfig:
    disabled: frozenset[str] = frozenset()
    leader_elect: bool = True
    cluster_cidr: str = "10.42.0.0/16"
    node_monitor_grace_period: float = 40.0
    lease_name: str = "kube-controller-manager"
    root_ca_pem: str = ""  # published in every namespace; the API client's CA when empty
    # the CA the csrsigning signers sign with (none: CertificateSigningRequests wait unsigned)
    signing_ca: SigningCA | None = None
    identity: str = field(
        default_factory=lambda: f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    )


Maker = Callable[[Client, InformerFactory, ManagerConfig], Controller]

CONTROLLERS: dict[str, Maker] = {
    "replicaset": lambda c, f, cfg: ReplicaSetController(c, f),
    "replicationcontroller": lambda c, f, cfg: ReplicationManager(c, f),
    "deployment": lambda c, f, cfg: DeploymentController(c, f),
    "garbagecollector": lambda c, f, cfg: GarbageCollector(c, f),
    "serviceaccount": lambda c, f, cfg: ServiceAccountController(c, f),
    "root-ca-cert-publisher": lambda c, f, cfg: RootCAPublisher(c, f, cfg.root_ca_pem),
    "nodeipam": lambda c, f, cfg: NodeIpamController(c, f, cfg.cluster_cidr),
    "endpoints": lambda c, f, cfg: EndpointsController(c, f),
    "endpointslice": lambda c, f, cfg: EndpointSliceController(c, f),
    "clusterdns": lambda c, f, cfg: ClusterDnsController(c, f),
    "daemonset": lambda c, f, cfg: DaemonSetController(c, f),
    "statefulset": lambda c, f, cfg: StatefulSetController(c, f),
    "job": lambda c, f, cfg: JobController(c, f),
    "cronjob": lambda c, f, cfg: CronJobController(c, f),
    "nodelifecycle": lambda c, f, cfg: NodeLifecycleController(c, f, cfg.node_monitor_grace_period),
    "resourcequota": lambda c, f, cfg: ResourceQuotaController(c, f),
    "servicelb": lambda c, f, cfg: ServiceLBController(c, f),
    "horizontalpodautoscaling": lambda c, f, cfg: HorizontalPodAutoscalerController(c, f),
    "persistentvolume-binder": lambda c, f, cfg: PersistentVolumeController(c, f),
    "local-path-provisioner": lambda c, f, cfg: LocalPathProvisioner(c, f),
    "csrsigning": lambda c, f, cfg: CsrSigner(c, f, _signing_ca(cfg)),
    "csrcleaner": lambda c, f, cfg: CsrCleaner(c, f),
}
# Kinds a controller needs the API to serve (else it is left out, with a log line).
REQUIRES: dict[str, tuple[ResourceRef, ...]] = {
    "replicationcontroller": (REPLICATIONCONTROLLERS,),
    "endpointslice": (ENDPOINTSLICES,),
    "clusterdns": (ENDPOINTSLICES,),
    "daemonset": (CONTROLLERREVISIONS,),
    "statefulset": (CONTROLLERREVISIONS,),
    "horizontalpodautoscaling": (HPAS,),
    "persistentvolume-binder": (PERSISTENTVOLUMES, STORAGECLASSES),
    "local-path-provisioner": (PERSISTENTVOLUMES, STORAGECLASSES),
    "csrsigning": (CERTIFICATESIGNINGREQUESTS,),
    "csrcleaner": (CERTIFICATESIGNINGREQUESTS,),
}


def _signing_ca(cfg: ManagerConfig) -> SigningCA:
    if cfg.signing_ca is None:
        raise ValueError("no signing CA (--cluster-signing-cert-file and key)")
    return cfg.signing_ca


class ControllerManager:
    def __init__(
        self, client: Client, config: ManagerConfig | None = None, metrics: Metrics | None = None
    ) -> None:
        self.client = client
        self.config = config or ManagerConfig()
        unknown = self.config.disabled - set(CONTROLLERS)
        if unknown:
            raise ValueError(
                f"unknown controllers {', '.join(sorted(unknown))} (known:"
                f" {', '.join(CONTROLLERS)})"
            )
        self.metrics = metrics or Metrics()
        self.controllers: list[Controller] = []

    async def run(self) -> None:
        """Until cancelled: lead (with leader election unless turned off)."""
        if not self.config.leader_elect:
            await self.lead()
            return
        elector = LeaderElector(self.client, self.config.lease_name, self.config.identity)  # type: ignore[arg-type]
        try:
            await elector.run(self.lead)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(elector.release())

    async def lead(self) -> None:
        factory = InformerFactory(self.client)
        self.controllers = []
        for name, make in CONTROLLERS.items():
            if name in self.config.disabled:
                continue
            missing = [r.plural for r in REQUIRES.get(name, ()) if not await self._served(r)]
            if missing:
                log.warning("controller %s not started: %s not served", name, ", ".join(missing))
                continue
            try:
                self.controllers.append(make(self.client, factory, self.config))
            except ValueError as e:  # what it needs is not configured
                log.warning("controller %s not started: %s", name, e)
        for c in self.controllers:
            c.metrics = self.metrics
            self.metrics.register(c)
            if c.component is not None:
                c.recorder = EventRecorder(self.client, c.component, workers=1)  # type: ignore[arg-type]
        for c in self.controllers:
            await c.prepare()
        factory.start()
        try:
            await factory.wait_synced()
            log.info("controllers started: %s", ", ".join(c.name for c in self.controllers))
            await asyncio.gather(*(c.run() for c in self.controllers))
        finally:
            await factory.stop()
            for c in self.controllers:
                if c.recorder is not None:
                    await c.recorder.close()

    async def _served(self, res: ResourceRef) -> bool:
        try:
            await self.client.list(res, None, limit=1)
        except NotFound:
            return False
        return True


async def run_controller_manager(
    config: ClientConfig, manager: ManagerConfig, metrics: Metrics | None = None
) -> None:
    """The controller manager over its own connection to the API, until cancelled."""
    if not manager.root_ca_pem and config.ca_pem:
        manager = replace(manager, root_ca_pem=config.ca_pem.decode())
    async with ApiClient(config, user_agent="corral-controller-manager") as client:
        await ControllerManager(client, manager, metrics).run()
