"""Secret redaction: one function that every output path goes through before it is written.

:func:`redact` is applied to every log line (:mod:`mts1b_platform.logging`), to what the ``mts``
commands print for people and to their one-line errors, to the messages of
:class:`~mts1b_platform.bus.BusError` and its subclasses, to the error replies and the
``message`` of the replies that :meth:`~mts1b_platform.bus.Bus.serve` sends, and to the reason,
errors and headers of a dead letter. One function, so that a form it learns to mask is masked
everywhere at once: the leaks it was written against were output paths that each had their own
idea of what a secret looks like (or none).

Why a registry *and* patterns: a secret loaded through :func:`mts1b_platform.config.load_config`
is known exactly, so its literal value is masked wherever it appears (a password echoed in an
exception from a driver, a token inside a URL). Secrets that never went through config (a bearer
token in an HTTP header a library logs, a PEM key pasted into an error, the password inside
``MTS_NATS_URL``) are caught by patterns.

Credentials in URLs and DSNs: in ``scheme://userinfo@host`` the userinfo is everything up to the
*last* ``@`` of the authority (a password may hold a raw ``@``), so ``user:pass@`` becomes
``user:***@`` and a userinfo without ``:`` - a NATS token (``nats://tok@host``), a token used as
a user name (``https://tok@host``) - becomes ``***@``; only schemes whose userinfo without a
``:`` is only ever a user name (:data:`USER_ONLY_SCHEMES`: ``postgresql://postgres@db``) keep it.
Percent-encoded passwords, IPv6 hosts (``[::1]``), several URLs in one text and comma-separated
NATS server lists are covered; DSN keywords and query parameters (``password=``,
``?sslpassword=``, ``;Password=``) by the key=value pattern. :func:`redact_url` shows a URL
setting in a message (it also masks scheme-less ``user:pass@host`` entries and entries that do
not parse at all), and :func:`register_url_secrets` registers the credentials of a URL so that
their literal and percent-decoded values are masked wherever a driver repeats them.

Masking is applied until nothing matches any more, so replacing one secret cannot assemble
another out of the mask and its neighbours. Registered secrets shorter than
:data:`MIN_SECRET_LENGTH` characters are ignored: masking every ``"abc"`` in every line would
make logs unreadable and leak the secret's value by its absence.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SENSITIVE_KEY",
    "USER_ONLY_SCHEMES",
    "clear_secrets",
    "redact",
    "redact_url",
    "register_secret",
    "register_secrets",
    "register_url_secrets",
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

USER_ONLY_SCHEMES = frozenset({"postgres", "postgresql", "mysql", "mariadb", "ssh", "sftp"})
"""URL schemes whose userinfo without a ``:`` is a user name, never a credential: kept as is."""

# One character of a URL's authority: anything up to whitespace, the start of the path, query or
# fragment, a double quote (the end of a JSON string) or an angle bracket; an escaped pair
# (``\"`` in JSON, ``\\`` in a repr) belongs to the authority, so an escaped quote inside a
# password does not end it early.
_AUTHORITY_CHAR = r"(?:\\.|[^\s/?#\"<>`\\])"
_URL_USERINFO = re.compile(
    rf"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>{_AUTHORITY_CHAR}*)@")


def _mask_userinfo(scheme: str, userinfo: str) -> str:
    """The userinfo of a URL as it may be shown: ``user:***``, ``***``, or a bare user name."""
    if not userinfo:
        return userinfo
    user, colon, _ = userinfo.partition(":")
    if colon:
        return f"{user}:{MASK}"
    if scheme.lower() in USER_ONLY_SCHEMES:
        return userinfo
    return MASK


def _url_userinfo(match: re.Match[str]) -> str:
    scheme = match.group("scheme")
    return f"{scheme}{_mask_userinfo(scheme[:-3], match.group('userinfo'))}@"


_Replacement = str | Callable[[re.Match[str]], str]

# (pattern, replacement, needles): a pattern runs only on text whose lower-case form contains
# one of its needles (none: always). Most lines hold no needle, and scanning a long line with
# a case-insensitive alternation at every position is what costs time.
_PATTERNS: tuple[tuple[re.Pattern[str], _Replacement, tuple[str, ...]], ...] = (
    # PEM private keys (RSA, EC, OPENSSH, ENCRYPTED, plain PKCS#8), the whole block.
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?"
                r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.DOTALL), MASK,
     ("private key",)),
    # Authorization / Proxy-Authorization headers, whatever the scheme.
    (re.compile(r"(?i)((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
                r"(?:(?:bearer|basic|digest|token|apikey)\s+)?[^\s\"',;]+"), rf"\g<1>{MASK}",
     ("authorization",)),
    # Bare bearer tokens.
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\g<1>{MASK}", ("bearer",)),
    # JWTs: three base64url segments, the first two starting with '{"' encoded.
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), MASK, ("eyj",)),
    # Vault / OpenBao tokens: hvs./hvb./hvr. (service, batch, recovery) and the older s./b./r.
    # with 24 characters, wherever they were not registered (a token pasted into an error).
    (re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}"), MASK, ("hvs.", "hvb.", "hvr.")),
    (re.compile(r"\b[sbr]\.[A-Za-z0-9]{24}\b"), MASK, ("s.", "b.", "r.")),
    # NATS NKey seeds (user, account, operator, server, cluster, curve): S + type + 56 base32.
    (re.compile(r"\bS[UAONCX][A-Z2-7]{56}\b"), MASK, ()),
    # key=value / key: value / "key": "value" pairs for sensitive keys, also with a prefix
    # glued on as DSNs and environments write them (sslpassword=, PGPASSWORD=, db_password=).
    (re.compile(rf"(?i)((?:{_KEYS})[\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"'}}\]]+)"),
     rf"\g<1>{MASK}", ("pass", "pwd", "secret", "token", "key", "credential")),
    # URLs with credentials: scheme://user:password@host -> scheme://user:***@host, and
    # scheme://token@host -> scheme://***@host (see the module docstring).
    (_URL_USERINFO, _url_userinfo, ("://",)),
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
        lowered = text.lower()
        for pattern, replacement, needles in _PATTERNS:
            if not needles or any(needle in lowered for needle in needles):
                text = pattern.sub(replacement, text)
        if text == before:
            return text
    # Every pass that changes the text shortens a secret to the 3-character mask, so this is
    # not reached in practice; if it were, refusing the whole text is the safe answer.
    return MASK


# host, host:port or [IPv6]:port after an optional userinfo: what a server entry of a URL setting
# looks like once its credentials are masked; with a scheme, a path, query or fragment may follow.
_HOST = r"(?:[^\s@/?#]*@)?(?:[A-Za-z0-9._~%-]+|\[[0-9A-Fa-f:.%A-Za-z]*\])(?::[0-9]{1,5})?"
_SERVER_ENTRY = re.compile(
    rf"[A-Za-z][A-Za-z0-9+.-]*://{_HOST}(?:[/?#]\S*)?|{_HOST}")


def _split_entry(entry: str) -> tuple[str, str, str, str]:
    """``(scheme, "://" or "", userinfo or "", rest)`` of one server entry; the userinfo ends at
    the last ``@`` before the path, query or fragment (a raw ``@`` in a password included)."""
    scheme, sep, rest = entry.partition("://")
    if not sep:
        scheme, rest = "", entry
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if found != -1:
            end = min(end, found)
    userinfo, at, host = rest[:end].rpartition("@")
    if not at:
        return scheme, sep, "", rest
    return scheme, sep, userinfo, f"@{host}{rest[end:]}"


def _redact_entry(entry: str) -> str:
    text = redact(entry)
    scheme, sep, userinfo, rest = _split_entry(text)
    if rest.startswith("@"):  # scheme-less user:pass@host too, which nats-py accepts
        return f"{scheme}{sep}{_mask_userinfo(scheme, userinfo)}{rest}"
    if text.strip() and not _SERVER_ENTRY.fullmatch(text.strip()):
        return MASK  # no address: possibly the piece of a password before a raw comma
    return text


def redact_url(url: str) -> str:
    """``url`` - a URL, a DSN or a comma-separated server list - with every credential masked.

    For showing a URL *setting* in a message (``cannot connect to NATS at ...``): besides what
    :func:`redact` masks, each comma-separated entry loses the userinfo of a scheme-less
    ``user:pass@host`` too, and an entry that does not look like a server address at all (a
    password with a raw comma splits into such pieces) is shown as ``***``.
    """
    return ",".join(_redact_entry(entry) for entry in url.split(","))


def register_url_secrets(url: str | None) -> None:
    """Register the password or token of every entry of ``url`` (a URL, DSN or server list).

    Both the text as written and its percent-decoded form are registered: a client decodes
    ``p%40ss`` to ``p@ss`` and may repeat either in an error, far from any ``scheme://``.
    A user name is not registered; the userinfo of a :data:`USER_ONLY_SCHEMES` URL without a
    password is a user name.
    """
    if not url:
        return
    for entry in url.split(","):
        scheme, _sep, userinfo, rest = _split_entry(entry.strip())
        if not rest.startswith("@"):
            continue
        _user, colon, password = userinfo.partition(":")
        if colon:
            secret = password
        elif scheme.lower() in USER_ONLY_SCHEMES:
            continue
        else:
            secret = userinfo
        register_secrets([secret, urllib.parse.unquote(secret)])
