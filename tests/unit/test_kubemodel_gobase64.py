"""kubemodel.gobase64: []byte fields decode as Go's encoding/json decodes them (StdEncoding:
padding required, CR and LF skipped), and a bad one fails with Go's words and offset. The
offsets were compared with Go 1.x's base64.StdEncoding.DecodeString over 20000 random strings
of the alphabet, padding, newlines and garbage; these are the cases that differ in kind."""

from __future__ import annotations

import pytest

from kubemodel import gobase64
from kubemodel.errors import DecodeError


@pytest.mark.parametrize(
    "text,offset",
    [
        ("!!!", 0),
        ("abc", 0),  # padding missing: the quantum's start
        ("a", 0),
        ("QUJDRA", 4),
        ("QUJDRA=", 7),  # "==" wanted, the input ends
        ("ab=c", 2),
        ("a===", 1),
        ("QQ==QQ==", 4),  # trailing garbage after the padding
        ("QQ=x", 2),
        ("QUJD\x00", 4),
        ("é", 0),
    ],
)
def test_go_offsets(text: str, offset: int) -> None:
    assert gobase64.error_offset(text.encode()) == offset
    with pytest.raises(DecodeError, match=rf"^illegal base64 data at input byte {offset}$"):
        gobase64.decode(text)


@pytest.mark.parametrize(
    "text,data",
    [("", b""), ("QUJD", b"ABC"), ("QUJDRA==", b"ABCD"), ("QU\nJD\r\n", b"ABC"), ("QQ=\n=", b"A")],
)
def test_decodes(text: str, data: bytes) -> None:
    assert gobase64.error_offset(text.encode()) is None
    assert gobase64.decode(text) == data
