"""Kubernetes resource quantities (``resource.Quantity``).

``parse_quantity`` reads a quantity as apimachinery's ``ParseQuantity`` does: a signed decimal
number (digits, a point, digits: any part may be missing, so ``.``, ``-`` and ``Mi`` are zero),
then one of the suffixes ``n u m "" k M G T P E`` (decimal SI: kilo is a lower-case ``k``;
``1K`` is refused, as the API server refuses it), ``Ki Mi Gi Ti Pi Ei`` (binary) or an exponent
``e3``, ``E-2`` (which Go reads as an int64 and keeps as an int32: its high bits are lost).
A value finer than a nano is rounded up (away from zero) to the next nano; a binary one is
capped at the largest int64 (a decimal one is not).

Every quantity has a canonical text, the one kube-apiserver stores and returns
(``Quantity.String``): the suffix family the quantity was written with (binary, decimal SI or
exponent), the largest suffix that leaves an integer and no precision lost ("0.5" is "500m",
"1024Mi" "1Gi", "1.5Gi" "1536Mi", "1000m" "1", "1e3" "1e3", "1200e0" "1200"); a binary value
under 1024 or with a fraction is written decimal ("0.5Ki" is "512"). A text that is already in
that form (by apimachinery's cheap test: for decimal an exponent that is a multiple of three, no
leading zero and no trailing "000"; for binary an odd multiple of 1, 2 or 4 units) is kept as
written, sign and leading zeros too ("+1", "007", "01Gi"), as apimachinery keeps it.

In the object model a quantity is a ``Quantity``: its canonical text (a YAML or JSON number
``1`` or ``0.5`` is read as its text ``"1"``, ``"0.5"``), checked when it is decoded;
``Quantity.amount()`` is its value. Like the kubelet, cpu is used in millicores rounded up
(``Amount.milli``) and memory in bytes rounded up (``Amount.ceil``); for those an ``Amount``'s
value is capped at the largest int64 either way.
"""

from __future__ import annotations

import decimal
import functools
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from kubemodel.errors import FieldError, kind_of, q

__all__ = ["Amount", "Quantity", "canonical_quantity", "parse_quantity"]

