"""A pod container's image, by its ``imagePullPolicy``, as the kubelet's image manager does.

``ensure_image`` resolves ``image`` against the local store (the name as written, then each
fully qualified name ``registries.conf`` gives a short name) and pulls it with
``images.pull`` (registries.conf, the auth file, certs.d: what ``corral image pull`` uses)
when the policy says so:

- ``Never``: the local image or ``ErrImageNeverPull``;
- ``IfNotPresent``: the local image, else a pull;
- ``Always``: a pull (blobs already stored are not fetched again). A name no registry can
  serve (a short name without unqualified-search registries, or ``localhost/...``) is only
  ever local: it is used if present, as with IfNotPresent.

A failed pull is ``ErrImagePull`` with the registry's message, and puts the pull's key (pod
uid and image, as the kubelet keys it) in back-off: while it lasts, ``ensure_image`` does not
ask the registry and raises ``ImagePullBackOff``. ``PullBackoff`` is that state, a small
object the caller keeps across calls (the kubelet, or ``runtime.pod.api.NodePods``): 10 s
after the first failure, doubling to 300 s, as the kubelet's image back-off.

Every error is an ``ImagePullError`` (a ``PrepareError``) whose ``reason`` is the kubelet's
waiting reason and ``message`` its message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from images.errors import FormatError, ImageError, NotFound
from runtime.pod.prepare import PrepareError

if TYPE_CHECKING:
    from images.keyring import Keyring
    from images.store import Image, Store
    from runtime.pod.manifest import Container
    from runtime.pod.prepare import PodOptions

__all__ = [
    "BACKOFF_INITIAL",
    "BACKOFF_MAX",
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "ImagePullError",
    "InvalidImageName",
    "PullBackoff",
    "ensure_image",
    "find_local",
]

BACKOFF_INITIAL = 10.0  # seconds: the kubelet's backOffPeriod
BACKOFF_MAX = 300.0  # seconds: the kubelet's MaxContainerBackOff


class ImagePullError(PrepareError):
    """The image of ``container`` could not be had; ``reason`` is the container's waiting
    reason in the kubelet's words, ``message`` the waiting message."""

    reason = "ErrImagePull"

    def __init__(self, pod: str, container: str, image: str, message: str) -> None:
        self.container = container
        self.image = image
        super().__init__(pod, f"image {image}", f"{self.reason}: {message}")
        self.message = message  # PodError's is the whole line; the kubelet wants this part


class ErrImagePull(ImagePullError):
    """The pull failed (registry refused, unreachable, bad content)."""

    reason = "ErrImagePull"


class ErrImageNeverPull(ImagePullError):
    """``imagePullPolicy: Never`` and the image is not in the store."""

    reason = "ErrImageNeverPull"


class ImagePullBackOff(ImagePullError):
    """An earlier pull of this image for this pod failed and its back-off has not passed:
    the registry was not asked. ``remaining`` is how long it still lasts (seconds)."""

    reason = "ImagePullBackOff"

    def __init__(
        self, pod: str, container: str, image: str, message: str, remaining: float
    ) -> None:
        super().__init__(pod, container, image, message)
        self.remaining = remaining


class InvalidImageName(ImagePullError):
    """``image`` is not a reference the distribution grammar accepts."""

    reason = "InvalidImageName"


@dataclass
class _Entry:
    delay: float  # the back-off set by the last failure
    last: float  # when that failure was (the clock's time)


class PullBackoff:
    """Per-key exponential back-off (the kubelet's ``flowcontrol.Backoff``): the first failure
    of a key holds it off for ``initial`` seconds, each further failure doubles that up to
    ``maximum``; a key that has not failed for ``2 * maximum`` starts again from ``initial``.
    Thread-safe; ``clock`` is monotonic seconds (a test passes its own)."""

    def __init__(
        self,
        initial: float = BACKOFF_INITIAL,
        maximum: float = BACKOFF_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"back-off: want 0 < initial <= maximum, got {initial}, {maximum}")
        self.initial = initial
        self.maximum = maximum
        self.clock = clock
        self._mu = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def _expired(self, e: _Entry, now: float) -> bool:
        return now - e.last > 2 * self.maximum

    def remaining(self, key: str) -> float:
        """Seconds ``key`` is still held off (0: a pull may be tried)."""
        now = self.clock()
        with self._mu:
            e = self._entries.get(key)
            if e is None or self._expired(e, now):
                return 0.0
            return max(0.0, e.last + e.delay - now)

    def delay(self, key: str) -> float:
        """The back-off the last failure of ``key`` set (0 when there is none)."""
        with self._mu:
            e = self._entries.get(key)
            return e.delay if e is not None else 0.0

    def failed(self, key: str) -> float:
        """Record a failure of ``key``; returns the back-off it now has."""
        now = self.clock()
        with self._mu:
            e = self._entries.get(key)
            if e is None or self._expired(e, now):
                e = self._entries[key] = _Entry(self.initial, now)
            else:
                e.delay, e.last = min(e.delay * 2, self.maximum), now
            self._gc(now)
            return e.delay

    def succeeded(self, key: str) -> None:
        """Forget ``key``: its next failure starts from ``initial`` again."""
        with self._mu:
            self._entries.pop(key, None)

    def _gc(self, now: float) -> None:
        for k in [k for k, e in self._entries.items() if self._expired(e, now)]:
            del self._entries[k]

    def __len__(self) -> int:
        with self._mu:
            return len(self._entries)


