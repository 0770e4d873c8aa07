"""Compile the in-container test helper, ``corral-test``, once per source change.

``build_helper(out_dir)`` returns ``out_dir/corral-test``, a static binary. A sidecar file
``corral-test.sha256`` records the hash of everything that went into it (source, flags,
compiler identity); when it matches, the compile is skipped. The binary is written to a temp
file and renamed into place, so concurrent test runs never see a half-written helper.

Also runnable: ``python3 -m testkit.helper.build [OUT_DIR]`` prints the binary's path.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from corral_common import hostsys

SOURCE = Path(__file__).with_name("corral-test.c")
DEFAULT_OUT_DIR = Path(__file__).with_name("build")
BINARY_NAME = "corral-test"
CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-static")


class HelperBuildError(Exception):
    """The helper could not be compiled."""


class ToolchainMissing(HelperBuildError):
    """No C compiler, or no static C library: callers may skip rather than fail."""


def _compiler(cc: str | None) -> list[str]:
    words = shlex.split(cc or os.environ.get("CC") or "gcc")
    if not words or shutil.which(words[0]) is None:
        raise ToolchainMissing(
            f"C compiler {words[0] if words else cc!r} not found on PATH "
            "(install gcc, e.g. apt-get install gcc libc6-dev)"
        )
    return words


def _compiler_identity(compiler: list[str]) -> bytes:
    try:
        out = subprocess.run(
            [*compiler, "-v"],
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        raise ToolchainMissing(f"cannot run C compiler {compiler[0]}: {e}") from e
    return out.stdout + out.stderr  # gcc and clang print target and version on stderr


def source_digest(cc: str | None = None) -> str:
    """Hex SHA-256 over the helper's source, flags and compiler: the cache key."""
    compiler = _compiler(cc)
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(CFLAGS).encode(), _compiler_identity(compiler)):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def build_helper(out_dir: Path, cc: str | None = None) -> Path:
    """Compile ``corral-test`` into ``out_dir`` unless an up-to-date build is already there.

    ``cc`` overrides the compiler (default: ``$CC``, else ``gcc``). Raises ``ToolchainMissing``
    when the compiler or the static C library is absent, ``HelperBuildError`` on other failures.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / BINARY_NAME
    stamp = out_dir / f"{BINARY_NAME}.sha256"
    compiler = _compiler(cc)
    digest = source_digest(cc)
    try:
        if binary.is_file() and stamp.read_text().strip() == digest:
            return binary
    except FileNotFoundError:
        pass

    fd, tmp_name = tempfile.mkstemp(prefix=f".{BINARY_NAME}.", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        proc = subprocess.run(
            [*compiler, *CFLAGS, "-o", str(tmp), str(SOURCE)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            err = proc.stderr.strip()
            if "cannot find -lc" in err or "cannot find -lpthread" in err:
                raise ToolchainMissing(
                    "static C library not found (libc.a; install libc6-dev): " + err
                )
            raise HelperBuildError(f"compiling {SOURCE.name} failed:\n{err}")
        tmp.chmod(0o755)
        os.replace(tmp, binary)
    finally:
        tmp.unlink(missing_ok=True)
    _write_atomic(stamp, digest + "\n")
    return binary


def _write_atomic(path: Path, text: str) -> None:
    hostsys.write_atomic(path, text, 0o644)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT_DIR
    try:
        print(build_helper(out_dir))
    except HelperBuildError as e:
        print(f"build_helper: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
