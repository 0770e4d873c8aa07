"""Calling one admission webhook: an ``admission.k8s.io/v1`` (or v1beta1) AdmissionReview
POSTed over HTTPS, checked with the configuration's caBundle (the system's roots without one),
within its timeoutSeconds; the answer as kube-apiserver reads it (webhooks.py says what is
done with it). Imported at the first call only."""

from __future__ import annotations

import asyncio
import base64
import errno
import ssl
import uuid
from typing import Any

import aiohttp
import msgspec

from . import errors
from .patch import PatchError, json_patch
from .webhooks import WARNINGS, Attributes, Hook

__all__ = ["Client", "CallError"]

Obj = dict[str, Any]
OPTIONS_KIND = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}


class CallError(Exception):
    """The webhook could not be called, or did not answer as one must (ErrCallingWebhook):
    what failurePolicy decides on."""


def _url(hook: Obj) -> str:
    cc = hook.get("clientConfig") or {}
    timeout = int(hook.get("timeoutSeconds") or 10)
    if cc.get("url"):
        base = cc["url"]
    else:
        svc = cc.get("service") or {}
        base = f"https://{svc.get('name')}.{svc.get('namespace')}.svc:{svc.get('port') or 443}"
        base += svc.get("path") or ""
    return f"{base}?timeout={timeout}s"


def _review_version(hook: Obj) -> str:
    for v in hook.get("admissionReviewVersions") or []:
        if v in ("v1", "v1beta1"):
            return f"admission.k8s.io/{v}"
    return "admission.k8s.io/v1"


def review(hook: Obj, a: Attributes, uid: str) -> Obj:
    """The AdmissionReview sent for request ``a``."""
    res = a.res
    gvk = {"group": res.group, "version": res.version, "kind": res.kind}
    gvr = {"group": res.group, "version": res.version, "resource": res.name}
    request: Obj = {
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": a.name,
        "operation": a.operation,
        "userInfo": a.user,
        "object": a.obj,
        "oldObject": a.old,
        "dryRun": a.dry_run,
    }
    if a.subresource:
        request["subResource"] = request["requestSubResource"] = a.subresource
    if a.namespace:
        request["namespace"] = a.namespace
    if a.operation in OPTIONS_KIND:
        options = dict(a.options or {})
        options.update({"kind": OPTIONS_KIND[a.operation], "apiVersion": "meta.k8s.io/v1"})
        request["options"] = options
    return {"apiVersion": _review_version(hook), "kind": "AdmissionReview", "request": request}


def _dial_error(e: BaseException, url: str) -> str:
    where = url.split("?", 1)[0]
    if isinstance(e, asyncio.TimeoutError | TimeoutError):
        return f'Post "{url}": context deadline exceeded'
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        why = getattr(e.certificate_error, "verify_message", None) or str(e.certificate_error)
        if "unable to get local issuer" in why or "self-signed" in why or "self signed" in why:
            why = "x509: certificate signed by unknown authority"
        return f'Post "{url}": tls: failed to verify certificate: {why}'
    if isinstance(e, aiohttp.ClientConnectorError):
        host = f"{e.host}:{e.port}"
        if e.os_error is not None and e.os_error.errno == errno.ECONNREFUSED:
            return f'Post "{url}": dial tcp {host}: connect: connection refused'
        return f'Post "{url}": dial tcp {host}: {e.os_error or e}'
    return f'Post "{where}": {e}'


