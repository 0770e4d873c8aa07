"""Defaulting and validation of the workload kinds (apps/v1, batch/v1) as kube-apiserver does
them: the kind's own defaults, and the pod template defaulted and validated as a Pod's spec."""

from __future__ import annotations

import json
import re
from typing import Any

from kubemodel._generated import (
    CronJob,
    DaemonSet,
    DaemonSetUpdateStrategy,
    Deployment,
    DeploymentStrategy,
    EmptyDirVolumeSource,
    Job,
    JobSpec,
    LabelSelector,
    ObjectMeta,
    Pod,
    PodTemplateSpec,
    ReplicaSet,
    ReplicationController,
    RollingUpdateDaemonSet,
    RollingUpdateDeployment,
    RollingUpdateStatefulSetStrategy,
    StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetUpdateStrategy,
    Volume,
)
from kubemodel.codec import DEFAULTERS, VALIDATORS
from kubemodel.errors import FieldError, at
from kubemodel.pod import _validate_spec, set_defaults_pod, validate_meta

__all__ = ["default_template", "validate_template"]

JOB_RESTART_POLICIES = ("OnFailure", "Never")


def default_template(t: PodTemplateSpec | None, job: bool = False) -> None:
    if t is None or t.spec is None:
        return
    keep_restart = t.spec.restart_policy
    pod = Pod(metadata=t.metadata or ObjectMeta(), spec=t.spec)
    set_defaults_pod(pod)
    if job:  # a Job's pods have no default restart policy: it must be given
        t.spec.restart_policy = keep_restart


def validate_template(
    t: PodTemplateSpec | None, selector: LabelSelector | None, path: str, job: bool = False
) -> None:
    if t is None:
        raise FieldError(path, "is required")
    if t.spec is None:
        raise FieldError(at(path, "spec"), "is required")
    labels = (t.metadata.labels if t.metadata else None) or {}
    if selector is not None:
        if not selector.match_labels and not selector.match_expressions:
            raise FieldError(
                path.rsplit(".", 1)[0] + ".selector",
                "empty selector is invalid for deployment",
            )
        for key, value in (selector.match_labels or {}).items():
            if labels.get(key) != value:
                raise FieldError(
                    at(at(path, "metadata"), "labels"),
                    f"Invalid value: {labels}: `selector` does not match template `labels`",
                )
    if job and t.spec.restart_policy not in JOB_RESTART_POLICIES:
        raise FieldError(
            at(at(path, "spec"), "restartPolicy"),
            'Required value: valid values: "OnFailure", "Never"',
        )
    _validate_spec(t.spec, at(path, "spec"))


MAX_INT32 = 2**31 - 1


def _nonneg(value: int | None, where: str) -> None:
    """A count of the workload kinds: an int32 in Kubernetes, not negative."""
    if value is not None and value < 0:
        raise FieldError(where, "must be greater than or equal to 0")
    if value is not None and value > MAX_INT32:
        raise FieldError(where, f"Invalid value: {value}: must be at most {MAX_INT32} (int32)")


def _defaults_deployment(d: Deployment) -> None:
    s = d.spec
    if s is None:
        return
    if s.replicas is None:
        s.replicas = 1
    if s.strategy is None:
        s.strategy = DeploymentStrategy()
    s.strategy.type = s.strategy.type or "RollingUpdate"
    if s.strategy.type == "RollingUpdate":
        ru = s.strategy.rolling_update or RollingUpdateDeployment()
        ru.max_surge = "25%" if ru.max_surge is None else ru.max_surge
        ru.max_unavailable = "25%" if ru.max_unavailable is None else ru.max_unavailable
        s.strategy.rolling_update = ru
    if s.revision_history_limit is None:
        s.revision_history_limit = 10
    if s.progress_deadline_seconds is None:
        s.progress_deadline_seconds = 600
    default_template(s.template)


def _defaults_replicaset(r: ReplicaSet) -> None:
    if r.spec is not None:
        if r.spec.replicas is None:
            r.spec.replicas = 1
        default_template(r.spec.template)


def _defaults_replicationcontroller(r: ReplicationController) -> None:
    """core/v1 SetDefaults_ReplicationController: the selector and the controller's own labels
    are the template's labels when not given; one replica."""
    s = r.spec
    if s is None:
        return
    labels = (s.template.metadata.labels if s.template and s.template.metadata else None) or None
    if labels:
        if not s.selector:
            s.selector = dict(labels)
        if r.metadata is not None and not r.metadata.labels:
            r.metadata.labels = dict(labels)
    if s.replicas is None:
        s.replicas = 1
    default_template(s.template)


