#!/usr/bin/env bash
# Set up, then run the whole test suite: lint, import contracts, unit tests, root integration
# tests, and the VM tests (which skip with a reason where qemu or a kernel is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check runtime images orchestrator corral_cli corral_common kubemodel testkit tests bench csrc/build_ffi.py csrc/build_seccomp.py
.venv/bin/ruff format --check runtime images orchestrator corral_cli corral_common kubemodel testkit tests bench csrc/build_ffi.py csrc/build_seccomp.py
# The import contracts in pyproject.toml: dependencies point one way.
.venv/bin/lint-imports --no-cache
set +e
.venv/bin/python -m pytest -q -rs -p no:cacheprovider tests/unit tests/integration "$@"
rc=$?
# The VM tests boot qemu (cgroup v2 only) and run tests/vm/guest inside: a separate run, so a
# -k given for the host tests does not deselect them. They run when no arguments are given,
# or with CORRAL_TEST_VM=1; CORRAL_TEST_VM=0 skips them.
vm_rc=0
if [ "${CORRAL_TEST_VM:-$([ $# -eq 0 ] && echo 1 || echo 0)}" = 1 ]; then
  junit=$(mktemp)
  .venv/bin/python -m pytest -q -rs -p no:cacheprovider --junit-xml="$junit" tests/vm
  vm_rc=$?
  # A VM run in which every test skipped proved nothing: fail it (the reasons are above).
  if [ "$vm_rc" -eq 0 ] && .venv/bin/python scripts/all_skipped.py "$junit"; then
    echo "test.sh: every VM test skipped: nothing ran on a cgroup v2 kernel" >&2
    vm_rc=1
  fi
  rm -f "$junit"
fi
set -e
# pytest's 5 means no test ran: that is a failure here, not a pass.
[ "$rc" -ne 0 ] && exit "$rc"
exit "$vm_rc"
