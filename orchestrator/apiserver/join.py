"""Joining a node, as k3s does: the agent has no kubeconfig, only the join token
``K10<sha256 of the CA>::server:<secret>``. It fetches the CA from ``/cacerts`` (public), checks
it against the hash in the token, then presents the token to ``/v1-corral/node-credentials``
over TLS it now trusts and gets a client certificate for ``system:node:<name>`` (group
``system:nodes``) and a serving certificate for the kubelet's HTTPS port (the node's name and
addresses), both signed by the cluster CA, and a client certificate for
``system:corral-controller``, the user RBAC lets read pods, namespaces and NetworkPolicies
cluster-wide (k3s's agents hold system:k3s-controller's for kube-router). A wrong token gets
401 and no certificate."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from aiohttp import web

from kubemodel.names import DNS_SUBDOMAIN

from .errors import ApiError, bad_request
from .pki import Pki, issue_client_cert, issue_serving_cert, not_after
from .policy import CONTROLLER_USER

__all__ = ["CACERTS_PATH", "CREDENTIALS_PATH", "JOIN_PATHS", "add_join_routes", "token_secret"]

log = logging.getLogger("corral.join")

CACERTS_PATH = "/cacerts"
CREDENTIALS_PATH = "/v1-corral/node-credentials"
# Paths whose handlers authenticate themselves (the join token) or serve public data (the CA).
JOIN_PATHS = (CACERTS_PATH, CREDENTIALS_PATH)


def token_secret(token: str) -> str:
    """The secret part of a join token (a bare secret is its own)."""
    return token.strip().rsplit("::server:", 1)[-1]


def add_join_routes(app: web.Application, pki: Pki, token: str) -> None:
    """Serve ``/cacerts`` and ``/v1-corral/node-credentials`` for agents holding ``token``."""
    secret = token_secret(token)

    async def cacerts(request: web.Request) -> web.Response:
        return web.Response(body=pki.ca_cert.read_bytes(), content_type="application/x-pem-file")

    async def credentials(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        given = token_secret(auth[len("Bearer ") :]) if auth.startswith("Bearer ") else ""
        if not given or not hmac.compare_digest(given.encode(), secret.encode()):
            log.warning("node credentials refused to %s: wrong join token", request.remote)
            raise ApiError(401, "Unauthorized", "Unauthorized: the join token is not valid")
        try:
            body: Any = await request.json()
        except ValueError:
            raise bad_request('the body must be JSON: {"nodeName": NAME}') from None
        name = body.get("nodeName") if isinstance(body, dict) else None
        if not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
            raise bad_request(f"invalid node name {name!r}: must be a DNS subdomain")
        addresses = body.get("nodeAddresses") or []
        if not isinstance(addresses, list) or not all(
            isinstance(a, str) and 0 < len(a) <= 253 for a in addresses
        ):
            raise bad_request("nodeAddresses must be a list of host names or addresses")
        cert, key = issue_client_cert(pki, f"system:node:{name}", ("system:nodes",))
        # the node's cluster-wide reader (its NetworkPolicy enforcement), as k3s gives its
        # agents system:k3s-controller: RBAC's CONTROLLER_USER role, not the node authorizer
        controller, controller_key = issue_client_cert(pki, CONTROLLER_USER)
        serving, serving_key = issue_serving_cert(pki, name, [name, *addresses])
        log.info("issued node credentials for %s to %s", name, request.remote)
        return web.json_response(
            {
                "nodeName": name,
                "ca": pki.ca_cert.read_text(),
                "certificate": cert.decode(),
                "key": key.decode(),
                "servingCertificate": serving.decode(),
                "servingKey": serving_key.decode(),
                "controllerCertificate": controller.decode(),
                "controllerKey": controller_key.decode(),
                "notAfter": not_after(cert),
            }
        )

    app.router.add_get(CACERTS_PATH, cacerts)
    app.router.add_post(CREDENTIALS_PATH, credentials)
