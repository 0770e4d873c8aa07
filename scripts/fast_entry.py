"""Replace a console-script shim with one that starts Python without the site module.

pip's shim starts the interpreter the usual way: ``site`` is imported, scans site-packages and
runs every .pth file there, and the shim itself imports ``re``; about 2 ms of each start, which
a command that lives tens of milliseconds (``corral-oci start``, run by an engine for every
container) pays every time. The launcher written here runs ``python -S`` and appends to
sys.path exactly the entries that site adds for this interpreter, computed now, once (the
environment is read as usual: PYTHONPATH and the rest still apply).

    .venv/bin/python scripts/fast_entry.py .venv/bin/corral-oci runtime.cli.oci:main

Run by scripts/setup.sh after pip install (which writes the shim this replaces).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def site_entries() -> list[str]:
    """The sys.path entries that site adds (site-packages, .pth entries), in order."""
    code = "import json, sys; print(json.dumps(sys.path))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    with_site: list[str] = json.loads(out.stdout)
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True
    )
    without = set(json.loads(out.stdout))
    return [p for p in with_site if p and p not in without]


def launcher(entry: str, paths: list[str]) -> str:
    module, _, func = entry.partition(":")
    if not module or not func:
        raise SystemExit(f"fast_entry: {entry!r}: expected MODULE:FUNCTION")
    return (
        f"#!{sys.executable} -S\n"
        "# Written by scripts/fast_entry.py: started without the site module, with the\n"
        "# sys.path entries site would add (see that script).\n"
        "import sys\n"
        f"sys.path += {paths!r}\n"
        f"from {module} import {func}\n"
        f"sys.exit({func}())\n"
    )


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} SCRIPT MODULE:FUNCTION")
    path, entry = argv
    text = launcher(entry, site_entries())
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)


if __name__ == "__main__":
    main(sys.argv[1:])
