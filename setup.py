"""cffi modules, plus the per-pod monitor: a standalone C executable built next to them."""

import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext

# corral-monitor (csrc/monitor/): one file per job, with the private header monitor.h.
MONITOR_SRCS = [
    "csrc/monitor/main.c",
    "csrc/monitor/conf.c",
    "csrc/monitor/loop.c",
    "csrc/monitor/runtime.c",
    "csrc/monitor/restart.c",
    "csrc/monitor/logs.c",
    "csrc/monitor/probes.c",
    "csrc/monitor/status.c",
    "csrc/monitor/reaper.c",
    "csrc/monitor/util.c",
    "csrc/monitor/attach.c",
]
MONITOR_BIN = os.path.join("runtime", "_bin", "corral-monitor")
C_FLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]
# Link-time optimisation inlines across the monitor's files as the compiler did when it was
# one file: without it the binary, copied into a memfd for every pod, grows by a page.
LTO = ["-flto"]
# corral-exec (csrc/exec.c): no libc at all, a few kilobytes, copied into a sealed memfd
# before every container program is exec'd through it.
EXEC_SRCS = ["csrc/exec.c"]
EXEC_BIN = os.path.join("runtime", "_bin", "corral-exec")
EXEC_FLAGS = [
    "-std=c11",
    "-Os",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-static",
    "-nostdlib",
    "-ffreestanding",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-pie",
    "-no-pie",
    "-Wl,--build-id=none",
    "-Wl,-z,noexecstack",
    "-s",
]
# (sources, package path, flag variants tried in order)
EXECUTABLES = [
    # static when the C library allows it: a static monitor needs less memory per pod; LTO
    # when the compiler has it
    (
        MONITOR_SRCS,
        MONITOR_BIN,
        [[*C_FLAGS, *LTO, "-static"], [*C_FLAGS, "-static"], [*C_FLAGS, *LTO], C_FLAGS],
    ),
    (EXEC_SRCS, EXEC_BIN, [EXEC_FLAGS]),
]


class build_ext_with_monitor(build_ext):
    """After the cffi modules, compile corral-monitor and corral-exec with the same compiler
    into the build tree (package data of the wheel) and, for in-place and editable builds,
    the source tree."""

    def run(self) -> None:
        super().run()
        for srcs, rel, variants in EXECUTABLES:
            built = os.path.join(self.build_lib, rel)
            self._compile(srcs, built, variants)
            if self.inplace:
                self.mkpath(os.path.dirname(rel))
                self.copy_file(built, rel)

    def _compile(self, srcs: list[str], out: str, variants: list[list[str]]) -> None:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cc = list(self.compiler.compiler[:1]) if self.compiler else ["cc"]
        tmp = out + ".tmp"
        for flags in variants:
            cmd = [*cc, *flags, "-o", tmp, *srcs]
            self.announce(" ".join(cmd), level=2)
            if subprocess.run(cmd).returncode == 0:
                os.chmod(tmp, 0o755)
                shutil.move(tmp, out)
                return
        raise SystemExit(f"compiling {' '.join(srcs)} failed")

    def get_outputs(self) -> list[str]:
        outputs = super().get_outputs()
        bins = [rel for _, rel, _ in EXECUTABLES]
        if self.inplace:
            return [*outputs, *bins]
        return [*outputs, *(os.path.join(self.build_lib, rel) for rel in bins)]

    def get_output_mapping(self) -> dict[str, str]:
        mapping = super().get_output_mapping()
        if self.inplace:
            for _, rel, _ in EXECUTABLES:
                mapping[os.path.join(self.build_lib, rel)] = rel
        return mapping


setup(
    cffi_modules=["csrc/build_ffi.py:ffibuilder", "csrc/build_seccomp.py:ffibuilder"],
    cmdclass={"build_ext": build_ext_with_monitor},
)