def _defaults_daemonset(d: DaemonSet) -> None:
    s = d.spec
    if s is None:
        return
    if s.update_strategy is None:
        s.update_strategy = DaemonSetUpdateStrategy()
    s.update_strategy.type = s.update_strategy.type or "RollingUpdate"
    if s.update_strategy.type == "RollingUpdate":
        ru = s.update_strategy.rolling_update or RollingUpdateDaemonSet()
        ru.max_unavailable = 1 if ru.max_unavailable is None else ru.max_unavailable
        ru.max_surge = 0 if ru.max_surge is None else ru.max_surge
        s.update_strategy.rolling_update = ru
    if s.revision_history_limit is None:
        s.revision_history_limit = 10
    default_template(s.template)


def _defaults_statefulset(st: StatefulSet) -> None:
    s = st.spec
    if s is None:
        return
    if s.replicas is None:
        s.replicas = 1
    s.pod_management_policy = s.pod_management_policy or "OrderedReady"
    if s.update_strategy is None:
        s.update_strategy = StatefulSetUpdateStrategy()
    s.update_strategy.type = s.update_strategy.type or "RollingUpdate"
    if s.update_strategy.type == "RollingUpdate" and s.update_strategy.rolling_update is None:
        s.update_strategy.rolling_update = RollingUpdateStatefulSetStrategy(partition=0)
    if s.revision_history_limit is None:
        s.revision_history_limit = 10
    if s.persistent_volume_claim_retention_policy is None:
        s.persistent_volume_claim_retention_policy = (
            StatefulSetPersistentVolumeClaimRetentionPolicy(
                when_deleted="Retain", when_scaled="Retain"
            )
        )
    default_template(s.template)


def _defaults_jobspec(s: JobSpec | None) -> None:
    if s is None:
        return
    if s.completions is None and s.parallelism is None:
        s.completions = 1  # a non-parallel job; a parallel one without completions is a work queue
    if s.parallelism is None:
        s.parallelism = 1
    if s.backoff_limit is None:
        s.backoff_limit = 6
    s.completion_mode = s.completion_mode or "NonIndexed"
    if s.suspend is None:
        s.suspend = False
    s.pod_replacement_policy = s.pod_replacement_policy or "TerminatingOrFailed"
    default_template(s.template, job=True)


def _defaults_job(j: Job) -> None:
    _defaults_jobspec(j.spec)


def _defaults_cronjob(c: CronJob) -> None:
    s = c.spec
    if s is None:
        return
    s.concurrency_policy = s.concurrency_policy or "Allow"
    if s.suspend is None:
        s.suspend = False
    if s.successful_jobs_history_limit is None:
        s.successful_jobs_history_limit = 3
    if s.failed_jobs_history_limit is None:
        s.failed_jobs_history_limit = 1
    _defaults_jobspec(s.job_template.spec)


def _validate_workload(obj: Any, job: bool = False) -> None:
    validate_meta(obj.metadata)
    if obj.spec is None:
        raise FieldError("spec", "is required")
    _nonneg(getattr(obj.spec, "replicas", None), "spec.replicas")
    validate_template(obj.spec.template, obj.spec.selector, "spec.template", job)


def _validate_statefulset(st: StatefulSet) -> None:
    """Its pods' volumes include a claim per volumeClaimTemplates entry (the template's mounts
    may name them); the retention policy is Retain or Delete."""
    spec = st.spec
    policy = spec.persistent_volume_claim_retention_policy if spec else None
    for field, value in (
        ("whenDeleted", policy.when_deleted if policy else None),
        ("whenScaled", policy.when_scaled if policy else None),
    ):
        if value is not None and value not in ("Retain", "Delete"):
            raise FieldError(
                f"spec.persistentVolumeClaimRetentionPolicy.{field}",
                f'Unsupported value: "{value}": supported values: "Retain", "Delete"',
            )
    names = [
        (t.metadata.name if t.metadata else None) or ""
        for t in (spec.volume_claim_templates if spec else None) or []
    ]
    template = spec.template.spec if spec and spec.template else None
    if not names or template is None:
        _validate_workload(st)
        return
    given = {v.name for v in template.volumes or []}
    saved = template.volumes
    template.volumes = [
        *(saved or []),
        *(Volume(name=n, empty_dir=EmptyDirVolumeSource()) for n in names if n not in given),
    ]
    try:
        _validate_workload(st)
    finally:
        template.volumes = saved


_PERCENT = re.compile(r"[0-9]+%")


