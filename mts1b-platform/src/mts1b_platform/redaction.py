"""Secret redaction: one function that every log line goes through before it is written.

Why a registry *and* patterns: a secret loaded through :func:`mts1b_platform.config.load_config`
is known exactly, so its literal value is masked wherever it appears (a password echoed in an
exception from a driver, a token inside a URL). Secrets that never went through config (a bearer
token in an HTTP header a library logs, a PEM key pasted into an error) are caught by patterns.

Masking is applied until nothing matches any more, so replacing one secret cannot assemble
another out of the mask and its neighbours. Registered secrets shorter than
:data:`MIN_SECRET_LENGTH` characters are ignored: masking every ``"abc"`` in every line would
make logs unreadable and leak the secret's value by its absence.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SENSITIVE_KEY",
    "clear_secrets",
    "redact",
    "register_secret",
    "register_secrets",
    "registered_secret_count",
]

MASK = "***"
"""What a secret is replaced with."""

MIN_SECRET_LENGTH = 4
"""Registered secrets shorter than this are not masked (see module docstring)."""

_lock = threading.Lock()
_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None

_KEYS = (r"pass(?:word|wd|phrase)?|pwd|secret|client[_-]?secret|token|access[_-]?token|"
         r"refresh[_-]?token|api[_-]?key|apikey|private[_-]?key|credentials?")
SENSITIVE_KEY = re.compile(rf"(?i)^(?:.*[_-])?(?:{_KEYS})$")
"""Context field names whose values are masked whole, whatever they contain."""

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys (RSA, EC, OPENSSH, ENCRYPTED, plain PKCS#8), the whole block.
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?"
                r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.DOTALL), MASK),
    # Authorization / Proxy-Authorization headers, whatever the scheme.
    (re.compile(r"(?i)((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
                r"(?:(?:bearer|basic|digest|token|apikey)\s+)?[^\s\"',;]+"), rf"\g<1>{MASK}"),
    # Bare bearer tokens.
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\g<1>{MASK}"),
    # JWTs: three base64url segments, the first two starting with '{"' encoded.
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), MASK),
    # key=value / key: value / "key": "value" pairs for sensitive keys.
    (re.compile(rf"(?i)(\b(?:[A-Za-z0-9]+[_-])*(?:{_KEYS})[\"']?\s*[=:]\s*)"
                r"(\"[^\"]*\"|'[^']*'|[^\s,;&\"'}\]]+)"), rf"\g<1>{MASK}"),
    # URLs with credentials: scheme://user:password@host -> scheme://user:***@host
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s/@]+(@)"), rf"\g<1>{MASK}\g<2>"),
)


def _escaped_forms(value: str) -> set[str]:
    """The value as it appears inside ``repr()``, JSON (ASCII or not) and unicode-escape text."""
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1],
             json.dumps(value, ensure_ascii=False)[1:-1],
             value.encode("unicode_escape").decode("ascii")}
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every log line from now on (ignored if shorter than the minimum).

    The escaped forms of the value (as ``repr``, JSON and ``unicode_escape`` write it) are masked
    too, so a secret with quotes or non-ASCII characters cannot leak through an ``%r`` or a
    JSON-encoded payload.
    """
    global _secret_re
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        forms = _escaped_forms(value)
        if forms <= _secrets:
            return
        _secrets.update(forms)
        _secret_re = _compile(_secrets)


def register_secrets(values: Iterable[str | None]) -> None:
    """:func:`register_secret` for each value."""
    for value in values:
        register_secret(value)


def clear_secrets() -> None:
    """Forget every registered secret (tests use this; services never need it)."""
    global _secret_re
    with _lock:
        _secrets.clear()
        _secret_re = None


def registered_secret_count() -> int:
    """How many masked strings are registered, escaped forms included (never the values)."""
    return len(_secrets)


def _compile(values: Iterable[str]) -> re.Pattern[str]:
    # Longest first, so a secret that contains another is masked whole.
    ordered = sorted(values, key=len, reverse=True)
    return re.compile("|".join(re.escape(v) for v in ordered))


def redact(text: str) -> str:
    """``text`` with every registered secret and every sensitive pattern masked."""
    for _ in range(64):
        before = text
        secret_re = _secret_re
        if secret_re is not None:
            text = secret_re.sub(MASK, text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        if text == before:
            return text
    # Every pass that changes the text shortens a secret to the 3-character mask, so this is
    # not reached in practice; if it were, refusing the whole text is the safe answer.
    return MASK
