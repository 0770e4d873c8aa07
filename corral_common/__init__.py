"""What every layer of Corral shares and nothing else: default paths, the version.

A leaf: it imports nothing of ours, so ``images``, ``runtime``, ``orchestrator`` and the
``corral`` front end may all import it (an import-linter contract in pyproject.toml checks).
"""
