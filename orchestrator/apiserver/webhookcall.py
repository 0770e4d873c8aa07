"""Calling one admission webhook: an ``admission.k8s.io/v1`` (or v1beta1) AdmissionReview
POSTed over HTTPS, checked with the configuration's caBundle (the system's roots without one),
within its timeoutSeconds; the answer as kube-apiserver reads it (webhooks.py says what is
done with it). Imported at the first call only.

A webhook's ``url`` is called directly. A ``service`` is one of its ready endpoints, picked as
``services/proxy`` picks it (proxyroute), reached through the kubelet of that pod's node: the
API server has no route to pods on nodes in network namespaces, the kubelet does. The kubelet
connects to the pod over HTTPS and checks its certificate for ``<service>.<namespace>.svc``
against the caBundle, as kube-apiserver checks it; without credentials for kubelets the
endpoint's address is dialled directly, checked the same way."""

from __future__ import annotations

import asyncio
import base64
import errno
import ssl
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec

from . import errors
from .patch import PatchError, json_patch
from .podlogs import kubelet_address, kubelet_connector, url_host
from .proxyroute import ERROR_HEADER, _node_of, _service_endpoint
from .webhooks import WARNINGS, Attributes, Hook, WebhookAdmission

if TYPE_CHECKING:
    from .resources import Resource

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


