"""Where the built test rootfs and helper binary are cached (``CORRAL_TEST_CACHE``)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR = Path(os.environ.get("CORRAL_TEST_CACHE", "/var/tmp/corral-test-cache"))
