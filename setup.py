"""cffi modules, plus the per-pod monitor: a standalone C executable built next to them."""

import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext

MONITOR_SRC = "csrc/monitor.c"
MONITOR_BIN = os.path.join("runtime", "_bin", "corral-monitor")
MONITOR_FLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]


class build_ext_with_monitor(build_ext):
    """After the cffi modules, compile corral-monitor with the same compiler into the build
    tree (package data of the wheel) and, for in-place and editable builds, the source tree.
    Static when the C library allows it: a static monitor needs less memory per pod."""

    def run(self) -> None:
        super().run()
        built = os.path.join(self.build_lib, MONITOR_BIN)
        self._compile_monitor(built)
        if self.inplace:
            self.mkpath(os.path.dirname(MONITOR_BIN))
            self.copy_file(built, MONITOR_BIN)

    def _compile_monitor(self, out: str) -> None:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cc = list(self.compiler.compiler[:1]) if self.compiler else ["cc"]
        tmp = out + ".tmp"
        for extra in (["-static"], []):
            cmd = [*cc, *MONITOR_FLAGS, *extra, "-o", tmp, MONITOR_SRC]
            self.announce(" ".join(cmd), level=2)
            if subprocess.run(cmd).returncode == 0:
                os.chmod(tmp, 0o755)
                shutil.move(tmp, out)
                return
        raise SystemExit(f"compiling {MONITOR_SRC} failed")

    def get_outputs(self) -> list[str]:
        outputs = super().get_outputs()
        if self.inplace:
            return [*outputs, MONITOR_BIN]
        return [*outputs, os.path.join(self.build_lib, MONITOR_BIN)]

    def get_output_mapping(self) -> dict[str, str]:
        mapping = super().get_output_mapping()
        if self.inplace:
            mapping[os.path.join(self.build_lib, MONITOR_BIN)] = MONITOR_BIN
        return mapping


setup(
    cffi_modules=["csrc/build_ffi.py:ffibuilder", "csrc/build_seccomp.py:ffibuilder"],
    cmdclass={"build_ext": build_ext_with_monitor},
)
