"""Kubernetes resource quantities (``resource.Quantity``).

``parse_quantity`` implements the Kubernetes grammar exactly: a signed decimal number, then one
of the suffixes ``n u m "" k M G T P E`` (decimal SI: note kilo is a lower-case ``k``; ``1K`` is
rejected, as the API server rejects it), ``Ki Mi Gi Ti Pi Ei`` (binary) or an exponent ``e3``,
``E-2``. Values are exact fractions. Like the kubelet, cpu is used in millicores rounded up
(``Amount.milli``) and memory in bytes rounded up (``Amount.ceil``).

In the object model a quantity is a ``Quantity``: the text as the user wrote it (a YAML number
``1`` or ``0.5`` becomes the text ``"1"``, ``"0.5"``), checked when it is decoded;
``Quantity.amount()`` is its exact value.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from kubemodel.errors import FieldError, kind_of, q

__all__ = ["Amount", "Quantity", "parse_quantity"]

_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>[KMGTPE]i|[eE][+-]?[0-9]+|[numkMGTPE]?)"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
# resource.ParseQuantity caps a quantity's magnitude at the largest int64 (99999Ei and 1e400
# are that) and rounds a non-zero one up to a nano (1e-400 is 1n). An exponent beyond this one
# is capped (or rounded) without working out ten to its power.
_MAX_EXPONENT = 64
_MAX = Fraction(2**63 - 1)
_NANO = Fraction(1, 10**9)


@dataclass(frozen=True, slots=True, order=True)
class Amount:
    """A quantity's exact value and the text it was written as.

    Two amounts are equal when their values are ("1" == "1000m"), as Kubernetes compares.
    """

    value: Fraction
    text: str = field(default="", compare=False)

    def milli(self) -> int:
        """The value in thousandths, rounded up (Kubernetes' ``MilliValue``): cpu millicores."""
        return math.ceil(self.value * 1000)

    def ceil(self) -> int:
        """The value rounded up to an integer (Kubernetes' ``Value``): memory bytes."""
        return math.ceil(self.value)

    def is_zero(self) -> bool:
        return self.value == 0

    def __str__(self) -> str:
        return self.text or str(self.value)


def parse_quantity(value: object, where: str = "") -> Amount:
    """Parse a quantity written as a string or a number; a bad one names ``where``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FieldError(where, f"must be a quantity (a string or a number), not {kind_of(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldError(where, f"invalid quantity {q(repr(value))}")
    text = value if isinstance(value, str) else repr(value)
    amount = _parse_text(text)
    if isinstance(amount, str):
        raise FieldError(where, amount)
    return amount


@functools.lru_cache(maxsize=4096)  # an API server sees the same few quantities again and again
def _parse_text(text: str) -> Amount | str:
    """The amount, or what is wrong with the text."""
    m = _QUANTITY.fullmatch(text)
    if m is None:
        return f"invalid quantity {q(text)}"
    number = Fraction(Decimal(m["num"]))
    suffix = m["suffix"]
    if suffix in _BINARY:
        scale = Fraction(1024 ** _BINARY[suffix])
    else:
        # (int() of thousands of digits raises: no exponent in int64's range has more than 20)
        exponent = _DECIMAL[suffix] if suffix in _DECIMAL else int(suffix[1:22])
        if len(suffix) > 22 or not -(2**63) <= exponent < 2**63:  # strconv.ParseInt's range
            return f"invalid quantity {q(text)}: unable to parse quantity's suffix"
        if number and abs(exponent) > _MAX_EXPONENT:
            amount = _MAX if exponent > 0 else _NANO
            return Amount(-amount if m["sign"] == "-" else amount, text)
        scale = Fraction(10) ** max(min(exponent, _MAX_EXPONENT), -_MAX_EXPONENT)  # of 0
    amount = min(number * scale, _MAX)
    if amount % _NANO:
        amount = math.ceil(amount / _NANO) * _NANO
    return Amount(-amount if m["sign"] == "-" else amount, text)


class Quantity(str):
    """A quantity in an object: its text as written, valid by construction."""

    __slots__ = ()

    def __new__(cls, value: object) -> Quantity:
        if isinstance(value, Quantity):
            return value
        amount = parse_quantity(value)
        return str.__new__(cls, amount.text)

    def amount(self) -> Amount:
        return parse_quantity(str(self))

    def __repr__(self) -> str:
        return f"Quantity({str.__repr__(self)})"
