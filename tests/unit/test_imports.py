"""What each CLI command imports: a command pays only for the modules it uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from testkit.startup import command_modules

REPO = Path(__file__).resolve().parents[2]

NEVER = ("pyroute2", "orchestrator")


def _imported(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_lifecycle_commands_skip_the_config_model_planner_and_c_core() -> None:
    mods = _imported("import runtime.cli.oci, runtime.container")
    for name in (*NEVER, "runtime.config", "runtime.plan", "runtime._sys", "socket", "shutil"):
        assert name not in mods, name
    # start needs no cgroup driver: the commands that do import them when they run
    assert "runtime.cgroups" not in mods


def test_a_plain_config_leaves_the_rarely_used_model_unimported(tmp_path: Path) -> None:
    from runtime.config import default_spec

    (tmp_path / "config.json").write_text(json.dumps(default_spec()))
    mods = _imported(
        "from runtime import config, plan\n"
        "from runtime.cgroups import controllers\n"
        f"spec = config.load_spec({str(tmp_path)!r})\n"
        "controllers.devices_v1(spec.linux.resources.devices)"
    )
    assert "runtime.config" in mods
    for name in (*NEVER, "runtime._config_extra", "runtime.cgroups.stats"):
        assert name not in mods, name


def test_the_rarely_used_model_is_still_reachable_from_config() -> None:
    from runtime import _config_extra, config

    assert config.Seccomp is _config_extra.Seccomp
    assert config.Memory(limit=1).limit == 1


def test_the_version_is_read_only_when_asked_for() -> None:
    # importlib.metadata costs tens of ms: only `--version` (and `features`) may import it.
    mods = _imported("import runtime.cli.oci, runtime.container, corral_cli.main")
    assert "importlib.metadata" not in mods
    mods = _imported(
        "from click.testing import CliRunner\nfrom corral_cli.main import cli\n"
        "CliRunner().invoke(cli, ['--version'])"
    )
    assert "importlib.metadata" in mods


def test_corral_starts_without_the_layers_below() -> None:
    mods = _imported("import corral_cli.main")
    for name in (*NEVER, "runtime", "images", "yaml", "importlib.metadata"):
        assert name not in mods, name


def test_a_command_imports_its_own_module_only() -> None:
    # `corral agent` holds for good what it imported: the other commands' modules stay out.
    mods = _imported(
        "import click\nfrom corral_cli.main import cli\n"
        "assert cli.get_command(click.Context(cli), 'agent') is not None"
    )
    assert "corral_cli.agent_cmd" in mods
    for name in ("server_cmd", "image_cmd", "registry_cmd", "cluster_cmd", "pod_cmd", "run_cmd"):
        assert f"corral_cli.{name}" not in mods, name


# Loaded by the first pod: the manifest (and the Kubernetes model it loads), the OCI config
# model and image bundle its containers' bundles are written with, the registries' config.
POD_ONLY = (
    "runtime.pod.manifest",
    "runtime.pod.bundle",
    "runtime.config",
    "images.bundle",
    "images.keyring",
    "images.regconf",
    "images.reference",
    "tomllib",
)


def test_the_kubernetes_types_load_at_the_first_one_asked_for() -> None:
    # The pod API and the kubelet's eviction thresholds load none of it; the pod API names the
    # manifest's error without loading the manifest.
    mods = _imported(
        "import runtime.pod.api, orchestrator.kubelet.eviction\n"
        "assert issubclass(runtime.pod.api.ManifestError, Exception)"
    )
    assert "runtime.pod.api" in mods and "orchestrator.kubelet.eviction" in mods
    for name in ("kubemodel._generated", "kubemodel.pod", "kubemodel.codec", *POD_ONLY):
        assert name not in mods, name
    # the pod API's manifest and registry names load their modules when asked for
    mods = _imported(
        "from runtime.pod import api, manifest\nfrom images import keyring, regconf\n"
        "assert api.parse_pod is manifest.parse_pod and api.from_kube is manifest.from_kube\n"
        "assert api.Pod is manifest.Pod and api.ManifestError is manifest.ManifestError\n"
        "assert api.Keyring is keyring.Keyring and api.Credentials is regconf.Credentials"
    )
    assert "runtime.pod.manifest" in mods
    mods = _imported("import kubemodel\nassert kubemodel.Pod.__name__ == 'Pod'")
    for name in ("kubemodel._generated", "kubemodel.pod", "kubemodel.codec"):
        assert name in mods, name


def test_the_hot_commands_skip_click(tmp_path: Path) -> None:
    # corral-oci's create, start, state, kill, delete and run parse their own arguments:
    # click and its command tree cost more than `start` or `delete` do.
    for argv in (["state", "c1"], ["delete", "--force", "c1"], ["kill", "c1", "KILL"]):
        mods = _imported(
            "from runtime.cli import oci\n"
            f"try:\n    oci.run_command(['--root', {str(tmp_path)!r}, *{argv!r}])\n"
            "except SystemExit:\n    pass"
        )
        assert "runtime.container" in mods, argv
        for name in (*NEVER, "click", "runtime.config", "runtime.plan", "runtime._sys"):
            assert name not in mods, (argv, name)


def test_create_needs_neither_typing_nor_inspect_which_dataclasses_imports() -> None:
    # corral-oci defers inspect (ast, dis, tokenize: ms of every start); a dataclass without
    # a docstring on the create path would make dataclasses call inspect.signature.
    mods = _imported(
        "from runtime.cli import oci\noci.defer_import('inspect')\n"
        "import runtime.container, runtime.config, runtime.plan, runtime._sys, runtime.state\n"
        "import runtime.seccomp, runtime.hooks, corral_common.hostsys\n"
        "from runtime.cgroups import controllers, manager, stats"
    )
    assert "runtime.plan" in mods
    # typing too (TYPE_CHECKING = False stands for typing.TYPE_CHECKING on this path)
    for name in ("ast", "dis", "tokenize", "linecache", "typing"):
        assert name not in mods, name


def test_a_deferred_module_is_the_real_one_once_used() -> None:
    code = (
        "import sys\nfrom runtime.cli import oci\noci.defer_import('inspect')\n"
        "import inspect\nassert 'ast' not in sys.modules\n"
        "from inspect import signature\n"
        "assert str(inspect.signature(oci.parse)) == str(signature(oci.parse))\n"
        "assert sys.modules['inspect'].getsource is inspect.getsource\n"
        "assert 'ast' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_the_agent_brings_its_node_network_up_without_the_netlink_library() -> None:
    # An agent with no pod holds what it imported for good: pyroute2 (some 15 MB) only in the
    # child that sets the node network up, YAML only where a kubeconfig is read.
    mods = _imported(
        "import corral_cli.main, orchestrator.kubelet.agent\n"
        "from runtime.pod import api\n"
        "try:\n"
        "    api.NodePods(api.PodOptions(network_config='/nonexistent/network.json'))"
        ".ensure_network(True, apart=True)\n"
        "except api.PodError as e:\n"
        "    assert 'node network: ' in str(e) and 'nonexistent' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('no error from a missing network file')\n"
    )
    assert "orchestrator.kubelet.agent" in mods
    for name in ("pyroute2", "yaml", "runtime.network.netlink"):
        assert name not in mods, name


def test_the_agent_imports_its_modules_without_shutil_s_archive_formats() -> None:
    # shutil imports bz2 and lzma (and their libraries) for its archive formats only: kept out
    # while `corral agent` imports its modules, and importable as ever afterwards (a .tar.xz
    # in the images directory is read).
    code = (
        "import sys\n"
        "from corral_cli.agent_main import lean_imports\n"
        "with lean_imports():\n"
        "    import shutil, orchestrator.kubelet.agent\n"
        "assert 'orchestrator.kubelet.agent' in sys.modules\n"
        "assert 'bz2' not in sys.modules and 'lzma' not in sys.modules, 'imported'\n"
        "import io, tarfile\n"
        "buf = io.BytesIO()\n"
        "with tarfile.open(fileobj=buf, mode='w:xz') as t:\n"
        "    info = tarfile.TarInfo('f'); info.size = 2; t.addfile(info, io.BytesIO(b'ok'))\n"
        "buf.seek(0)\n"
        "with tarfile.open(fileobj=buf) as t:\n"
        "    assert t.extractfile('f').read() == b'ok'\n"
        "import bz2\n"
        "assert bz2.decompress(bz2.compress(b'x')) == b'x'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_an_image_archive_is_opened_by_its_compression(tmp_path: Path) -> None:
    # tarfile's "r:*" imports bz2 and lzma to read any archive: a plain or gzip one is opened
    # as what its first bytes say, the others import their module then.
    import io
    import tarfile

    for comp in ("", "gz", "bz2", "xz"):
        path = tmp_path / f"a.tar.{comp}"
        with tarfile.open(path, f"w:{comp}") as t:
            info = tarfile.TarInfo("f")
            info.size = 2
            t.addfile(info, io.BytesIO(b"ok"))
        mods = _imported(
            "import sys\nfrom corral_cli.agent_main import lean_imports\n"
            "with lean_imports():\n    import images.sources\n"
            f"r = images.sources.TarReader(__import__('pathlib').Path({str(path)!r}))\n"
            "assert r.tf.extractfile('f').read() == b'ok'"
        )
        assert ("bz2" in mods) == (comp == "bz2"), comp
        assert ("lzma" in mods) == (comp == "xz"), comp


def test_the_agent_imports_its_on_demand_servers_when_they_start() -> None:
    # The kubelet's HTTPS server (aiohttp.web, streaming) and the cluster DNS (dnspython)
    # start at their first connection or query (tests/integration/test_agent_idle.py).
    mods = _imported("import corral_cli.main, corral_cli.agent_cmd, orchestrator.kubelet.agent")
    assert "orchestrator.kubelet.port" in mods
    for name in ("aiohttp.web", "orchestrator.kubelet.server", "orchestrator.dns", "dns"):
        assert name not in mods, name


def test_the_create_path_compiles_no_regular_expression() -> None:
    # json and dataclasses compile theirs; ours would add to every create's start (the
    # SemVer check of ociVersion alone cost about a millisecond as a regex).
    code = (
        "import json, re, sys\nimport dataclasses\n"
        "before = set(re._cache)\n"
        "from runtime.cli import oci\noci.defer_import('inspect')\n"
        "import runtime.container, runtime.config, runtime.plan, runtime._sys, runtime.state\n"
        "import corral_common.hostsys\nfrom runtime.cgroups import controllers, manager\n"
        "from runtime.config import default_spec, parse_spec\n"
        "from runtime.state import validate_id\n"
        "parse_spec(default_spec()); validate_id('c1')\n"
        "print([key[1] for key in set(re._cache) - before])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_create_without_hooks_imports_no_contextlib() -> None:
    # The state lock and the host seam are classes; hooks (subprocess) bring it in when used.
    mods = _imported(
        "from runtime.cli import oci\noci.defer_import('inspect')\n"
        "import runtime.container, runtime.config, runtime.plan, runtime._sys, runtime.state\n"
        "import corral_common.hostsys\nfrom runtime.cgroups import controllers, manager"
    )
    assert "runtime._sys" in mods and "contextlib" not in mods


def test_image_import_skips_hashlib_and_getpass() -> None:
    # OpenSSL's SHA-256 comes from _hashlib (hashlib builds every algorithm at import: ms of
    # each command), loaded when a layer is hashed (below); getpass is for `login` only.
    mods = _imported("import corral_cli.main, images.store, images.sources, images.unpack")
    for name in ("hashlib", "getpass", "_hashlib"):
        assert name not in mods, name


def test_a_reimport_starts_no_thread_pool(tmp_path: Path) -> None:
    # Every layer stored: nothing to unpack, so neither concurrent.futures nor the logging
    # it imports, nor OpenSSL (the config's hash is small); the first import of the same
    # archive does unpack in the pool and hashes its layers with OpenSSL.
    from testkit.imagebuild import Entry, docker_files, tar_entries, write_tar

    layers = [tar_entries([Entry(f"f{i}", data=b"x" * i)]) for i in range(1, 3)]
    files, _ = docker_files(layers, repo_tags=["re:1"])
    src = write_tar(tmp_path / "src.tar", files)
    code = (
        "from images.store import Store\n"
        f"Store({str(tmp_path / 'store')!r}).import_path({str(src)!r})"
    )
    mods = _imported(code)
    assert "concurrent.futures" in mods and "_hashlib" in mods
    mods = _imported(code)
    for name in ("concurrent.futures", "logging", "_hashlib"):
        assert name not in mods, name


def test_the_network_package_loads_a_name_s_module_at_its_first_use() -> None:
    # The agent's service proxy needs the namespaces only: not the config model, the node
    # network or IPAM (runtime.network's names are lazy, PEP 562).
    mods = _imported("import orchestrator.proxy\nfrom runtime.network import in_netns")
    assert "runtime.network.netns" in mods
    for name in ("runtime.network.config", "runtime.network.node", "runtime.network.ipam"):
        assert name not in mods, name
    mods = _imported(
        "from runtime import network\n"
        "assert network.NodeNetwork.__module__ == 'runtime.network.node'\n"
        "assert network.load_config.__module__ == 'runtime.network.config'"
    )
    assert "runtime.network.node" in mods and "runtime.network.config" in mods


# What the commands an engine runs for every container (podman through conmon, containerd's
# shim, our pod monitor: create, start, state, kill, delete) may not import: each of these costs
# a share of milliseconds of every such command, whose floor is the interpreter's own start.
LIFECYCLE_FORBIDDEN = (
    *NEVER, "click", "json", "re", "enum", "dataclasses", "typing", "inspect", "collections",
    "signal", "types", "copy", "functools", "contextlib", "subprocess", "threading", "socket",
    "shutil", "importlib.metadata", "runtime.config", "runtime.plan", "runtime._sys",
    "_cffi_backend", "corral_common.hostsys", "runtime.cgroups.layout", "runtime.cgroups.factory",
    "encodings.ascii",
)  # fmt: skip


def test_the_lifecycle_commands_import_nothing_heavy(tmp_path: Path) -> None:
    # A created container of our own making (no root needed): its "process" waits to write
    # the exec fifo, as a container's init does until `start`; its cgroup is gone already.
    from runtime.state import ContainerState, StateDir, process_start_time

    root = str(tmp_path / "root")
    sd = StateDir(root, "c1")
    sd.make()
    sd.make_fifo()
    init = subprocess.Popen(["sh", "-c", f"printf x > {sd.fifo}; exec sleep 60"])
    try:
        pid_start = process_start_time(init.pid)
        assert pid_start is not None
        cgroup = str(tmp_path / "cgroup-gone")
        sd.save(
            ContainerState(
                "c1", "/b", "/b/rootfs", init.pid, pid_start, "2026-01-01T00:00:00Z", "1.0.2",
                annotations={"a": "b"}, cgroup_paths={"": cgroup},
            )
        )  # fmt: skip
        steps = [
            (["state", "c1"], '"status": "created"'),
            (["start", "c1"], ""),
            (["state", "c1"], '"status": "running"'),
            (["kill", "c1", "TERM"], ""),
            (["kill", "--all", "c1", "KILL"], ""),  # stopped by now: the cgroup's rest only
            (["delete", "--force", "c1"], ""),
            (["delete", "c1"], "container does not exist"),
        ]
        for i, (argv, expect) in enumerate(steps):
            if argv == ["kill", "--all", "c1", "KILL"]:
                init.wait(timeout=10)  # the TERM above reached it (reaped: no zombie left)
            proc, mods = command_modules(["--root", root, *argv], tmp_path / f"modules{i}")
            assert expect in proc.stdout + proc.stderr, (argv, proc)
            assert proc.returncode == (1 if argv == ["delete", "c1"] else 0), (argv, proc)
            assert "runtime.container" in mods, argv
            for name in LIFECYCLE_FORBIDDEN:
                assert name not in mods, (argv, name)
        assert not os.path.exists(sd.path)
    finally:
        init.kill()
        init.wait()


def test_the_api_server_imports_the_crd_schema_code_with_the_first_crd(tmp_path: Path) -> None:
    # An idle server holds what it imported for good: the custom resources' schema code
    # (crschema) comes with the first CRD, not at start.
    code = (
        "import asyncio, sys\nfrom pathlib import Path\n"
        "from tests.unit.test_apiserver_units import _serve\n"
        "async def main():\n"
        f"    api, runner, url = await _serve(Path({str(tmp_path)!r}), 60)\n"
        "    print('crschema' in ' '.join(sys.modules))\n"
        "    await runner.cleanup(); await api.close(); await api.store.close()\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[0] == "False"
