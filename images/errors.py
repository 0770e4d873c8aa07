"""The images exception tree: one base, a few kinds, each carrying its context."""

from __future__ import annotations


class ImageError(Exception):
    """Base of every error raised by ``images``."""


class NotFound(ImageError):
    """No image, blob or file by that name."""

    def __init__(self, what: str) -> None:
        super().__init__(f"not found: {what}")
        self.what = what


class FormatError(ImageError):
    """The archive, layout, manifest or config is not something we can read."""


class DigestMismatch(ImageError):
    """A blob's content does not match the digest (or size) it was named by."""

    def __init__(self, blob: str, expected: str, actual: str) -> None:
        super().__init__(f"blob {blob}: expected {expected}, got {actual}")
        self.blob = blob
        self.expected = expected
        self.actual = actual


class UnsafeLayer(ImageError):
    """A layer tar entry that would escape the unpack directory or break a limit."""

    def __init__(self, entry: str, reason: str, layer: str = "") -> None:
        where = f"layer {layer}: " if layer else ""
        super().__init__(f"{where}refusing entry {entry!r}: {reason}")
        self.entry = entry
        self.reason = reason
        self.layer = layer


class InUse(ImageError):
    """The image is used by containers (refs) and --force was not given."""

    def __init__(self, image: str, users: list[str]) -> None:
        super().__init__(f"image {image} is used by {', '.join(users)}")
        self.image = image
        self.users = users


class MountError(ImageError):
    """An overlay mount or unmount failed."""

    def __init__(self, step: str, errno_: int, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.errno = errno_


class RegistryError(ImageError):
    """A registry refused a request, or talking to it failed. ``step`` names the request
    (``GET manifest busybox:1.36``), ``host`` the registry, ``status`` the HTTP status (0 when
    there was no answer) and the message is the registry's own, when it sent one."""

    def __init__(self, step: str, host: str, message: str, status: int = 0) -> None:
        code = f" ({status})" if status else ""
        super().__init__(f"{host}: {step}{code}: {message}")
        self.step = step
        self.host = host
        self.status = status
        self.message = message


class AuthError(RegistryError):
    """The registry wants credentials we do not have, or refused the ones we sent."""


class RegistryNotFound(RegistryError):
    """The registry has no such repository, manifest or blob (404)."""