def _local_only(image: str, conf: Any) -> bool:
    """A name no registry serves: ``localhost/...``, or a short name with no
    unqualified-search registry to try."""
    from images.reference import parse
    from images.regconf import _has_domain

    name = parse(image).name
    if name.startswith("localhost/"):
        return True
    return not _has_domain(name) and not conf.search


def _candidates(image: str, conf: Any) -> list[str]:
    """The names ``image`` may be stored under: itself, then its qualified forms."""
    from images.regconf import qualify

    out = [image]
    try:
        out += [str(r) for r in qualify(image, conf)]
    except ImageError:
        pass  # a short name with no search registries: only the name itself
    return out


def find_local(store: Store, image: str, conf: Any) -> Image | None:
    """The stored image ``image`` names (as written or qualified by ``conf``), or None."""
    for name in _candidates(image, conf):
        try:
            return store.get(name)
        except NotFound:
            continue
    return None


def pull_options(opts: PodOptions, credentials: Keyring | None = None) -> Any:
    """``images.pull.Options`` from the pod options (registries.conf, auth file, certs.d)
    and the pod's own credentials (tried before the auth file's)."""
    from images.pull import Options

    return Options(
        conf_path=opts.registries_conf,
        auth_file=opts.auth_file,
        certs_dir=opts.certs_dir,
        tls_verify=opts.tls_verify,
        keyring=credentials,
    )


def ensure_image(
    store: Store,
    pod_uid: str,
    container: Container,
    opts: PodOptions,
    backoff: PullBackoff | None = None,
    credentials: Keyring | None = None,
) -> Image:
    """The image of ``container``, pulled if its policy says so (see the module doc), with
    ``credentials`` (the pod's pull secrets, in memory) before the node's auth file."""
    from images.pull import pull
    from images.reference import check_ref
    from runtime.pod.manifest import PullPolicy

    image, policy = container.image, container.image_pull_policy
    name = container.name

    def fail(kind: type[ImagePullError], message: str) -> ImagePullError:
        return kind(pod_uid, name, image, message)

    try:
        check_ref(image)
    except FormatError as e:
        raise fail(InvalidImageName, f'Failed to apply default image tag "{image}": {e}') from e
    po = pull_options(opts, credentials)
    try:
        conf = po.registries()
    except ImageError as e:
        conf = None
        conf_error: ImageError | None = e
    else:
        conf_error = None
    local = find_local(store, image, conf) if conf is not None else _get(store, image)
    if policy is PullPolicy.NEVER:
        if local is None:
            raise fail(
                ErrImageNeverPull,
                f'Container image "{image}" is not present with pull policy of Never',
            )
        return local
    if local is not None and (
        policy is PullPolicy.IF_NOT_PRESENT or (conf is not None and _local_only(image, conf))
    ):
        return local
    key = f"{pod_uid}_{image}"
    if backoff is not None:
        left = backoff.remaining(key)
        if left > 0:
            raise ImagePullBackOff(pod_uid, name, image, f'Back-off pulling image "{image}"', left)
    try:
        if conf_error is not None:
            raise conf_error
        pulled = pull(store, image, po)
    except ImageError as e:
        if backoff is not None:
            backoff.failed(key)
        raise fail(ErrImagePull, f'Failed to pull image "{image}": {e}') from e
    if backoff is not None:
        backoff.succeeded(key)
    return pulled.image


def _get(store: Store, image: str) -> Image | None:
    try:
        return store.get(image)
    except NotFound:
        return None
