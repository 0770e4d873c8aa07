"""Pods whose pod.json was written before the typed record (no ``version``; a prepared pod has
no ``pod_ip`` yet) are listed, started, stopped and removed by today's code, with real
monitors, mounts and cgroups; the ``pods`` fixture checks that nothing is left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.pod import api
from tests.integration.test_pods import (  # noqa: F401 - fixtures
    Pods,
    image_tar,
    pod_cgroups,
    pods,
    sh,
    until,
)

__all__ = ["image_tar", "pods"]

pytestmark = pytest.mark.root


def as_old_code_wrote_it(path: Path, *, started: bool) -> None:
    """Rewrite ``path`` as the code before the typed record wrote it (api.create's dict,
    prepare's additions, start's pod_ip; json.dumps(indent=1, sort_keys=True))."""
    rec = json.loads(path.read_text())
    rec.pop("version")
    if not started:
        rec.pop("pod_ip")
    path.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    assert "version" not in path.read_text()


def test_an_old_running_pod_is_listed_stopped_and_removed(pods: Pods) -> None:
    uid = pods.run(pods.manifest("old-run", [sh("c", "sleep 1000")], restartPolicy="Never"))
    pid = pods.running_pid(uid, "c")
    as_old_code_wrote_it(Path(pods.opts.root) / "run" / uid / "pod.json", started=True)

    [st] = api.list_pods(pods.opts)
    assert (st.uid, st.name, st.phase, st.location) == (uid, "old-run", "Running", "run")
    assert st.container("c").pid == pid
    assert pod_cgroups(pods.tag)  # the pod cgroup exists until the stop

    # the monitor's finish (python -m runtime.pod.finish) tears down from the old record
    assert api.stop("old-run", pods.opts, grace=0).uid == uid
    st = api.status(uid, pods.opts)
    assert (st.location, st.container("c").state) == ("exited", "Terminated")
    assert not pod_cgroups(pods.tag)
    assert api.remove("old-run", pods.opts) == uid
    assert api.list_pods(pods.opts) == []
    assert not (Path(pods.opts.root) / "names" / "default_old-run").exists()


def test_an_old_prepared_pod_starts(pods: Pods) -> None:
    from runtime.pod.manifest import parse_pod

    raw = pods.manifest("old-prep", [sh("c", "echo started; sleep 1000")], restartPolicy="Never")
    pd = api.create(parse_pod(raw, base_dir=str(pods.tmp)), pods.opts, raw, str(pods.tmp))
    as_old_code_wrote_it(pd.path / "pod.json", started=False)

    [st] = api.list_pods(pods.opts)
    assert (st.uid, st.location, st.phase) == (pd.uid, "prepared", "Pending")
    api.start("old-prep", pods.opts)  # the manifest and options come from the old record
    pods.running_pid(pd.uid, "c")
    until("its log", lambda: api.logs(pd.uid, pods.opts) == ["started"])
    api.stop(pd.uid, pods.opts, grace=0)
    assert api.remove(pd.uid, pods.opts) == pd.uid
    assert api.list_pods(pods.opts) == []
