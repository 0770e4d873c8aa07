"""monitor.conf: what the pod's C monitor runs, in the line format docs/pods.md defines.

``key value`` lines, the value being the rest of the line with ``\\\\``, ``\\n`` and ``\\t``
escaped; repeated keys build lists; ``container NAME`` starts a container section and
``probe KIND`` a probe section inside it. Pure: ``render`` returns the text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from runtime.pod.manifest import Container, ExecAction, HTTPGetAction, Pod, Probe

__all__ = [
    "ContainerConf",
    "MonitorConf",
    "escape",
    "probe_lines",
    "render",
    "render_containers",
]


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


@dataclass(frozen=True, slots=True)
class ContainerConf:
    name: str
    kind: str  # "init" | "app" | "ephemeral" (ephemeral.conf only)
    id: str  # the runtime's container id
    bundle: str
    oom_file: str | None = None
    probes: tuple[tuple[str, Probe], ...] = ()  # (liveness|readiness|startup, probe)
    prestart_arg: tuple[str, ...] = ()  # run before every create but the first (a restart)
    prestart_first: bool = False  # ... and before the first too (it mounts subPaths)
    stop_signal: int | None = None  # the signal number a stop sends first (None: SIGTERM)
    terminal: bool = False  # process.terminal: create gets a console socket, the pty is stdout
    stdin: bool = False  # stdin kept open (a pipe, or the pty) for attach clients
    stdin_once: bool = False  # ... closed when the first client that took it is done
    attach: bool = False  # an attach socket, attach/<name> in the pod directory


@dataclass(frozen=True, slots=True)
class MonitorConf:
    runtime_arg: tuple[str, ...]
    runtime_root: str
    restart_policy: str
    grace_s: int
    finish_arg: tuple[str, ...] = ()
    https_probe_arg: tuple[str, ...] = ()  # argv prefix of https probes (the monitor has no TLS)
    log_max_bytes: int = 10 * 1024 * 1024
    log_max_files: int = 5
    backoff_initial_ms: int = 10_000
    backoff_max_ms: int = 300_000
    backoff_reset_ms: int = 600_000
    containers: tuple[ContainerConf, ...] = field(default_factory=tuple)
    probe_host: str = "127.0.0.1"  # for http/tcp probes that name no host: the pod IP
    restart_max: int = 0  # restarts of a container at most (0: no limit)
    net_gate: bool = False  # `net` follows `go` once the pod network is there; runs wait for it
    finish_deletes: bool = False  # finish_arg deletes the containers: the monitor does not


def probe_lines(kind: str, probe: Probe, default_host: str) -> list[tuple[str, str]]:
    out = [("probe", kind)]
    h = probe.handler
    if isinstance(h, ExecAction):
        out += [("probe_exec", a) for a in h.command]
    elif isinstance(h, HTTPGetAction):
        scheme = h.scheme.value.lower()
        out.append(("probe_http", f"{scheme} {h.host or default_host} {h.port} {h.path or '/'}"))
        out += [("probe_http_header", f"{x.name}: {x.value}") for x in h.http_headers]
    else:
        out.append(("probe_tcp", f"{h.host or default_host} {h.port}"))
    out += [
        ("probe_initial_delay_s", str(probe.initial_delay_seconds)),
        ("probe_period_s", str(probe.period_seconds)),
        ("probe_timeout_s", str(probe.timeout_seconds)),
        ("probe_success_threshold", str(probe.success_threshold)),
        ("probe_failure_threshold", str(probe.failure_threshold)),
    ]
    return out


def container_probes(container: Container) -> tuple[tuple[str, Probe], ...]:
    out = []
    for kind, probe in (
        ("startup", container.startup_probe),
        ("liveness", container.liveness_probe),
        ("readiness", container.readiness_probe),
    ):
        if probe is not None:
            out.append((kind, probe))
    return tuple(out)


def render(conf: MonitorConf) -> str:
    lines: list[tuple[str, str]] = [("runtime_arg", a) for a in conf.runtime_arg]
    lines += [
        ("runtime_root", conf.runtime_root),
        ("restart_policy", conf.restart_policy),
        ("grace_s", str(conf.grace_s)),
        ("log_max_bytes", str(conf.log_max_bytes)),
        ("log_max_files", str(conf.log_max_files)),
        ("backoff_initial_ms", str(conf.backoff_initial_ms)),
        ("backoff_max_ms", str(conf.backoff_max_ms)),
        ("backoff_reset_ms", str(conf.backoff_reset_ms)),
    ]
    if conf.restart_max:
        lines.append(("restart_max", str(conf.restart_max)))
    if conf.net_gate:
        lines.append(("net_gate", "true"))
    if conf.finish_deletes:
        lines.append(("finish_deletes", "true"))
    lines += [("finish_arg", a) for a in conf.finish_arg]
    lines += [("https_probe_arg", a) for a in conf.https_probe_arg]
    return _text(lines) + render_containers(conf.containers, conf.probe_host)


def _text(lines: list[tuple[str, str]]) -> str:
    return "".join(f"{k} {escape(v)}\n" for k, v in lines)


def render_containers(containers: Sequence[ContainerConf], probe_host: str) -> str:
    """Container sections: monitor.conf's, and all of ephemeral.conf (its containers added to
    the running pod, re-read by the monitor at SIGHUP)."""
    lines: list[tuple[str, str]] = []
    for c in containers:
        lines += [("container", c.name), ("kind", c.kind), ("id", c.id), ("bundle", c.bundle)]
        if c.oom_file:
            lines.append(("oom_file", c.oom_file))
        lines += [("prestart_arg", a) for a in c.prestart_arg]
        if c.prestart_first:
            lines.append(("prestart_first", "true"))
        if c.stop_signal:
            lines.append(("stop_signal", str(c.stop_signal)))
        if c.terminal:
            lines.append(("terminal", "true"))
        lines += [(k, "true") for k, on in (("stdin", c.stdin), ("stdin_once", c.stdin_once)) if on]
        if c.attach:
            lines.append(("attach", "true"))
        for kind, probe in c.probes:
            lines += probe_lines(kind, probe, probe_host)
    return _text(lines)


def containers_of(
    pod: Pod,
    bundles: dict[str, str],
    oom_files: dict[str, str | None],
    prestart: Callable[[str], tuple[str, ...]] | None = None,
    prestart_first: frozenset[str] = frozenset(),
) -> Sequence[ContainerConf]:
    """Init containers in order, then app containers; runtime ids are the container names
    (each pod has a runtime root of its own). ``prestart(name)`` is a container's
    prestart_arg; the containers in ``prestart_first`` run it before their first create
    too."""
    out = []
    for kind, group in (("init", pod.spec.init_containers), ("app", pod.spec.containers)):
        for c in group:
            out.append(
                ContainerConf(
                    name=c.name,
                    kind=kind,
                    id=c.name,
                    bundle=bundles[c.name],
                    oom_file=oom_files.get(c.name),
                    probes=container_probes(c) if kind == "app" else (),
                    prestart_arg=prestart(c.name) if prestart is not None else (),
                    prestart_first=c.name in prestart_first,
                    terminal=bool(c.tty),
                    stdin=c.stdin,
                    stdin_once=c.stdin_once,
                    # attach serves what a log cannot: stdin, a terminal's unfinished lines
                    attach=c.stdin or c.tty,
                )
            )
    return out