def review(hook: Obj, a: Attributes, uid: str, asked: Resource | None = None) -> Obj:
    """The AdmissionReview sent for request ``a``; ``asked``: the resource the request was
    made to, when ``a`` is told as an equivalent one."""
    res = a.res
    gvk = {"group": res.group, "version": res.version, "kind": a.kind or res.kind}
    if a.kind and isinstance(a.obj, dict) and isinstance(a.obj.get("apiVersion"), str):
        # a subresource's own kind (Eviction is policy/v1's)
        group, _, version = a.obj["apiVersion"].rpartition("/")
        gvk = {"group": group, "version": version, "kind": a.kind}
    gvr = {"group": res.group, "version": res.version, "resource": res.name}
    asked = asked or res
    request: Obj = {
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk
        if a.kind
        else {
            "group": asked.group,
            "version": asked.version,
            "kind": asked.kind,
        },
        "requestResource": {"group": asked.group, "version": asked.version, "resource": asked.name},
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
    def __init__(self, owner: WebhookAdmission) -> None:
        self.owner = owner
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

    async def _target(
        self, hook: Obj, url: str, headers: dict[str, str]
    ) -> tuple[str, ssl.SSLContext, str | None, aiohttp.BaseConnector | None]:
        """Where a call of ``hook`` goes: (URL, TLS context, the name its certificate is
        checked for when not the URL's host, a connector of its own)."""
        cc = hook.get("clientConfig") or {}
        svc = cc.get("service")
        if not svc:
            return url, self._context(cc.get("caBundle")), None, None
        storage = self.owner.storage
        name, ns, port = svc.get("name"), svc.get("namespace"), str(svc.get("port") or 443)
        try:
            pod, target = await _service_endpoint(storage, ns, name, port, name)
            node_name, node = await _node_of(storage, pod)
            host, kport = kubelet_address(node)
        except errors.ApiError as e:
            raise CallError(f'failed to call webhook: Post "{url}": {e.message}') from None
        server_name = f"{name}.{ns}.svc"
        meta = pod["metadata"]
        path = (svc.get("path") or "/") + url.partition("?")[1] + url.partition("?")[2]
        ctx = self.owner.kubelet_client
        if ctx is None:  # no kubelet credentials: the endpoint itself, if it is reachable
            ip = (pod.get("status") or {}).get("podIP") or ""
            direct = f"https://{url_host(ip)}:{target}{path}"
            return direct, self._context(cc.get("caBundle")), server_name, None
        headers["X-Corral-Verify-Name"] = server_name
        headers["X-Corral-Verify-Ca"] = cc.get("caBundle") or ""
        via = (
            f"https://{url_host(host)}:{kport}/podProxy/{meta['namespace']}/{meta['name']}"
            f"/https/{target}{path}"
        )
        return via, ctx, None, kubelet_connector(self.owner.kubelet_netns)

    async def _post(self, hook: Obj, body: bytes) -> Obj:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=True)
            )
        url = _url(hook)
        headers = {"Content-Type": "application/json", "Accept": "application/json, */*"}
        target, ctx, server_name, connector = await self._target(hook, url, headers)
        timeout = aiohttp.ClientTimeout(total=float(hook.get("timeoutSeconds") or 10))
        session = self._session
        if connector is not None:
            session = aiohttp.ClientSession(connector=connector)
        try:
            async with session.post(
                target,
                data=body,
                headers=headers,
                ssl=ctx,
                timeout=timeout,
                server_hostname=server_name,
            ) as resp:
                text = await resp.read()
                if resp.headers.get(ERROR_HEADER):  # the kubelet's: it could not reach the pod
                    why = text.decode(errors="replace").strip()
                    raise CallError(f'failed to call webhook: Post "{url}": {why}')
                if resp.status != 200:
                    shown = text.decode(errors="replace").strip()
                    raise CallError(
                        f'failed to call webhook: an error on the server ("{shown}") has'
                        " prevented the request from succeeding"
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise CallError(f"failed to call webhook: {_dial_error(e, url)}") from None
        finally:
            if session is not self._session:
                await session.close()
        try:
            out = msgspec.json.decode(text)
        except msgspec.DecodeError as e:
            raise CallError(f"received invalid webhook response: {e}") from None
        if not isinstance(out, dict):
            raise CallError("received invalid webhook response: not an object")
        return out

    async def admit(
        self,
        h: Hook,
        a: Attributes,
        as_res: Resource | None = None,
        asked: Resource | None = None,
    ) -> Obj | None:
        """Call ``h`` for ``a`` (told as resource ``as_res``, converted: matchPolicy
        Equivalent): the object patched (a mutating webhook's patch), None when it is left as
        it is; an ApiError refuses the request."""
        hook = h.spec
        if as_res is not None and as_res != a.res:
            return await self._admit_converted(h, a, as_res)
        try:
            return await self._admit(h, a, asked)
        except CallError as e:
            if hook.get("failurePolicy") == "Ignore":
                return None
            raise errors.ApiError(
                500,
                "InternalError",
                f'Internal error occurred: failed calling webhook "{h.name}": {e}',
            ) from None

    async def _admit_converted(self, h: Hook, a: Attributes, as_res: Resource) -> Obj | None:
        """``a`` told as the equivalent ``as_res`` (its objects converted to that form), the
        object patched converted back."""
        from .converted import _CONVERSIONS, to_stored_form

        key = (as_res.group, as_res.version, as_res.name)
        if key in _CONVERSIONS:  # the request's resource is the stored one
            to_view, to_stored = _CONVERSIONS[key][0], lambda o: to_stored_form(as_res, o)
        else:  # (never: requests reach storage in the stored form)
            return None
        told = replace(
            a,
            res=as_res,
            obj=to_view(a.obj) if a.obj is not None else None,
            old=to_view(a.old) if a.old is not None else None,
        )
        patched = await self.admit(h, told, None, asked=a.res)
        if patched is None:
            return None
        try:
            return to_stored(patched)
        except errors.ApiError:
            raise
        except Exception as e:  # a patched object that does not convert
            raise errors.ApiError(500, "InternalError", f"Internal error occurred: {e}") from None

    async def _admit(self, h: Hook, a: Attributes, asked: Resource | None = None) -> Obj | None:
        hook = h.spec
        uid = str(uuid.uuid4())
        sent = review(hook, a, uid, asked)
        got = await self._post(hook, msgspec.json.encode(sent))
        _check_review(got, sent["apiVersion"], uid)
        result = got["response"]
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


def _check_review(got: Obj, api_version: str, uid: str) -> None:
    """VerifyAdmissionResponse: a v1 answer has the request's uid and is a v1 AdmissionReview;
    a v1beta1 one only has to have a response."""
    result = got.get("response")
    if not isinstance(result, dict):
        raise CallError("received invalid webhook response: webhook response was absent")
    if api_version != "admission.k8s.io/v1":
        return
    if result.get("uid") != uid:
        raise CallError(
            f'received invalid webhook response: expected response.uid="{uid}",'
            f' got "{result.get("uid") or ""}"'
        )
    if got.get("apiVersion") != api_version or got.get("kind") != "AdmissionReview":
        group, _, version = str(got.get("apiVersion") or "").rpartition("/")
        raise CallError(
            f"received invalid webhook response: expected webhook response of {api_version},"
            f" Kind=AdmissionReview, got {group}/{version}, Kind={got.get('kind') or ''}"
        )


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
