"""The network layer's exceptions, below :class:`runtime.errors.CorralError`."""

from __future__ import annotations

import os

from runtime.errors import CorralError


class NetworkError(CorralError):
    """A pod network operation failed; ``step`` names what was being done."""

    def __init__(self, step: str, message: str, errno: int = 0) -> None:
        self.step = step
        self.message = message
        self.errno = errno
        super().__init__(f"{step}: {message}")

    @classmethod
    def from_oserror(cls, step: str, exc: OSError) -> NetworkError:
        err = exc.errno or 0
        return cls(step, os.strerror(err) if err else str(exc), err)


class NetworkConfigError(NetworkError):
    """A node network config is invalid; ``step`` is the field, e.g. ``peers[1].podCIDR``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)


class NetlinkError(NetworkError):
    """A netlink request failed, e.g. step ``link add veth cr0123(eth0)`` errno EEXIST."""


class IpamExhausted(NetworkError):
    """Every address of the pod CIDR is allocated."""


class HostPortConflict(NetworkError):
    """A hostPort is already mapped to another pod."""


class FirewallError(NetworkError):
    """nft or iptables failed; ``message`` holds its stderr."""


class CniError(NetworkError):
    """A CNI plugin failed; ``code``, ``msg`` and ``details`` come from its error result."""

    def __init__(self, step: str, code: int, msg: str, details: str = "") -> None:
        self.code = code
        self.msg = msg
        self.details = details
        text = f"{msg} ({details})" if details else msg
        super().__init__(step, f"code {code}: {text}")
