"""Image platforms (os/architecture/variant): this host's, normalised, matched, picked.

The names are the OCI image spec's (Go's GOARCH values): a host's ``uname -m`` maps through
MACHINES, aliases through ARCH_ALIASES, and an architecture whose variant is implied gets it
(containerd's ``platforms.Normalize``): ``arm64`` is ``arm64/v8``, ``arm`` is ``arm/v7``, so an
image that leaves the variant out matches a host that has one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .errors import FormatError, ImageError

#: ``uname -m`` -> (architecture, variant)
MACHINES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v8"),  # a 32-bit userland on an arm64 kernel
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "loongarch64": ("loong64", ""),
    "mips64": ("mips64", ""),
}

#: Other spellings of an architecture seen in image configs and on command lines.
ARCH_ALIASES: dict[str, str] = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}

#: The variant an architecture has when none is given.
DEFAULT_VARIANT: dict[str, str] = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)


def normalize(os_: str, architecture: str, variant: str = "") -> Platform:
    arch = ARCH_ALIASES.get(architecture.lower(), architecture.lower())
    return Platform(os_.lower(), arch, variant.lower() or DEFAULT_VARIANT.get(arch, ""))


def host(machine: str | None = None) -> Platform:
    """This host's platform (or that of a ``uname -m`` value)."""
    m = machine or os.uname().machine
    arch, variant = MACHINES.get(m, (m, ""))
    return Platform("linux", arch, variant)


def parse(text: str) -> Platform:
    """``os/arch[/variant]`` or ``arch[/variant]`` (os linux), as podman's --platform."""
    parts = text.strip().split("/")
    if not all(parts) or not 1 <= len(parts) <= 3:
        raise FormatError(f"platform {text!r}: want OS/ARCH[/VARIANT]")
    if len(parts) == 1 or (len(parts) == 2 and parts[0] != "linux" and parts[0] != "windows"):
        parts = ["linux", *parts]
    return normalize(*parts)


def of(doc: Any) -> Platform | None:
    """The platform of an image config or a descriptor's ``platform`` (None when it does not
    say which architecture)."""
    if not isinstance(doc, dict):
        return None
    arch, os_ = doc.get("architecture"), doc.get("os")
    if not isinstance(arch, str) or not arch:
        return None
    variant = doc.get("variant")
    return normalize(
        os_ if isinstance(os_, str) and os_ else "linux",
        arch,
        variant if isinstance(variant, str) else "",
    )


def matches(want: Platform, have: Platform) -> bool:
    """``have`` (an image's) runs where ``want`` is asked for: os and architecture equal, and
    the variant equal once both are normalised (an arm64 image without one is arm64/v8)."""
    w = normalize(want.os, want.architecture, want.variant)
    h = normalize(have.os, have.architecture, have.variant)
    return w == h


def pick(manifests: Any, want: Platform, where: str) -> dict[str, Any]:
    """The descriptor for ``want`` in an image index's manifests; an error naming what the index
    has otherwise."""
    if not isinstance(manifests, list):
        raise FormatError(f"{where}: image index without a manifests array")
    have = []
    for d in manifests:
        raw = d.get("platform") if isinstance(d, dict) else None
        p = of(raw)
        if p is None:
            continue
        if matches(want, p):
            return d
        keys = ("os", "architecture", "variant")
        have.append("/".join(str(raw[k]) for k in keys if raw.get(k)))
    raise ImageError(
        f"{where}: no image for {want} in the index (it has {', '.join(have) or 'no platforms'})"
    )


def check(config: Any, want: Platform | None, where: str) -> None:
    """Refuse an image config for another platform than ``want`` (None: this host's, and the
    error says how to take it anyway). A config that names no architecture is taken: nothing
    says it will not run."""
    got = of(config)
    target = want or host()
    if got is None or matches(target, got):
        return
    if want is None:
        raise ImageError(
            f"{where}: image is for {got}, this host runs {target} "
            f"(--platform {got} takes it anyway)"
        )
    raise ImageError(f"{where}: image is for {got}, not {target} as asked")
