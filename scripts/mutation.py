"""A mutation check of the security- and state-critical code: hand-written mutations, each
applied alone to a scratch copy of the tree (the last commit), the tests that should notice
run on it, and a report of the survivors in docs/mutation-report.md.

    sudo .venv/bin/python scripts/mutation.py [--budget SECONDS] [--only ID...] [--report FILE]

Why hand-written, not mutmut or cosmic-ray: most of what matters here is a single line whose
removal is an attack (O_NOFOLLOW, a start-time compare, PR_SET_DUMPABLE), half of it is C
compiled through cffi, and the tests that notice need root and real kernel objects; random
operator swaps over whole modules would spend the budget on noise. Each mutation names the
tests that must kill it; a C mutation rebuilds the extension and the binaries in the copy.

It is not part of scripts/test.sh or CI (it takes minutes): run it after changing the code
it covers. Stops starting mutations once the budget is spent and says which did not run.
A survivor is a finding: kill it with a test, or explain it in ``EXPLAINED``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "docs" / "mutation-report.md"


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str  # relative to the repository
    old: str  # exact text, found exactly once
    new: str
    tests: tuple[str, ...]  # pytest arguments (node ids, files, -k)
    what: str

    @property
    def is_c(self) -> bool:
        return self.path.startswith("csrc/")


MUTANTS = (
    # ---------------------------------------------------------------- runtime/state
    Mutant(
        "state-pid-start",
        "runtime/container.py",
        "return st.pid > 0 and process_start_time(st.pid) == st.pid_start",
        "return st.pid > 0 and process_start_time(st.pid) is not None",
        ("tests/unit/test_state.py",),
        "a live pid is the container whatever its start time",
    ),
    Mutant(
        "state-id-dots",
        "runtime/state.py",
        'or cid in (".", "..")',
        'or cid in ("",)',
        ("tests/unit/test_state.py",),
        "'.' and '..' accepted as container ids",
    ),
    Mutant(
        "state-in-place",
        "corral_common/hostsys.py",
        'tmp = os.path.join(d, f".{os.path.basename(p)}.tmp{os.getpid()}.{_thread.get_ident()}")',
        "tmp = p",
        ("tests/unit/test_state.py",),
        "state written in place, not renamed atomically",
    ),
    # ---------------------------------------------------------------- cgroup drivers
    Mutant(
        "cgroup-pids-unlimited",
        "runtime/cgroups/controllers.py",
        'return [("pids.max", str(p.limit) if p.limit > 0 else "max")]',
        'return [("pids.max", "max")]',
        ("tests/unit/test_cgroups.py",),
        "the pids limit is never written",
    ),
    Mutant(
        "cgroup-destroy-parents",
        "runtime/cgroups/manager.py",
        "for path in sorted(set(self._created) - set(leaves), key=len, reverse=True):",
        "for path in []:",
        (
            "tests/unit/test_cgroups.py",
            "tests/unit/test_cgroups_v2.py",
            "tests/integration/test_cgroups_v1.py",
        ),
        "destroy leaves the parent cgroups it created",
    ),  # fmt: skip
    Mutant(
        "cgroup-kill-no-freeze",
        "runtime/cgroups/manager.py",
        "        if self._can_freeze() and not frozen_before:\n            self.freeze()\n",
        "",
        (
            "tests/unit/test_cgroups.py",
            "tests/unit/test_cgroups_v2.py",
            "tests/integration/test_cgroups_v1.py",
        ),
        "kill_all signals without freezing (a forking process can escape)",
    ),  # fmt: skip
    Mutant(
        "cgroup-destroy-no-retry",
        "runtime/cgroups/manager.py",
        "if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() >= deadline:",
        "if True:",
        (
            "tests/unit/test_cgroups.py",
            "tests/unit/test_cgroups_v2.py",
            "tests/integration/test_cgroups_v1.py",
        ),
        "a busy cgroup is not retried while its processes exit",
    ),  # fmt: skip
    # ---------------------------------------------------------------- images/unpack
    Mutant(
        "unpack-follow-file",
        "images/unpack.py",
        "_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC",
        "_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_TRUNC",
        ("tests/unit/test_images_unpack.py",),
        "a regular file is written through a symlink",
    ),
    Mutant(
        "unpack-follow-dirs",
        "images/unpack.py",
        "_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC",
        "_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC",
        ("tests/unit/test_images_unpack.py",),
        "directories are walked through symlinks",
    ),
    Mutant(
        "unpack-dotdot",
        "images/unpack.py",
        '    if ".." in parts:\n',
        "    if False:\n",
        ("tests/unit/test_images_unpack.py",),
        "'..' in an entry's path is not refused",
    ),
    Mutant(
        "unpack-devices",
        "images/unpack.py",
        "if not (st.limits.allow_devices and st.is_root):",
        "if not st.is_root:",
        ("tests/unit/test_images_unpack.py",),
        "device nodes unpacked without the allowance",
    ),
    # ---------------------------------------------------------------- pod bundle and prepare
    Mutant(
        "pod-nnp",
        "runtime/pod/bundle.py",
        'process["noNewPrivileges"] = sc.allow_privilege_escalation is False and not sc.privileged',
        'process["noNewPrivileges"] = False',
        ("tests/unit/test_pod_bundle.py",),
        "allowPrivilegeEscalation: false is ignored",
    ),
    Mutant(
        "pod-ro-volume",
        "runtime/pod/bundle.py",
        '"options": ["rbind", "rprivate", "ro" if readonly else "rw"],',
        '"options": ["rbind", "rprivate", "rw"],',
        ("tests/unit/test_pod_bundle.py",),
        "readOnly volume mounts are writable",
    ),
    Mutant(
        "pod-ro-root",
        "runtime/pod/bundle.py",
        'spec["root"] = {"path": ctx.rootfs, "readonly": sc.read_only_root_filesystem}',
        'spec["root"] = {"path": ctx.rootfs, "readonly": False}',
        ("tests/unit/test_pod_bundle.py",),
        "readOnlyRootFilesystem is ignored",
    ),
    Mutant(
        "pod-projected-follow",
        "runtime/pod/projection.py",
        "        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC\n",
        "        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC\n",
        ("tests/unit/test_pod_sources.py",),
        "configMap/secret files written through a symlink",
    ),
    # ---------------------------------------------------------------- the start gate
    Mutant(
        "gate-eof-starts",
        "runtime/container.py",
        'if got != b"g":',
        'if got not in (b"g", b""):',
        (
            "tests/integration/test_monitor.py::test_no_net_after_go_cancels_the_runs",
            "tests/integration/test_monitor.py::test_a_stop_before_net_cancels_the_runs",
        ),
        "a start gate that closed (no pod network) lets the container start",
    ),
    Mutant(
        "gate-not-asked",
        "runtime/pod/launch.py",
        "net_gate=link is not None,",
        "net_gate=False,",
        ("tests/integration/test_pods.py::test_a_container_runs_once_its_network_is_there",),
        "containers run before the pod network is set up",
    ),
    # ---------------------------------------------------------------- the kubelet
    Mutant(
        "join-any-token",
        "orchestrator/apiserver/join.py",
        "        if not given or not hmac.compare_digest(given.encode(), secret.encode()):\n",
        "        if not given:\n",
        ("tests/integration/test_kubelet.py::test_a_wrong_token_gets_a_clear_error_and_no_node",),
        "node credentials for any bearer token",
    ),
    Mutant(
        "kubelet-no-grace",
        "orchestrator/kubelet/pods.py",
        "                left = max(int(grace) - spent, 2) if spent else int(grace)\n",
        "                left = 0\n",
        ("tests/integration/test_kubelet.py::test_graceful_deletion_stops_the_pod_and_removes_it",),
        "a deleted pod is stopped without its grace period",
    ),
    Mutant(
        "kubelet-no-refresh",
        "orchestrator/kubelet/pods.py",
        "            await self._refresh_volumes(pod, st.uid)\n",
        "            pass\n",
        ("tests/integration/test_kubelet.py::test_api_volumes_and_their_updates",),
        "configMap updates never reach a running pod",
    ),
    # ---------------------------------------------------------------- the C core
    Mutant(
        "c-dumpable",
        "csrc/spawn.c",
        "    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);\n",
        "",
        ("tests/integration/test_security.py",),
        "the container process stays dumpable until execve",
    ),  # fmt: skip
    Mutant(
        "c-close-inherited",
        "csrc/spawn.c",
        "    ret = close_inherited(c);\n",
        "    ret = 0;\n    (void)close_inherited;\n",
        ("tests/integration/test_security.py",),
        "inherited fds reach the container",
    ),  # fmt: skip
    Mutant(
        "c-resolve-in-root",
        "csrc/spawn.c",
        "    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;",
        "    how.resolve = RESOLVE_NO_MAGICLINKS;",
        ("tests/integration/test_security.py",),
        "mount destinations resolved outside the rootfs",
    ),
    Mutant(
        "c-drop-bounding",
        "csrc/spawn.c",
        "        ret = drop_bounding(c);\n",
        "        ret = 0;\n        (void)drop_bounding;\n",
        ("tests/integration/test_security.py",),
        "the bounding set is not dropped",
    ),  # fmt: skip
    Mutant(
        "c-no-new-privs",
        "csrc/spawn.c",
        "    if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {",
        "    if (0) {",
        ("tests/integration/test_security.py",),
        "noNewPrivileges is not set",
    ),
    # ---------------------------------------------------------------- API client, scheduler
    Mutant(
        "client-stale-post",
        "orchestrator/client/http.py",
        "if conn.reused and (e.unanswered or method in IDEMPOTENT):",
        "if conn.reused and method in IDEMPOTENT:",
        ("tests/unit/test_client_http.py",),
        "a POST on a kept-alive connection the server had reset is not sent again",
    ),
    Mutant(
        "sched-verdicts-dirty",
        "orchestrator/scheduler/cache.py",
        "            v.dirty.add(i)",
        "            pass",
        ("tests/unit/test_scheduler_plugins.py",),
        "the kept verdicts of a pod shape miss the nodes written since",
    ),
    Mutant(
        "apiserver-loopback-token",
        "orchestrator/apiserver/server.py",
        "static[loopback_token] = UserInfo",
        'static["x" + loopback_token] = UserInfo',
        ("tests/integration/test_apiserver_loopback.py",),
        "the components' loopback token is not accepted",
    ),
)

#: Survivors that are understood, with why (a survivor not listed here is a finding).
EXPLAINED: dict[str, str] = {}


def scratch_copy(dest: Path) -> None:
    """The last commit's tree, built in place (the C extension and the binaries)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    build(dest)


