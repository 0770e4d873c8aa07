"""The ``corral`` command: images, run, pod and network verbs above every layer.

It may import ``images``, ``runtime``, ``orchestrator`` and ``corral_common``; none of them
imports it (import-linter contracts in pyproject.toml). Each command parses its arguments and
calls one library function, and imports that library only when it runs, so ``corral --help``
pays for click and nothing else (tests/unit/test_imports.py).
"""