# apimachinery's scanner: sign, digits, an optional point and digits, then a suffix of the
# letters it knows, an optional sign and digits (checked against the suffix tables after).
_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)(?P<zeros>0*)(?P<num>[0-9]*)(?P<point>\.(?P<denom>[0-9]*))?"
    r"(?P<suffix>[eEinumkKMGTP]*[+-]?[0-9]*)"
)
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {e: s for s, e in _DECIMAL.items()}
_BINARY_SUFFIX = {e // 10: s for s, e in _BINARY.items()} | {0: ""}
_INT64_MAX = 2**63 - 1
_MAX = Fraction(_INT64_MAX)
# (an exact context: no rounding, no exponent limit that an int32 exponent could reach)
_EXACT = decimal.Context(
    prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[]
)
_NANO = Decimal("1e-9")

DECIMAL_SI, BINARY_SI, DECIMAL_EXPONENT = "DecimalSI", "BinarySI", "DecimalExponent"


@dataclass(frozen=True, slots=True, order=True)
class Amount:
    """A quantity's value (for use: capped at the largest int64), the text it was written as and
    its canonical text.

    Two amounts are equal when their values are ("1" == "1000m"), as Kubernetes compares.
    """

    value: Fraction
    text: str = field(default="", compare=False)
    canonical: str = field(default="", compare=False)

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
    amount = _parse_text(value if isinstance(value, str) else _number_text(value))
    if isinstance(amount, str):
        raise FieldError(where, amount)
    return amount


def canonical_quantity(value: object, where: str = "") -> str:
    """The text kube-apiserver stores for a quantity (``Quantity.String``)."""
    return parse_quantity(value, where).canonical


def _number_text(value: int | float) -> str:
    """A JSON number's text, as Go's decoder hands it to the quantity (``1e-07`` as ``1e-7``)."""
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python prints
        text = str(Decimal(value))
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if e else text


@functools.lru_cache(maxsize=4096)  # an API server sees the same few quantities again and again
def _parse_text(text: str) -> Amount | str:
    """The amount, or what is wrong with the text."""
    m = _QUANTITY.fullmatch(text)
    if m is None or not text:
        return f"invalid quantity {q(text)}"
    num, denom, suffix = m["num"] or "0", m["denom"] or "", m["suffix"]
    negative = m["sign"] == "-"
    if suffix in _BINARY:
        base, exponent, fmt = 2, _BINARY[suffix], BINARY_SI
    elif suffix in _DECIMAL:
        base, exponent, fmt = 10, _DECIMAL[suffix], DECIMAL_SI
    elif len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[+-]?[0-9]+", suffix[1:]):
        # strconv.ParseInt(.., 10, 64), then int32(): the high bits are dropped
        digits = suffix[1:].lstrip("+-").lstrip("0")
        parsed = int(digits[:20] or "0") if len(digits) <= 19 else 2**63
        parsed = -parsed if suffix[1] == "-" else parsed
        if not -(2**63) <= parsed < 2**63:
            return f"invalid quantity {q(text)}: unable to parse quantity's suffix"
        base, exponent, fmt = 10, (parsed + 2**31) % 2**32 - 2**31, DECIMAL_EXPONENT
    else:
        return f"invalid quantity {q(text)}"

    # apimachinery's fast path: a value that fits an int64 at a scale no finer than a nano.
    # A text in canonical form there is kept as it is written.
    shifted = num + denom
    if base == 10 and len(shifted) <= 18 and exponent - len(denom) >= -9:
        scale = exponent - len(denom)
        if scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0":
            return _amount(text, negative, int(shifted), scale, text)
        return _amount(
            text,
            negative,
            int(shifted),
            scale,
            _canonical(
                Decimal(int(shifted))
                .scaleb(scale, _EXACT)
                .copy_sign(Decimal(-1 if negative else 1)),
                fmt,
            ),
        )
    if base == 2 and not denom and len(num) <= 14 - exponent * 3 // 10:
        value = int(num) << exponent
        if int(num) & 7:
            return _amount(text, negative, value, 0, text)
        return _amount(
            text, negative, value, 0, _canonical(Decimal(-value if negative else value), fmt)
        )

    # The slow path: an exact decimal, rounded up to a nano, a binary one capped.
    if not (m["zeros"] or m["num"] or denom):  # inf.Dec reads no digits
        return f"invalid quantity {q(text)}: unable to parse numeric part of quantity"
    amount = Decimal(f"{num}.{denom}")
    if base == 10:
        amount = amount.scaleb(exponent, _EXACT)
    else:
        amount = _EXACT.multiply(amount, Decimal(1 << exponent))
    if amount and amount.as_tuple().exponent < -9:
        amount = amount.quantize(_NANO, rounding=decimal.ROUND_UP, context=_EXACT)
    if fmt == BINARY_SI:
        if amount > _INT64_MAX:
            amount = Decimal(_INT64_MAX)
        if 0 < amount < 1:
            fmt = DECIMAL_SI
    if negative:
        amount = -amount
    return Amount(_value(amount), text, _canonical(amount, fmt))


def _amount(text: str, negative: bool, unscaled: int, scale: int, canonical: str) -> Amount:
    """An amount of the fast path: ``unscaled`` times ten to ``scale``."""
    if not unscaled:
        return Amount(Fraction(0), text, canonical)
    if scale > 18:
        value = _MAX
    else:
        value = min(unscaled * Fraction(10) ** scale, _MAX)
    return Amount(-value if negative else value, text, canonical)


def _value(amount: Decimal) -> Fraction:
    """An exact decimal as a fraction, its magnitude capped at the largest int64."""
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return Fraction(0)
    if len(digits) + exponent > 19:  # 10**19 and more: past the cap
        value = _MAX
    else:
        value = min(Fraction(int("".join(map(str, digits)))) * Fraction(10) ** exponent, _MAX)
    return -value if sign else value


def _canonical(amount: Decimal, fmt: str) -> str:
    """apimachinery's ``CanonicalizeBytes``: the largest suffix of the quantity's own family
    that leaves an integer."""
    if not amount:
        return "0"
    if fmt == BINARY_SI and -1024 < amount < 1024:
        fmt = DECIMAL_SI
    if fmt == BINARY_SI and amount == amount.to_integral_value(decimal.ROUND_UP, _EXACT):
        number, times = int(amount), 0
        while number % 1024 == 0:
            number, times = number // 1024, times + 1
        return f"{number}{_BINARY_SUFFIX[times]}"
    sign, digit_tuple, exponent = amount.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    extra = exponent % 3
    number = ("-" if sign else "") + stripped + "0" * extra
    exponent -= extra
    if fmt != DECIMAL_EXPONENT and exponent in _DECIMAL_SUFFIX:
        return number + _DECIMAL_SUFFIX[exponent]
    return number + (f"e{exponent}" if exponent else "")


class Quantity(str):
    """A quantity in an object: its canonical text, valid by construction."""

    __slots__ = ()

    def __new__(cls, value: object) -> Quantity:
        if isinstance(value, Quantity):
            return value
        return str.__new__(cls, parse_quantity(value).canonical)

    def amount(self) -> Amount:
        return parse_quantity(str(self))

    def __repr__(self) -> str:
        return f"Quantity({str.__repr__(self)})"