def build(tree: Path) -> None:
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--force"],
        cwd=tree, check=True, capture_output=True,
    )  # fmt: skip


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[bool, str]:
    """(killed, last lines): the tests fail (or time out) on the mutated tree."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    argv = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        p = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True,
                           timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return True, "timed out"
    tail = (p.stdout.strip().splitlines() or [""])[-1]
    return p.returncode not in (0, 5), tail


def mutate(tree: Path, m: Mutant) -> str:
    path = tree / m.path
    text = path.read_text()
    if text.count(m.old) != 1:
        raise SystemExit(f"mutation {m.id}: the text to change is in {m.path} "
                         f"{text.count(m.old)} times, not once: update MUTANTS")  # fmt: skip
    path.write_text(text.replace(m.old, m.new))
    return text


def render(rows: list[tuple[Mutant, str, str, float]], commit: str, budget: float) -> str:
    killed = sum(1 for _, r, _, _ in rows if r == "killed")
    survived = [m.id for m, r, _, _ in rows if r == "survived"]
    lines = [
        "# Mutation report",
        "",
        f"`scripts/mutation.py` on commit `{commit}`, budget {budget:.0f} s. Each mutation is "
        "applied alone to a scratch copy of that commit; the named tests must fail on it.",
        "",
        f"Killed {killed} of {len(rows)}; survived: {', '.join(survived) or 'none'}.",
        "",
        "| mutation | file | what it breaks | tests | result | s |",
        "| --- | --- | --- | --- | --- | ---: |",
    ]
    for m, result, tail, secs in rows:
        note = f"{result}: {EXPLAINED[m.id]}" if m.id in EXPLAINED else result
        if result == "survived" and m.id not in EXPLAINED:
            note += f" ({tail})"
        tests = ", ".join(f"`{t}`" for t in m.tests)
        lines.append(f"| {m.id} | `{m.path}` | {m.what} | {tests} | {note} | {secs:.0f} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=1800, help="seconds (default 1800)")
    ap.add_argument("--only", nargs="*", help="mutation ids")
    ap.add_argument("--report", default=str(REPORT))
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.id in args.only]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    start = time.monotonic()
    rows: list[tuple[Mutant, str, str, float]] = []
    tree = Path(tempfile.mkdtemp(prefix="corral-mutation-", dir="/var/tmp"))
    try:
        scratch_copy(tree)
        # C mutations last: each rebuilds the copy twice
        for m in sorted(chosen, key=lambda m: m.is_c):
            left = args.budget - (time.monotonic() - start)
            if left <= 0:
                rows.append((m, "not run (budget)", "", 0.0))
                continue
            t0 = time.monotonic()
            original = mutate(tree, m)
            try:
                if m.is_c:
                    build(tree)
                killed, tail = run_tests(tree, m.tests, timeout=max(left, 60))
                result = "killed" if killed else "survived"
            except subprocess.CalledProcessError as e:
                result, tail = "did not build", (e.stderr or b"").decode()[-200:]
            finally:
                (tree / m.path).write_text(original)
                if m.is_c:
                    build(tree)
            rows.append((m, result, tail, time.monotonic() - t0))
            print(f"mutation: {m.id}: {result} ({tail})", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    Path(args.report).write_text(render(rows, commit, args.budget))
    print(f"mutation: wrote {args.report}", file=sys.stderr)
    unexplained = [
        m.id for m, r, _, _ in rows if r in ("survived", "did not build") and m.id not in EXPLAINED
    ]
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
