"""Corral image store (not yet implemented: see the images issue)."""
