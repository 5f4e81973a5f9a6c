"""Decimal numbers in protocol fields: ASCII digits only (RFC 5234 ``DIGIT = %x30-39``).

Every numeric field the core reads (the BDAT chunk size, MAIL ``SIZE=``, PROXY v1 ports) goes
through :func:`parse_number`. ``str.isdigit()`` and ``int()`` alone are not enough: they take
superscripts and the digits of every script (U+00B2 SUPERSCRIPT TWO, U+0663 ARABIC-INDIC DIGIT
THREE, U+FF13 FULLWIDTH DIGIT THREE), and ``int()`` also takes signs, spaces and underscores.
"""

from __future__ import annotations

from .errors import ProtocolError


def parse_number(
    digits: str | bytes,
    *,
    max_digits: int,
    code: int,
    enhanced: str,
    text: str,
    maximum: int | None = None,
    leading_zeros: bool = True,
) -> int:
    """The value of ``digits``, one to ``max_digits`` ASCII digits.

    Anything else raises ``ProtocolError(code, enhanced, text)``, as does a value above
    ``maximum`` and a leading zero (other than in ``0`` itself) when ``leading_zeros`` is False.
    """
    if isinstance(digits, bytes):
        ascii_digits = digits.isdigit()  # bytes.isdigit() knows only ASCII
        leading_zero = digits[:1] == b"0"
    else:
        ascii_digits = digits.isascii() and digits.isdigit()
        leading_zero = digits[:1] == "0"
    if (
        not ascii_digits
        or len(digits) > max_digits
        or (leading_zero and not leading_zeros and len(digits) > 1)
    ):
        raise ProtocolError(code, enhanced, text)
    value = int(digits)
    if maximum is not None and value > maximum:
        raise ProtocolError(code, enhanced, text)
    return value
