"""What a corral-oci command imports, run as the installed command runs it.

``command_modules(argv, out)`` starts ``python -S`` (as scripts/fast_entry.py's launcher does)
with this interpreter's sys.path, runs corral-oci's ``main`` on ``argv`` and returns the
process and the modules it had imported when it exited (``main`` ends with ``os._exit``, after
the exit handlers, one of which writes them to ``out``). The stand-ins of modules deferred
until used (``runtime.cli.oci.defer_import``) are left out: nothing was imported for them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_CODE = """\
import atexit, sys
sys.path[:0] = {path!r}
def dump():
    with open({out!r}, "w") as f:
        f.write("\\n".join(sorted(
            n for n, m in sys.modules.items() if type(m).__name__ != "_Deferred")))
atexit.register(dump)
sys.argv = ["corral-oci", *{argv!r}]
from runtime.cli.oci import main
main()
"""


def command_modules(
    argv: list[str], out: Path, *, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    code = _CODE.format(path=sys.path, out=str(out), argv=argv)
    # Files, not pipes, for its output: a created container keeps its stdio open.
    with open(out.with_suffix(".stdout"), "w+") as so, open(out.with_suffix(".stderr"), "w+") as se:
        proc = subprocess.run(
            [sys.executable, "-S", "-c", code],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=so,
            stderr=se,
            timeout=timeout,
        )
        so.seek(0)
        se.seek(0)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, so.read(), se.read())
    return done, set(out.read_text().split("\n"))
