"""The one error-to-exit-code boundary of the ``corral`` command.

A command names what it is doing, ``with failing(f"run {image}"):``, and an error of ours
raised inside becomes a :class:`Failure`. The root group (:class:`Group`) turns a Failure into
one line on stderr, ``corral: <what>: <step>(<object>): <reason>``, and the exit status:

- ``runtime.ctr.RunError``: its own, as podman's: 125 when corral failed, 126 when the command
  cannot be executed, 127 when it does not exist;
- every other error of ours (``runtime.errors.CorralError``, ``images.errors.ImageError``,
  ``OSError``, ``ValueError``): 1.

Usage errors stay click's (2). Anything else is a bug and keeps its traceback. What a command
exits with by design (a container's exit code, a pod's phase) is not an error and passes
through as ``SystemExit``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

FAILED = 1  # exit status of a command of ours that failed


class Failure(Exception):
    """A command failed: ``what`` it was doing, the error, and the exit status it means."""

    def __init__(self, what: str, cause: BaseException | str, code: int = FAILED) -> None:
        super().__init__(f"{what}: {cause}")
        self.what = what
        self.cause = cause
        self.code = code


def exit_code(exc: BaseException) -> int | None:
    """The exit status for an error raised by a library of ours, or None for a bug."""
    # Imported here, on the error path only: `corral --help` imports no library.
    from images.errors import ImageError
    from runtime.errors import CorralError

    if not isinstance(exc, CorralError | ImageError | OSError | ValueError):
        return None
    if isinstance(exc, CorralError):
        from runtime.ctr import RunError

        if isinstance(exc, RunError):
            return exc.exit_code
    return FAILED


@contextmanager
def failing(what: str) -> Iterator[None]:
    """Errors of ours raised inside become a Failure of ``what``."""
    try:
        yield
    except Failure:
        raise
    except Exception as e:
        code = exit_code(e)
        if code is None:
            raise
        raise Failure(what, e, code) from e


def report(f: Failure) -> None:
    """The one line a failure prints."""
    click.echo(f"corral: {f}", err=True)


class Group(click.Group):
    """The root command group: every Failure of every subcommand ends here."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Failure as f:
            report(f)
            ctx.exit(f.code)
