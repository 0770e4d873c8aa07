"""cffi build script (out-of-line API mode) for runtime._corral.

Reads the declarations between the cffi markers of corral.h as the cdef and compiles the
C sources next to it. Imports nothing from the corral package.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = ["spawn.c"]


def _cdef() -> str:
    text = (HERE / "corral.h").read_text()
    return text.split("/* cffi:begin */", 1)[1].split("/* cffi:end */", 1)[0]


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "runtime._corral",
    '#include "corral.h"',
    sources=[
        str((HERE / s).relative_to(Path.cwd()))
        if Path.cwd() in (HERE / s).parents
        else str(HERE / s)
        for s in SOURCES
    ],
    include_dirs=[str(HERE)],
    extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
