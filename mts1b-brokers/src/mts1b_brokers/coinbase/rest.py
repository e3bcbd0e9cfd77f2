"""Calls to Coinbase's REST API through the SDK, with rate limits and outcome classes.

The SDK's ``RESTClient`` is synchronous (``requests``); each call runs in a worker thread so
the event loop keeps serving the user channel. What this layer decides, once for every call:

- **Pacing**: at most ``max_rate`` requests per second leave this client (Coinbase allows 30
  per second on private endpoints); a 429 is a refusal (nothing was done), so the call waits
  ``Retry-After`` (else ``x-ratelimit-reset``, else an exponential backoff) and is sent again,
  up to ``max_attempts`` times, then :class:`~mts1b_foundation.BrokerTransportError`.
- **Was it sent?** A connection refused, a connect timeout or a TLS failure means the request
  never reached Coinbase: ``BrokerTransportError``. A read timeout, a connection dropped after
  sending or a 5xx answer to a request that changes something (create, cancel, edit) is
  **ambiguous**: :class:`Ambiguous` is raised and the broker resolves it by asking Coinbase
  (list orders by ``client_order_id``, get the order) - never by sending it again. A read that
  fails that way is simply a transport error.
- **What did Coinbase say?** Other 4xx answers raise :class:`VenueError` with the HTTP status,
  Coinbase's ``error`` code and ``message``; 401/403 become ``BrokerTransportError`` (nothing
  was done, and the key or its scopes must be fixed).

No error text here contains the API secret or a JWT: only Coinbase's code and message, the
HTTP status and the call's name.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import requests
from mts1b_foundation import BrokerTransportError
from urllib3.exceptions import NewConnectionError

__all__ = ["Ambiguous", "CoinbaseRest", "VenueError"]

log = logging.getLogger("mts1b_brokers.coinbase")


class Ambiguous(Exception):
    """A changing request was sent and no clear answer came back."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"{what}: {detail}")
        self.what, self.detail = what, detail


class VenueError(Exception):
    """Coinbase answered a 4xx (not 401/403/429): ``status``, ``code``, ``message``."""

    def __init__(self, what: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{what}: HTTP {status} {code}: {message}")
        self.what, self.status, self.code, self.message = what, status, code, message


def _venue_words(response: requests.Response | None) -> tuple[int, str, str]:
    if response is None:
        return 0, "NO_RESPONSE", "no response"
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("error") or response.reason or response.status_code)
    message = str(body.get("message") or body.get("error_details") or response.reason or "")
    return response.status_code, code[:64].replace(" ", "_"), message[:2000]


def _retry_after(response: requests.Response | None, attempt: int) -> float:
    """Seconds to wait after a 429: ``Retry-After`` (seconds or a date), else until
    ``x-ratelimit-reset`` (epoch seconds), else an exponential backoff."""
    backoff = min(0.05 * 2.0 ** attempt, 5.0)
    if response is None:
        return backoff
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(float(header), 0.0)
        except ValueError:
            pass
        try:
            return max(email.utils.parsedate_to_datetime(header).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            pass
    reset = response.headers.get("x-ratelimit-reset")
    if reset:
        try:
            return min(max(float(reset) - time.time(), 0.0), 60.0)
        except ValueError:
            pass
    return backoff


def _never_sent(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.SSLError):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, NewConnectionError | ConnectionRefusedError)
    return isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema)


class CoinbaseRest:
    """Runs SDK calls with pacing, 429 backoff and the outcome classes above."""

    def __init__(self, *, broker: str, max_rate: float = 25.0, max_attempts: int = 5) -> None:
        self._broker = broker
        self._interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self._next = 0.0
        self._pace = asyncio.Lock()
        self._max_attempts = max_attempts
        self.rate_limited = 0
        """How many 429 answers were waited out (for tests and metrics)."""

    async def _paced(self) -> None:
        async with self._pace:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self._interval
        if wait > 0:
            await asyncio.sleep(wait)

    def _transport(self, what: str, text: str, **context: Any) -> BrokerTransportError:
        return BrokerTransportError(f"coinbase {what} not done: {text}", broker=self._broker,
                                    call=what, **context)

    async def call(self, what: str, fn: Callable[..., Any], /, *args: Any, changes: bool,
                   **kwargs: Any) -> dict[str, Any]:
        """Run ``fn(*args, **kwargs)`` (an SDK method); its response as a dict."""
        for attempt in range(self._max_attempts):
            await self._paced()
            try:
                result = await asyncio.to_thread(fn, *args, **kwargs)
            except requests.HTTPError as exc:
                status, code, message = _venue_words(exc.response)
                if status == 429:
                    self.rate_limited += 1
                    delay = _retry_after(exc.response, attempt)
                    log.warning("coinbase %s rate-limited (429); again in %.2fs", what, delay)
                    await asyncio.sleep(delay)
                    continue
                if status >= 500:
                    if changes:
                        raise Ambiguous(what, f"HTTP {status} {code}: {message}") from None
                    raise self._transport(what, f"HTTP {status} {code}: {message}",
                                          venue_code=code, venue_message=message,
                                          http_status=status) from None
                if status in {401, 403}:
                    raise self._transport(what, f"HTTP {status} {code}: {message} (check the "
                                          "API key and its permissions)", venue_code=code,
                                          venue_message=message, http_status=status) from None
                raise VenueError(what, status, code, message) from None
            except requests.RequestException as exc:
                kind = type(exc).__name__
                if _never_sent(exc):
                    raise self._transport(what, f"{kind}: the request did not reach "
                                          "Coinbase") from None
                if changes:
                    raise Ambiguous(what, f"{kind} after the request was sent") from None
                raise self._transport(what, f"{kind} while reading the answer") from None
            except (OSError, ValueError) as exc:  # the SDK's own failures before sending
                raise self._transport(what, f"{type(exc).__name__} before sending") from None
            except Exception as exc:  # the SDK raises bare Exception when it cannot sign
                raise self._transport(what, f"{type(exc).__name__} before sending (the "
                                      "request could not be signed)") from None
            to_dict = getattr(result, "to_dict", None)
            data = to_dict() if callable(to_dict) else result
            if not isinstance(data, dict):
                raise self._transport(what, "Coinbase's answer is not a JSON object")
            return data
        raise self._transport(what, f"still rate-limited (429) after {self._max_attempts} "
                              "attempts", venue_code="RATE_LIMITED")
