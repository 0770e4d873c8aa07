"""Quantities in kube-apiserver's canonical form (apimachinery's ``Quantity.String``): what a
create, update, patch or apply stores and what every read returns."""

from __future__ import annotations

import random

import pytest

import kubemodel
from kubemodel import FieldError, parse_quantity
from kubemodel.quantity import Quantity, canonical_quantity

CANONICAL: list[tuple[object, str]] = [
    # the brief's cases, and how kube writes them
    ("0.5", "500m"),
    ("1000m", "1"),
    ("1024Mi", "1Gi"),
    ("2000000000n", "2"),
    ("1.5Gi", "1536Mi"),
    ("0.1", "100m"),
    ("100000m", "100"),
    ("1e3", "1e3"),  # an exponent stays an exponent: 1e3 is canonical (not "1k")
    ("1000", "1k"),
    ("1500", "1500"),
    ("1.5k", "1500"),
    ("1.5M", "1500k"),
    ("1000M", "1G"),
    ("0.001T", "1G"),
    ("1000u", "1m"),
    ("1.08", "1080m"),
    ("1080000000n", "1080m"),
    ("5000m", "5"),
    ("0", "0"),
    ("00", "0"),
    ("0m", "0"),
    ("0Gi", "0"),
    ("-0", "0"),
    ("0.000", "0"),
    # binary: the largest binary suffix that leaves an integer, under 1024 or a fraction decimal
    ("1Ki", "1Ki"),
    ("307200Ki", "300Mi"),
    ("1025024Mi", "1001Gi"),
    ("1024Gi", "1Ti"),
    ("2048Ki", "2Mi"),
    ("1000Mi", "1000Mi"),
    ("0.5Ki", "512"),
    ("0.5Mi", "512Ki"),
    ("100.035Ki", "102435840m"),
    (".001Ki", "1024m"),
    (".000001Ki", "1024u"),
    (".000000001Ki", "1024n"),
    (".000000000001Ki", "2n"),  # 1.024e-12 rounded up to 1n... and then 2n: up, to the nano
    ("-1024Mi", "-1Gi"),
    ("-.001Ki", "-1024m"),
    ("9Ei", "9223372036854775807"),  # binary is capped at the largest int64
    ("99999999999999999999Ti", "9223372036854775807"),
    # exponents keep their family
    ("1.2e3", "1200"),
    ("1.3E+6", "1300e3"),
    ("12e2", "1200"),
    (".001e12", "1e9"),
    ("0.001e0", "1e-3"),
    ("1000e-12", "1e-9"),
    ("1e-7", "100e-9"),
    ("1e400", "10e399"),  # a decimal is not capped
    ("1000E", "1e21"),  # past E, decimal SI is written with an exponent
    ("-1e9223372036854775807", "-100e-3"),  # the exponent is an int32 in Go: -1
    ("1e2147483648", "1e-9"),  # ... -2147483648, then rounded up to a nano
    # rounding up below a nano, away from zero
    ("3.001n", "4n"),
    ("1.1E-9", "2e-9"),
    ("0.0000000001", "1n"),
    ("0.00000012345", "124n"),
    ("-0.0000000001", "-1n"),
    ("1e-400", "1e-9"),
    ("0e999999999", "0"),
    # past int64 on the decimal side
    ("999999999999999999.1", "999999999999999999100m"),
    ("1000000000000000000", "1E"),
    ("9999999999999999999000m", "9999999999999999999"),
    ("-10000000000000000000000m", "-10E"),
    ("10.000000000000000001E", "10000000000000000001"),
    ("9223372036854775808.1", "9223372036854775808100m"),
    # a text already canonical (apimachinery's quick test) is kept exactly as written
    ("10E", "10E"),
    ("-9223372036854775809", "-9223372036854775809"),
    ("12E", "12E"),
    ("+1", "+1"),
    ("007", "007"),
    ("01Gi", "01Gi"),
    ("1.500", "1.500"),
    ("1.", "1."),
    ("1.G", "1.G"),
    ("1e0", "1e0"),
    # no number is zero (apimachinery's scanner)
    (".", "0"),
    ("-.", "0"),
    ("Mi", "0"),
    ("e3", "0"),
    # JSON and YAML numbers, read as Go reads their text
    (1, "1"),
    (0.5, "500m"),
    (1500, "1500"),
    (1e-7, "100e-9"),
    (1e16, "10e15"),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL, ids=[repr(c[0]) for c in CANONICAL])
