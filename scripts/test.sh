#!/usr/bin/env bash
# Set up, then run the whole test suite: lint, unit tests, root integration tests, and the
# VM tests (which skip with a reason where qemu or a kernel is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check runtime images orchestrator tests bench csrc/build_ffi.py csrc/build_seccomp.py
.venv/bin/ruff format --check runtime images orchestrator tests bench csrc/build_ffi.py csrc/build_seccomp.py
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/integration "$@"
rc=$?
set -e
# pytest's 5 means no test ran: that is a failure here, not a pass.
exit "$rc"
