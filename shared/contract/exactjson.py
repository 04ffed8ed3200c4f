"""JSON with exact numbers: the one rule for every copy of a notification we write and read back.

A JSON number with more significant digits than a double holds (money and decimals of 20 digits)
is an exact :class:`~decimal.Decimal` when read (:func:`exact_number`), and a Decimal is written as
the number it is (:func:`dumps`), so a parked copy (retry blob, parked failure, reject file) is
re-applied with the digits it arrived with. Core: no I/O.

The rule, written once:

* Reading (:func:`loads`): only a text with a run of 16 digits and points can hold such a number
  (:func:`has_long_number`); its numbers with a fraction or an exponent are decoded by
  :func:`exact_number` (the float when a double holds the number, else the Decimal). Any other
  text is plain :func:`json.loads` (C speed, the common case).
* Writing (:func:`dumps`): :func:`json.dumps`, byte for byte, for documents without a Decimal
  (the same C encoder; retry blob names hash this text). A Decimal is written as its exact text
  when :func:`loads` reads that text back as this Decimal, else as the double :func:`loads` would
  read (``Decimal("1.50")`` is ``1.5``): so ``dumps(loads(dumps(x))) == dumps(x)`` always.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from decimal import Decimal
from typing import Any

# A JSON number with more significant digits than a double holds (DBL_DIG = 15) has a run of at least
# 16 digits and points; only texts with such a run can hold one (a long id or phone number in a
# string costs the exact path, never a wrong value).
# Bytes: digits and points become "d", the rest " ", then a C substring search (about 1 us for a
# 1 KB body; a regex takes 5).
_DIGITS = bytes(ord("d") if chr(i) in "0123456789." else ord(" ") for i in range(256))
_LONG_RUN = b"d" * 16
_LONG_RUN_TEXT = re.compile(r"[0-9.]{16}")
COMPACT = (",", ":")


def has_long_number(body: bytes | bytearray | memoryview | str) -> bool:
    """Whether ``body`` may hold a number a double cannot hold exactly (then: the exact path)."""
    if isinstance(body, str):
        return _LONG_RUN_TEXT.search(body) is not None
    # find, not in: bytes.__contains__ first tries its argument as an integer (a TypeError raised
    # and cleared each time, ~1,800 instructions in Python 3.11)
    return bytes(body).translate(_DIGITS).find(_LONG_RUN) >= 0


def exact_number(text: str) -> float | Decimal:
    """A JSON number with a fraction or an exponent: the float when a double holds it (its shortest
    form is the same number: ``20000.0000``, ``0.1``), else the exact :class:`Decimal` (money and
    decimals of more than 15 significant digits arrive exactly)."""
    value = float(text)
    if not math.isfinite(value):
        return value  # out of range: the contract refuses it with the reason
    try:
        exact = Decimal(text)
    except ArithmeticError:  # an exponent beyond any decimal context: no exact value to keep
        return value
    return value if Decimal(repr(value)) == exact else exact


def loads(text: str | bytes | bytearray) -> Any:
    """JSON with the numbers of :func:`exact_number` where a number may need it (see the module)."""
    if has_long_number(text):
        return json.loads(text, parse_float=exact_number)
    return json.loads(text)


def number_text(value: Decimal) -> str:
    """The JSON number :func:`dumps` writes for ``value`` (what :func:`loads` reads back is the value
    written: this Decimal when it needs one, else the double)."""
    text = str(value)
    read: float | Decimal = exact_number(text) if has_long_number(text) else float(text)
    if type(read) is Decimal or not math.isfinite(read):
        return text  # (an infinite double: read back as one, which the contract refuses with its reason)
    return repr(read)


def dumps(value: Any, *, sort_keys: bool = False, separators: tuple[str, str] | None = None) -> str:
    """``json.dumps(value, ensure_ascii=False, ...)`` with Decimals written as :func:`number_text`.

    Decimals go through the C encoder as placeholder strings (a NUL, this process's random nonce and
    a counter: no encoded string can equal one, the encoder writes a NUL as ``\\u0000`` and the nonce
    is never written out), then become numbers in one pass; a document without a Decimal costs
    nothing more than :func:`json.dumps`."""
    numbers: list[str] = []

    def mark(o: object) -> str:
        if isinstance(o, Decimal):
            numbers.append(number_text(o))
            return f"\x00{_NONCE}{len(numbers) - 1}"
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    text = json.dumps(value, ensure_ascii=False, sort_keys=sort_keys, separators=separators, default=mark)
    if not numbers:
        return text
    return _MARK.sub(lambda m: numbers[int(m.group(1))], text)


_NONCE = secrets.token_hex(16)
_MARK = re.compile(re.escape(json.dumps(f"\x00{_NONCE}")[:-1]) + r'(\d+)"')
