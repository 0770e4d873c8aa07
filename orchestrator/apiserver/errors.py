"""The API server's one error: an HTTP status with the Kubernetes Status body kubectl prints.

``ApiError`` carries code, reason, message and details; the constructors below word them as
kube-apiserver does, because kubectl prints them as they are (``Error from server (NotFound):
pods "x" not found``), except for 422, where it prints ``The <kind> "<name>" is invalid:
<field>: <message>`` from the causes.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ApiError",
    "already_exists",
    "bad_request",
    "cannot_decode",
    "conflict",
    "forbidden",
    "gone",
    "invalid",
    "invalid_all",
    "method_not_allowed",
    "not_found",
    "not_found_path",
]


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:  # StatusReasonUnknown: omitted, as Go's omitempty omits it
            del body["reason"]
        if self.details is not None:  # {} too: kube sends "details":{} for a path it lacks
            body["details"] = self.details
        return body

    def body(self) -> bytes:
        return msgspec.json.encode(self.status())


def _details(resource: str, name: str | None, group: str) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": resource}
    if name is not None:
        d["name"] = name
    if group:
        d["group"] = group
    return d


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        _details(resource, name, group),
    )


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        _details(resource, name, group),
    )


def conflict(resource: str, name: str, group: str = "", why: str = "") -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version and"
        " try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        _details(resource, name, group),
    )


def invalid(kind: str, name: str, field: str, message: str, group: str = "") -> ApiError:
    """422: ``Pod "bad" is invalid: spec.containers: Required value``; a kind of a named
    group is qualified as kube's NewInvalid qualifies it (its GroupKind):
    ``Deployment.apps "web" is invalid: ...``. (kubectl prints ``The Deployment "web" is
    invalid: ...`` from the details.)"""
    cause = {"reason": "FieldValueInvalid", "message": message, "field": field}
    if message.startswith(("is required", "Required value")):
        cause["reason"] = "FieldValueRequired"
        rest = message.removeprefix("is required").removeprefix("Required value")
        cause["message"] = "Required value" + rest
    elif message.startswith(("Unsupported value", "Duplicate value", "Forbidden", "Too long")):
        cause["reason"] = {
            "U": "FieldValueNotSupported",
            "D": "FieldValueDuplicate",
            "T": "FieldValueTooLong",
        }.get(message[0], "FieldValueForbidden")
    elif message == "unknown field":
        cause["reason"] = "FieldValueInvalid"
        cause["message"] = f'unknown field "{field}"'
    shown = f"{field}: {cause['message']}" if field else cause["message"]
    details: dict[str, Any] = {"name": name, "kind": kind, "causes": [cause]}
    if group:
        details["group"] = group
    return ApiError(
        422, "Invalid", f'{_qualified(kind, group)} "{name}" is invalid: {shown}', details
    )


def invalid_all(kind: str, name: str, fields: list[tuple[str, str]], group: str = "") -> ApiError:
    """422 for several invalid fields at once, as kube words an ErrorList:
    ``Widget.example.com "w" is invalid: [spec.a: Required value, spec.b: ...]``."""
    if len(fields) == 1:
        return invalid(kind, name, fields[0][0], fields[0][1], group)
    one = [invalid(kind, name, f, m, group) for f, m in fields]
    causes = [c for e in one for c in (e.details or {}).get("causes", [])]
    shown = ", ".join(
        f"{c['field']}: {c['message']}" if c["field"] else c["message"] for c in causes
    )
    details: dict[str, Any] = {"name": name, "kind": kind, "causes": causes}
    if group:
        details["group"] = group
    return ApiError(
        422, "Invalid", f'{_qualified(kind, group)} "{name}" is invalid: [{shown}]', details
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


class DecodeFailed(ApiError):
    """400: the body is not a ``kind`` (a field of the wrong type, a quantity that does not
    parse), in kube-apiserver's words; ``field`` and ``detail`` say what, for a caller that
    words it otherwise (a patch's result is 422 there)."""

    def __init__(self, kind: str, version: str, field: str, detail: str) -> None:
        shown = f"{field}: {detail}" if field else detail
        super().__init__(
            400,
            "BadRequest",
            f'{kind} in version "{version}" cannot be handled as a {kind}: {shown}',
        )
        self.field = field
        self.detail = detail


class BodyTimeout(ApiError):
    """504: the request's body did not arrive within the request timeout (kube-apiserver's
    words); the connection is closed after it (the rest of the body is not read)."""

    def __init__(self) -> None:
        super().__init__(
            504,
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline"
            " exceeded",
            {},
        )


def cannot_decode(kind: str, version: str, field: str, detail: str) -> DecodeFailed:
    return DecodeFailed(kind, version, field, detail)


def forbidden(resource: str, name: str, message: str, group: str = "") -> ApiError:
    return ApiError(
        403,
        "Forbidden",
        f'{_qualified(resource, group)} "{name}" is forbidden: {message}',
        _details(resource, name, group),
    )


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def not_found_path() -> ApiError:
    """A path the server serves nothing at (kube's details: {})."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})
