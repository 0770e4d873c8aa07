"""Corral orchestrator (not yet implemented: see the orchestrator issues)."""
