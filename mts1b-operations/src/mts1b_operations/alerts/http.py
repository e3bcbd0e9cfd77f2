"""One JSON POST over HTTP(S), answered with its status, body and headers whatever they are.

Why the standard library in a thread: the stack has no HTTP client dependency, ``urllib``
speaks HTTPS with the system's certificates, and a notification a second does not need a
connection pool. Errors come back as data (status 0 for a connection that failed) so a sink
decides what is worth retrying; the URL - which holds a bot token for Telegram - is never put
in an exception or a log line.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["HttpAnswer", "post_json"]


@dataclass(frozen=True)
class HttpAnswer:
    status: int  # 0: no answer (refused, timed out, TLS failed)
    body: bytes
    headers: Mapping[str, str]
    failure: str = ""  # why there was no answer: the exception's type only

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def _post(url: str, payload: bytes, headers: Mapping[str, str], timeout: float) -> HttpAnswer:
    request = urllib.request.Request(url, data=payload, method="POST",  # noqa: S310 - http(s) only
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return HttpAnswer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        with exc:
            return HttpAnswer(exc.code, exc.read(), dict(exc.headers or {}))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return HttpAnswer(0, b"", {}, type(exc).__name__)


async def post_json(url: str, payload: Any, *, headers: Mapping[str, str] | None = None,
                    timeout: float = 10.0) -> HttpAnswer:
    """POST ``payload`` as JSON to ``url`` (``http://`` or ``https://``)."""
    if not url.startswith(("http://", "https://")):
        return HttpAnswer(0, b"", {}, "unsupported URL scheme")
    body = json.dumps(payload).encode()
    return await asyncio.to_thread(_post, url, body, dict(headers or {}), timeout)
