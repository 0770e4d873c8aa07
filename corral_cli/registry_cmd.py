"""``corral image pull/push`` and ``corral login/logout``: each parses its options and calls one
function of ``images.pull`` or ``images.push``."""

from __future__ import annotations

import sys
from typing import Any

import click

from .errors import Failure, failing


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


def register(cli: click.Group, image: click.Group, store: Any) -> None:
    """Adds ``image pull``, ``image push``, ``login`` and ``logout``; ``store(ctx)`` opens the
    image store."""

    @image.command("pull")
    @click.argument("ref")
    @_common
    @click.option(
        "--platform",
        "platform_",
        default=None,
        metavar="OS/ARCH[/VARIANT]",
        help="pull the image for this platform (default: this host's; others are refused)",
    )
    @click.pass_context
    def image_pull(ctx: click.Context, ref: str, platform_: str | None, **o: Any) -> None:
        """Pull an image from a registry."""
        from images.platforms import parse
        from images.pull import pull

        from .progress import bar

        s = store(ctx)
        with failing(f"image pull {ref}"):
            if platform_:
                o["platform"] = parse(platform_)
            with bar("pull") as progress:
                res = pull(s, ref, _options(**o), progress)
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
        with failing(f"image push {ref}"):
            digest = push(s, ref, dest, _options(**o))
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
            import getpass  # for login only: its import costs every corral command ms

            password = getpass.getpass() if sys.stdin.isatty() else sys.stdin.readline()
        with failing(f"login {registry}"):
            login(registry, username, password.rstrip("\n"), _options(**o))
        click.echo("Login Succeeded!")

    @cli.command("logout")
    @click.argument("registry")
    @_common
    def logout_cmd(registry: str, **o: Any) -> None:
        """Remove a registry's credentials from the auth file."""
        from images.pull import logout

        with failing(f"logout {registry}"):
            found = logout(registry, _options(**o))
        if not found:
            raise Failure(f"logout {registry}", "not logged in")
        click.echo(f"Removed login credentials for {registry}")
