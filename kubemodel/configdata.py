"""Validation of ConfigMap and Secret as kube-apiserver does it: keys are config keys, a key
is not in both data and binaryData, Secret data is base64, and the data (decoded) is at most
1 MiB (``MaxSecretSize``, for ConfigMaps too: a node writes it into every pod's volume)."""

from __future__ import annotations

from kubemodel import gobase64
from kubemodel._generated import ConfigMap, Secret
from kubemodel.codec import VALIDATORS
from kubemodel.errors import FieldError, key
from kubemodel.names import check_config_key
from kubemodel.pod import invalid, validate_meta

__all__ = ["MAX_DATA_BYTES"]

MAX_DATA_BYTES = 1024 * 1024


def _too_long(where: str) -> FieldError:
    return FieldError(where, f"Too long: may not be more than {MAX_DATA_BYTES} bytes")


def _decoded_sizes(data: dict[str, str] | None) -> dict[str, int]:
    """The decoded size of each value of base64 data (binaryData, a Secret's data): []byte in
    Go, whose JSON is base64; anything else does not decode (a 400 before validation)."""
    return {k: len(gobase64.decode(v)) for k, v in (data or {}).items()}


def _validate_configmap(cm: ConfigMap) -> None:
    binary = _decoded_sizes(cm.binary_data)
    validate_meta(cm.metadata)
    for k in cm.data or {}:
        check_config_key(k, key("data", k))
    for k in cm.binary_data or {}:
        check_config_key(k, key("binaryData", k))
        if k in (cm.data or {}):
            raise invalid(key("data", k), k, "duplicate of key present in binaryData")
    size = sum(len(v.encode()) for v in (cm.data or {}).values())
    size += sum(binary.values())
    if size > MAX_DATA_BYTES:
        raise _too_long("[]")


def _validate_secret(s: Secret) -> None:
    sizes = _decoded_sizes(s.data)
    validate_meta(s.metadata)
    for k in sizes:
        check_config_key(k, key("data", k))
    if sum(sizes.values()) > MAX_DATA_BYTES:
        raise _too_long("data")
    for k in s.string_data or {}:
        check_config_key(k, key("stringData", k))


VALIDATORS.update({ConfigMap: _validate_configmap, Secret: _validate_secret})
