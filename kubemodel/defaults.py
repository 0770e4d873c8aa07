"""The Pod defaults the node applies too, without the model (``kubemodel.pod`` uses them).

Importing this module loads nothing else of kubemodel's: ``runtime.pod.manifest`` takes its
defaults from here, so a node with no pod has not loaded the Kubernetes types.
"""

from __future__ import annotations

__all__ = ["DEFAULT_GRACE_PERIOD", "DEFAULT_MODE", "default_pull_policy"]

DEFAULT_GRACE_PERIOD = 30
DEFAULT_MODE = 0o644


def default_pull_policy(image: str) -> str:
    """Always for an image without a tag or with :latest, else IfNotPresent."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rpartition("/")[2]
    _, colon, tag = last.partition(":")
    return "Always" if not colon or tag == "latest" else "IfNotPresent"
