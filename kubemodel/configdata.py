"""Validation of ConfigMap and Secret as kube-apiserver does it: keys are config keys, a key
is not in both data and binaryData, Secret data is base64."""

from __future__ import annotations

import base64
import binascii

from kubemodel._generated import ConfigMap, Secret
from kubemodel.codec import VALIDATORS
from kubemodel.errors import FieldError, at
from kubemodel.names import check_config_key
from kubemodel.pod import validate_meta

__all__: list[str] = []


def _validate_configmap(cm: ConfigMap) -> None:
    validate_meta(cm.metadata)
    for key in cm.data or {}:
        check_config_key(key, at("data", key))
    for key in cm.binary_data or {}:
        check_config_key(key, at("binaryData", key))
        if key in (cm.data or {}):
            raise FieldError(at("data", key), "duplicate of key present in binaryData")


def _validate_secret(s: Secret) -> None:
    validate_meta(s.metadata)
    for key, value in (s.data or {}).items():
        check_config_key(key, at("data", key))
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise FieldError(at("data", key), "must be base64 encoded") from None
    for key in s.string_data or {}:
        check_config_key(key, at("stringData", key))


VALIDATORS.update({ConfigMap: _validate_configmap, Secret: _validate_secret})
