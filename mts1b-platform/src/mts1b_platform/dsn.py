"""Reading a PostgreSQL DSN before a driver does: what is wrong with it, and where it points.

Why: asyncpg answers a malformed DSN with a bare ``ValueError`` whose text may quote the DSN,
and a refused connection with an exception that names no server. A command that takes
``--dsn`` checks it here first, so that each failure is one line naming the option (the DSN
shown with :func:`shown_dsn`) or the server (:func:`dsn_target`: ``host:port/database`` and the
user, never the password).
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from collections.abc import Callable, Iterator

from mts1b_platform.redaction import MASK, redact_url

__all__ = ["DSN_FORM", "DsnProblem", "connecting", "dsn_message", "dsn_target", "shown_dsn"]

DSN_FORM = "postgresql://USER@HOST:PORT/DATABASE"
"""The form a DSN error asks for. Without a password: ``USER:PASSWORD@`` in a message would be
masked by the redactor, which cannot tell a placeholder from a password."""

_HOST_PORT = re.compile(r"(?:\[[^\]]*\]|[^:\[\]]+)(?::(?P<port>[^:]*))?")
"""One entry of a DSN's host list: a name or address, or ``[IPv6]``, and maybe ``:port``."""
_PORT = re.compile(r"[0-9]{1,5}")


class DsnProblem(ValueError):
    """What is wrong with a DSN, in words that quote no part of it (``problem``)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def shown_dsn(dsn: str) -> str:
    """The DSN as an error may show it: through :func:`redact_url`, or only ``***`` when an
    ``@`` stands where no parser can tell the password from the host - a second ``@``, or one
    after a ``/``, ``?`` or ``#`` (a password's, not percent-encoded): ``u:12/ss@h`` would
    pass for the host ``u`` and the port ``12``."""
    _, sep, rest = dsn.partition("://")
    authority = re.split(r"[/?#]", rest if sep else dsn, maxsplit=1)[0]
    if dsn.count("@") > 1 or (dsn.count("@") == 1 and "@" not in authority):
        return MASK
    return redact_url(dsn)


def dsn_target(dsn: str) -> str:
    """Where ``dsn`` points, for a message: ``host:port/database (user NAME)``, without the
    password. :class:`DsnProblem` when a driver could not read it: not a ``postgresql://``
    URL, a port that is not a number from 1 to 65535, an empty host in a host list, an ``@``
    that is not the one before the host (a password's ``@``, ``/``, ``?`` or ``#`` must be
    percent-encoded, or the host and the password cannot be told apart), or a query that is
    not ``key=value`` pairs."""
    if "://" not in dsn:
        raise DsnProblem("it is not a URL")
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:  # an unbalanced [ or ] in the host
        raise DsnProblem("its host is not a name, an address or [an IPv6 address]") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise DsnProblem("its scheme is not postgresql://")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if "@" in userinfo or "@" in f"{parts.path}{parts.query}{parts.fragment}":
        raise DsnProblem("it has an @ besides the one before the host: percent-encode the "
                         "password's @ / ? # as %40 %2F %3F %23")
    for entry in hosts.split(",") if hosts else []:
        match = _HOST_PORT.fullmatch(urllib.parse.unquote(entry))
        if match is None:
            raise DsnProblem("a host of it is empty or not a name, an address or [an IPv6 "
                             "address]")
        port = match.group("port")
        if port and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
            raise DsnProblem("its port is not a number from 1 to 65535")
    if parts.query:
        try:
            urllib.parse.parse_qs(parts.query, strict_parsing=True)
        except ValueError:
            raise DsnProblem("its query is not key=value pairs joined by &") from None
    user = urllib.parse.unquote(userinfo.partition(":")[0])
    database = urllib.parse.unquote(parts.path.removeprefix("/"))
    return (f"{hosts or '(default host)'}/{database or '(default database)'}"
            + (f" (user {user})" if user else ""))


def dsn_message(dsn: str, problem: str) -> str:
    """The line for a DSN no driver can read: the DSN shown safely, what is wrong, the form."""
    return f"the DSN {shown_dsn(dsn)!r} cannot be used: {problem}; write {DSN_FORM}"


@contextlib.contextmanager
def connecting(dsn: str, connect_error: Callable[..., Exception],
               dsn_error: Callable[[str, str], Exception]) -> Iterator[str]:
    """Around a connection attempt to ``dsn``: the DSN is read first (a malformed one raises
    ``dsn_error(dsn, problem)``) and where it points is yielded; a server that cannot be
    reached raises ``connect_error(message, target=...)`` naming it as ``host:port/database
    (user)``, never with its password (the exception's type only: its text may quote the
    DSN). Every store that connects to PostgreSQL goes through this."""
    import asyncpg

    try:
        target = dsn_target(dsn)
    except DsnProblem as exc:
        raise dsn_error(dsn, exc.problem) from None
    try:
        yield target
    except (OSError, asyncpg.PostgresError) as exc:
        raise connect_error(f"cannot connect to PostgreSQL at {target}: {type(exc).__name__}",
                            target=target) from None
    except ValueError:  # asyncpg's ClientConfigurationError is one
        raise dsn_error(dsn, "asyncpg cannot read it as a connection URL") from None