def test_canonical_form(text: object, canonical: str) -> None:
    assert canonical_quantity(text) == canonical
    assert Quantity(text) == canonical
    again = parse_quantity(canonical)
    assert again.canonical == canonical  # canonical is a fixed point
    if abs(again.value) < 2**62:
        assert again.value == parse_quantity(text).value


@pytest.mark.parametrize(
    "text", ["", " 1", "1 ", "1K", "1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i",
             "-3.01i", "-3.01e-", "e-10", "Ei", "1e9223372036854775808", "1e" + "9" * 5000]
)  # fmt: skip
def test_not_quantities(text: str) -> None:
    with pytest.raises(FieldError):
        canonical_quantity(text, "x")


@pytest.mark.parametrize(
    "text",
    ["1e-2000000000", "1" + "0" * 100_000 + "Ki", "0." + "0" * 100_000 + "1Ki", "1" * 100_000,
     "1e2000000000", "1" * 30 + "e2000000000", "1" * 30 + "e-2000000000"],
    ids=["tiny", "huge-binary", "tiny-binary", "many-digits", "huge", "huge-long", "tiny-long"],
)  # fmt: skip
def test_extreme_quantities_are_cheap(text: str) -> None:
    """Nothing is worked out digit by digit to an exponent's size (10**2000000000 is not)."""
    amount = parse_quantity(text)
    assert parse_quantity(amount.canonical).canonical == amount.canonical


def test_canonical_is_a_fixed_point_and_keeps_the_value() -> None:
    rng = random.Random(7)
    suffixes = ["", "n", "u", "m", "k", "M", "G", "T", "E", "Ki", "Mi", "Gi", "Ti", "Ei", "e3",
                "e-3", "E7", "e-12", "e0", "e20"]  # fmt: skip
    seen = 0
    for _ in range(20000):
        text = (
            rng.choice(["", "-", "+"])
            + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 22)))
            + rng.choice(["", "."])
            + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 12)))
            + rng.choice(suffixes)
        )
        try:
            amount = parse_quantity(text)
        except FieldError:
            continue
        seen += 1
        again = parse_quantity(amount.canonical)
        assert again.canonical == amount.canonical, text
        if abs(amount.value) < 2**62:
            assert again.value == amount.value, text
    assert seen > 10000


def test_every_quantity_of_a_pod_is_canonical() -> None:
    """Containers, init and ephemeral containers, overhead, emptyDir sizes: every Quantity the
    model holds."""
    res = {"limits": {"cpu": "0.5", "memory": "1024Mi"}, "requests": {"cpu": 0.25}}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "q"},
        "spec": {
            "containers": [{"name": "a", "image": "i", "resources": res}],
            "initContainers": [{"name": "b", "image": "i", "resources": res}],
            "ephemeralContainers": [{"name": "c", "image": "i"}],
            "overhead": {"cpu": "0.1", "memory": "2048Ki"},
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1.5Gi"}}],
        },
    }
    out = kubemodel.to_dict(kubemodel.decode(pod))
    want = {
        "limits": {"cpu": "500m", "memory": "1Gi"},
        "requests": {"cpu": "250m", "memory": "1Gi"},
    }  # (defaulted from the limit)
    for c in out["spec"]["containers"] + out["spec"]["initContainers"]:
        assert c["resources"] == want
    assert out["spec"]["overhead"] == {"cpu": "100m", "memory": "2Mi"}
    assert out["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "1536Mi"


def test_node_pvc_limitrange_quota_quantities_are_canonical() -> None:
    node = kubemodel.decode(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n"},
            "status": {
                "capacity": {"cpu": "2000m", "memory": "4194304Ki", "pods": "110"},
                "allocatable": {"cpu": "1.5", "ephemeral-storage": "1000000000"},
            },
        }
    )
    status = kubemodel.to_dict(node)["status"]
    assert status["capacity"] == {"cpu": "2", "memory": "4Gi", "pods": "110"}
    assert status["allocatable"] == {"cpu": "1500m", "ephemeral-storage": "1G"}
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "0.5Gi"}}},
    }
    got = kubemodel.to_dict(kubemodel.decode(pvc))
    assert got["spec"]["resources"]["requests"] == {"storage": "512Mi"}
