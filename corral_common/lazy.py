"""Packages whose names load their module at first use (PEP 562): a package's ``__init__``
lists where each of its names lives, and importing the package costs nothing more, so a
command imports only the modules it touches (``corral-oci``'s lifecycle commands, the idle
agent: tests/unit/test_imports.py, tests/integration/test_agent_idle.py)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (the commands' start)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, homes: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package`` (whose globals are ``namespace``): a name in
    ``homes`` is imported from the submodule named there, then kept in the namespace."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        # __import__, as an import statement: python -X importtime logs it (not the imports
        # of importlib.import_module, which would also bring in more modules)
        value = getattr(__import__(f"{package}.{home}", fromlist=(name,)), name)
        namespace[name] = value
        return value

    return __getattr__
