"""The pod manifest's error, apart from ``runtime.pod.manifest`` (and the Kubernetes model it
loads): an idle agent names it without loading either."""

from __future__ import annotations

from runtime.errors import ConfigError

__all__ = ["ManifestError"]


class ManifestError(ConfigError):
    """The pod manifest is invalid; ``field`` is its path, e.g. ``spec.containers[0].image``."""
