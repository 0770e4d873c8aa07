"""What both commands, ``corral`` and ``corral-oci``, take alike: ``-v``/``--version``.

Not ``click.version_option``: it looks up a translation of its help text when a module using
it is imported, which costs every command a few ms (gettext, locale). The version comes from
the package metadata, whose module costs tens of ms to import: read only when asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def version_option(text: Callable[[str], str]) -> Callable[[F], F]:
    """``-v``/``--version``: print ``text(version)`` and exit."""

    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            from .version import version

            click.echo(text(version()))
            ctx.exit()

    return click.option(
        "-v",
        "--version",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=callback,
        help="Show the version and exit.",
    )