class Client:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _context(self, ca_bundle: str | None) -> ssl.SSLContext:
        key = ca_bundle or ""
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = ssl.create_default_context()
            if ca_bundle:
                try:
                    pem = base64.b64decode(ca_bundle).decode()
                    ctx.load_verify_locations(cadata=pem)
                except (ValueError, ssl.SSLError) as e:
                    raise CallError(f"could not get REST client: invalid caBundle: {e}") from None
            self._contexts[key] = ctx
        return ctx

    async def _post(self, hook: Obj, body: bytes) -> Obj:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=True)
            )
        url = _url(hook)
        ctx = self._context((hook.get("clientConfig") or {}).get("caBundle"))
        timeout = aiohttp.ClientTimeout(total=float(hook.get("timeoutSeconds") or 10))
        headers = {"Content-Type": "application/json", "Accept": "application/json, */*"}
        try:
            async with self._session.post(
                url, data=body, headers=headers, ssl=ctx, timeout=timeout
            ) as resp:
                text = await resp.read()
                if resp.status != 200:
                    shown = text.decode(errors="replace").strip()
                    raise CallError(
                        f'failed to call webhook: an error on the server ("{shown}") has'
                        " prevented the request from succeeding"
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise CallError(f"failed to call webhook: {_dial_error(e, url)}") from None
        try:
            out = msgspec.json.decode(text)
        except msgspec.DecodeError as e:
            raise CallError(f"received invalid webhook response: {e}") from None
        if not isinstance(out, dict):
            raise CallError("received invalid webhook response: not an object")
        return out

    async def admit(self, h: Hook, a: Attributes) -> Obj | None:
        """Call ``h`` for ``a``: the object patched (a mutating webhook's patch), None when
        it is left as it is; an ApiError refuses the request."""
        hook = h.spec
        try:
            return await self._admit(h, a)
        except CallError as e:
            if hook.get("failurePolicy") == "Ignore":
                return None
            raise errors.ApiError(
                500,
                "InternalError",
                f'Internal error occurred: failed calling webhook "{h.name}": {e}',
            ) from None

    async def _admit(self, h: Hook, a: Attributes) -> Obj | None:
        hook = h.spec
        uid = str(uuid.uuid4())
        sent = review(hook, a, uid)
        got = await self._post(hook, msgspec.json.encode(sent))
        if got.get("apiVersion") != sent["apiVersion"] or got.get("kind") != "AdmissionReview":
            group, _, version = str(got.get("apiVersion") or "").rpartition("/")
            raise CallError(
                f"received invalid webhook response: expected webhook response of"
                f" {sent['apiVersion']}, Kind=AdmissionReview, got {group}/{version},"
                f" Kind={got.get('kind') or ''}"
            )
        result = got.get("response")
        if not isinstance(result, dict):
            raise CallError("received invalid webhook response: webhook response was absent")
        if result.get("uid") != uid:
            raise CallError(
                f'received invalid webhook response: expected response.uid="{uid}",'
                f' got "{result.get("uid") or ""}"'
            )
        sink = WARNINGS.get()
        for w in result.get("warnings") or []:
            if isinstance(w, str) and sink is not None:
                sink.append(w)
        if not result.get("allowed"):
            raise _denied(h.name, result.get("status"))
        patch = result.get("patch")
        if not patch:
            return None
        if not h.mutating:
            raise CallError(
                "received invalid webhook response: validating webhooks may not return patches"
            )
        if result.get("patchType") != "JSONPatch":
            raise CallError(
                "received invalid webhook response: expected patchType JSONPatch, got"
                f" {result.get('patchType') or ''}"
            )
        if a.obj is None:
            return None  # (a DELETE: nothing to patch)
        try:
            ops = msgspec.json.decode(base64.b64decode(patch))
            patched = json_patch(a.obj, ops)
        except (ValueError, msgspec.DecodeError, PatchError) as e:
            raise errors.ApiError(500, "InternalError", f"Internal error occurred: {e}") from None
        if not isinstance(patched, dict):
            raise errors.ApiError(
                500, "InternalError", "Internal error occurred: the patched object is not an object"
            )
        return patched


def _denied(name: str, status: Any) -> errors.ApiError:
    """webhookerrors.ToStatusErr."""
    status = status if isinstance(status, dict) else {}
    denied = f'admission webhook "{name}" denied the request'
    if status.get("message"):
        message = f"{denied}: {status['message']}"
    elif status.get("reason"):
        message = f"{denied}: {status['reason']}"
    else:
        message = f"{denied} without explanation"
    code = status.get("code") if isinstance(status.get("code"), int) else 0
    details = status.get("details") if isinstance(status.get("details"), dict) else None
    return errors.ApiError(code or 403, str(status.get("reason") or ""), message, details)