def _int_or_percent(value: int | str | None, where: str) -> int | None:
    """ValidatePositiveIntOrPercent: the value as a number (a percent's number), None if unset."""
    if value is None:
        return None
    if isinstance(value, str):
        if not _PERCENT.fullmatch(value):
            raise FieldError(
                where,
                f'Invalid value: "{value}": a valid percent string must be a numeric string'
                " followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is"
                " '[0-9]+%')",
            )
        return int(value[:-1])
    _nonneg(value, where)
    return value


def _validate_deployment(d: Deployment) -> None:
    """ValidateDeploymentSpec's strategy and counts, then the workload's template."""
    _validate_workload(d)
    s = d.spec
    assert s is not None
    for value, name in ((s.min_ready_seconds, "minReadySeconds"),
                        (s.revision_history_limit, "revisionHistoryLimit"),
                        (s.progress_deadline_seconds, "progressDeadlineSeconds")):  # fmt: skip
        _nonneg(value, f"spec.{name}")
    strategy = s.strategy or DeploymentStrategy()
    kind = strategy.type or "RollingUpdate"
    where = "spec.strategy"
    if kind not in ("Recreate", "RollingUpdate"):
        raise FieldError(
            f"{where}.type",
            f'Unsupported value: "{kind}": supported values: "Recreate", "RollingUpdate"',
        )
    ru = strategy.rolling_update
    if kind == "Recreate":
        if ru is not None:
            raise FieldError(
                f"{where}.rollingUpdate",
                "Forbidden: may not be specified when strategy `type` is 'Recreate'",
            )
        return
    if ru is None:
        return
    unavailable = _int_or_percent(ru.max_unavailable, f"{where}.rollingUpdate.maxUnavailable")
    surge = _int_or_percent(ru.max_surge, f"{where}.rollingUpdate.maxSurge")
    if isinstance(ru.max_unavailable, str) and (unavailable or 0) > 100:
        raise FieldError(
            f"{where}.rollingUpdate.maxUnavailable",
            f'Invalid value: "{ru.max_unavailable}": must not be greater than 100%',
        )
    if not unavailable and not surge:
        raise FieldError(
            f"{where}.rollingUpdate.maxUnavailable",
            f"Invalid value: {json.dumps(ru.max_unavailable)}: may not be 0 when `maxSurge` is 0",
        )


def _validate_replicationcontroller(r: ReplicationController) -> None:
    """ValidateReplicationControllerSpec: a non-empty equality selector the template's labels
    match, and pods that always restart."""
    validate_meta(r.metadata)
    s = r.spec
    if s is None:
        raise FieldError("spec", "is required")
    _nonneg(s.replicas, "spec.replicas")
    _nonneg(s.min_ready_seconds, "spec.minReadySeconds")
    if not s.selector:
        raise FieldError("spec.selector", "Required value")
    validate_template(s.template, LabelSelector(match_labels=s.selector), "spec.template")
    assert s.template is not None and s.template.spec is not None
    policy = s.template.spec.restart_policy
    if policy not in (None, "Always"):
        raise FieldError(
            "spec.template.spec.restartPolicy",
            f'Unsupported value: "{policy}": supported values: "Always"',
        )


def _validate_job(j: Job) -> None:
    validate_meta(j.metadata)
    if j.spec is None:
        raise FieldError("spec", "is required")
    for f in ("parallelism", "completions", "backoff_limit"):
        _nonneg(getattr(j.spec, f), f"spec.{f}")
    validate_template(j.spec.template, None, "spec.template", job=True)


def _validate_cronjob(c: CronJob) -> None:
    validate_meta(c.metadata)
    if c.spec is None:
        raise FieldError("spec", "is required")
    if not c.spec.schedule.strip():
        raise FieldError("spec.schedule", "is required")
    if c.spec.job_template.spec is None:
        raise FieldError("spec.jobTemplate.spec", "is required")
    validate_template(
        c.spec.job_template.spec.template, None, "spec.jobTemplate.spec.template", job=True
    )


DEFAULTERS.update(
    {
        Deployment: _defaults_deployment,
        ReplicaSet: _defaults_replicaset,
        ReplicationController: _defaults_replicationcontroller,
        DaemonSet: _defaults_daemonset,
        StatefulSet: _defaults_statefulset,
        Job: _defaults_job,
        CronJob: _defaults_cronjob,
    }
)
VALIDATORS.update(
    {
        Deployment: _validate_deployment,
        ReplicaSet: _validate_workload,
        ReplicationController: _validate_replicationcontroller,
        DaemonSet: _validate_workload,
        StatefulSet: _validate_statefulset,
        Job: _validate_job,
        CronJob: _validate_cronjob,
    }
)
