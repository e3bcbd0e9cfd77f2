"""Instrument symbols, and their one reversible encoding as a NATS subject token.

Why a ``Symbol`` type apart from ``Identifier``: symbols come from outside (vendors' files,
venues, operators) and end up in file names, SQL, log lines and subjects. Real ones contain
characters a subject token cannot (``BRK.B``, ``EURUSD=X``, ``^GSPC``), while hostile ones
(``../../etc/passwd``, ``X;DROP TABLE bars;--``, ``bar\\nnl``, a 300-character name) must be
refused where they enter. The rules:

- 1 to :data:`MAX_SYMBOL_LENGTH` (64) characters. The longest real symbols are about 40
  (prediction-market tickers, option root + expiry + strike without spaces); 64 leaves room and,
  escaped as a token (at most 3 characters per character), still fits a 255-byte file name.
- ASCII letters and digits, and ``. - _ = ^ &`` (``BRK.B``, ``BTC-USD``, ``SPY_MAX``,
  ``EURUSD=X``, ``^GSPC``, ``M&M.NS``). Nothing else: no ``/`` or ``\\``, no whitespace or
  control character, no quote, ``;``, ``*``, ``>``, ``%`` or ``:``.
- It starts with a letter or a digit (after one optional ``^``), and every ``.`` is followed by
  something other than a ``.``: a symbol can never be ``.``, ``..``, end in ``.`` or name a path.

Subject tokens may only hold ``[A-Za-z0-9_-]`` (see :mod:`mts1b_foundation.subjects`).
:func:`symbol_to_token` keeps letters, digits and ``-`` and writes every other character as ``_``
and its two upper-case hex digits, like a percent escape (``BRK.B`` -> ``BRK_2EB``,
``EURUSD=X`` -> ``EURUSD_3DX``, ``SPY_MAX`` -> ``SPY_5FMAX``). ``_`` is escaped too, so it only
ever starts an escape and :func:`token_to_symbol` reverses the encoding exactly; it accepts only
the escapes the encoder writes, so each symbol has exactly one token.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from mts1b_foundation.errors import SubjectError

__all__ = [
    "MAX_SYMBOL_LENGTH",
    "SYMBOL_PATTERN",
    "Symbol",
    "check_symbol",
    "is_symbol",
    "symbol_to_token",
    "token_to_symbol",
]

MAX_SYMBOL_LENGTH = 64
SYMBOL_PATTERN = r"^\^?[A-Za-z0-9](?:\.?[A-Za-z0-9_=^&-])*$"
"""Characters and shape of a symbol (the length is checked apart, see :data:`Symbol`)."""

_SYMBOL = re.compile(SYMBOL_PATTERN)
_ALLOWED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._=^&-")
_ESCAPED = "._=^&"
_ENCODE = str.maketrans({c: f"_{ord(c):02X}" for c in _ESCAPED})
_DECODE = {f"{ord(c):02X}": c for c in _ESCAPED}
_TOKEN = re.compile(r"^(?:[A-Za-z0-9-]|_[0-9A-F]{2})+$")
_ESCAPE = re.compile(r"_([0-9A-F]{2})")


def _why_not(value: str) -> str | None:
    """The reason ``value`` is not a symbol, or None when it is one."""
    if value.isalnum() and value.isascii() and len(value) <= MAX_SYMBOL_LENGTH:
        return None  # the common case (AAPL), without the regular expression
    if not value:
        return "a symbol cannot be empty"
    if len(value) > MAX_SYMBOL_LENGTH:
        return f"a symbol has at most {MAX_SYMBOL_LENGTH} characters, this one {len(value)}"
    if _SYMBOL.fullmatch(value):
        return None
    bad = sorted({c for c in value if c not in _ALLOWED})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        return (f"a symbol may hold only ASCII letters, digits and . - _ = ^ &; "
                f"this one has {shown}")
    head = value[1:] if value.startswith("^") else value
    if not head[:1].isalnum():
        return "a symbol starts with a letter or a digit (after an optional '^')"
    return "a '.' in a symbol must be followed by a character other than '.'"


def check_symbol(value: str) -> str:
    """``value`` if it is a valid symbol, else ``ValueError`` saying what is wrong with it."""
    reason = _why_not(value) if isinstance(value, str) else "a symbol must be a string"
    if reason is not None:
        raise ValueError(reason)
    return value


def is_symbol(value: object) -> bool:
    """Whether ``value`` is a string that :data:`Symbol` accepts."""
    return isinstance(value, str) and _why_not(value) is None


Symbol = Annotated[
    str,
    AfterValidator(check_symbol),
    Field(description="An instrument symbol: ASCII letters, digits and . - _ = ^ &, starting "
                      "with a letter or digit (after an optional ^), never '..'.",
          json_schema_extra={"minLength": 1, "maxLength": MAX_SYMBOL_LENGTH,
                             "pattern": SYMBOL_PATTERN}),
]
"""An instrument symbol (see the module docstring for the rules). The checks run in
:func:`check_symbol`, so a refusal says which rule failed; the JSON Schema states the same
rules as ``pattern`` and ``maxLength``."""


def symbol_to_token(symbol: str) -> str:
    """The subject token of ``symbol`` (``BRK.B`` -> ``BRK_2EB``); SubjectError if ``symbol``
    is not a valid :data:`Symbol`."""
    reason = _why_not(symbol) if isinstance(symbol, str) else "a symbol must be a string"
    if reason is not None:
        raise SubjectError(f"{symbol!r:.80} cannot travel as a subject token: {reason}",
                           field="symbol", value=symbol)
    return symbol.translate(_ENCODE)


def token_to_symbol(token: str) -> str:
    """The symbol a token written by :func:`symbol_to_token` stands for (``BRK_2EB`` ->
    ``BRK.B``); SubjectError for any other token."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise SubjectError(f"{token!r:.80} is not a symbol token: letters, digits, '-' and "
                           "'_XX' escapes only", field="token", value=token)
    try:
        symbol = _ESCAPE.sub(lambda m: _DECODE[m.group(1)], token)
    except KeyError:
        raise SubjectError(f"{token!r} escapes a character that symbol_to_token never escapes",
                           field="token", value=token) from None
    reason = _why_not(symbol)
    if reason is not None:
        raise SubjectError(f"token {token!r} decodes to {symbol!r}, not a symbol: {reason}",
                           field="token", value=token)
    return symbol
