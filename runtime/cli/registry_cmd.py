"""``corral image pull/push`` and ``corral login/logout``: each parses its options and calls one
function of ``images.pull`` or ``images.push``."""

from __future__ import annotations

import getpass
import sys
from typing import Any

import click


def _options(
    tls_verify: bool, cert_dir: str | None, authfile: str | None, conf: str | None, **kw: Any
) -> Any:
    from images.pull import Options

    return Options(tls_verify=tls_verify, certs_dir=cert_dir, auth_file=authfile, conf_path=conf,
                   **kw)  # fmt: skip


def _common(f: Any) -> Any:
    f = click.option("--tls-verify", type=bool, default=True, show_default=True,
                     help="verify TLS certificates (false also allows plain HTTP)")(f)  # fmt: skip
    f = click.option("--cert-dir", default=None, help="directory of <host:port>/ca.crt")(f)
    f = click.option("--authfile", default=None, envvar="REGISTRY_AUTH_FILE", help="auth file")(f)
    return click.option("--registries-conf", "conf", default=None, help="registries.conf")(f)


def _fail(what: str, exc: BaseException) -> None:
    click.echo(f"corral: {what}: {exc}", err=True)
    sys.exit(1)


def register(cli: click.Group, image: click.Group, store: Any) -> None:
    """Adds ``image pull``, ``image push``, ``login`` and ``logout``; ``store(ctx)`` opens the
    image store."""
    from images.errors import ImageError

    @image.command("pull")
    @click.argument("ref")
    @_common
    @click.pass_context
    def image_pull(ctx: click.Context, ref: str, **o: Any) -> None:
        """Pull an image from a registry."""
        from images.pull import pull

        from .progress import bar

        s = store(ctx)
        try:
            with bar("pull") as progress:
                res = pull(s, ref, _options(**o), progress)
        except (ImageError, OSError) as e:
            _fail(f"image pull {ref}", e)
        click.echo(f"{res.image.id} {res.name} {res.manifest_digest}")

    @image.command("push")
    @click.argument("ref")
    @click.argument("dest", required=False)
    @_common
    @click.pass_context
    def image_push(ctx: click.Context, ref: str, dest: str | None, **o: Any) -> None:
        """Push a stored image to a registry (to DEST, if given)."""
        from images.push import push

        s = store(ctx)
        try:
            digest = push(s, ref, dest, _options(**o))
        except (ImageError, OSError) as e:
            _fail(f"image push {ref}", e)
        click.echo(digest)

    @cli.command("login")
    @click.argument("registry")
    @click.option("-u", "--username", required=True)
    @click.option("-p", "--password", default=None, help="(default: read from stdin)")
    @_common
    def login_cmd(registry: str, username: str, password: str | None, **o: Any) -> None:
        """Check credentials against a registry and store them in the auth file."""
        from images.pull import login

        if password is None:
            password = getpass.getpass() if sys.stdin.isatty() else sys.stdin.readline()
        try:
            login(registry, username, password.rstrip("\n"), _options(**o))
        except (ImageError, OSError) as e:
            _fail(f"login {registry}", e)
        click.echo("Login Succeeded!")

    @cli.command("logout")
    @click.argument("registry")
    @_common
    def logout_cmd(registry: str, **o: Any) -> None:
        """Remove a registry's credentials from the auth file."""
        from images.pull import logout

        try:
            found = logout(registry, _options(**o))
        except (ImageError, OSError) as e:
            _fail(f"logout {registry}", e)
        if not found:
            _fail(f"logout {registry}", ImageError("not logged in"))
        click.echo(f"Removed login credentials for {registry}")
