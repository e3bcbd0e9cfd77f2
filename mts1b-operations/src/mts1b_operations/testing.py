"""Local stand-ins for the servers alerts are sent to, for tests of any library.

:class:`LocalTelegram` stands in for ``api.telegram.org``: no real Telegram can be reached from
a test (no network, no bot token), yet dispatch must be tested against the Bot API's method
paths, JSON shapes, limits and errors rather than against a mock of our own client. It answers
``POST|GET /bot<token>/sendMessage`` and ``/bot<token>/getMe`` like the Bot API:

- ``{"ok": true, "result": <Message>}`` on success; ``{"ok": false, "error_code": N,
  "description": "..."}`` on failure (401 Unauthorized for a wrong token, 400 ``Bad Request:
  chat not found``, ``message is too long``, ``can't parse entities`` for HTML that Telegram
  would refuse - an unknown or unclosed tag, a bare ``<`` or ``&``), and for a group that
  became a supergroup (``migrated``) 400 with ``parameters.migrate_to_chat_id``;
- the text limit, 4,096 characters *after entities parsing* (tags removed, ``&lt;`` counted as
  one character), as the Bot API states it - counted in UTF-16 code units, as Telegram counts
  entity offsets;
- flood control as the Bot FAQ describes it: about one message a second per chat, 20 a minute
  per group (a negative chat id), 30 a second in all. A message over a limit is refused with
  HTTP 429 and ``parameters.retry_after`` (whole seconds to wait), and not delivered.

:class:`LocalWebhook` is a plain HTTP receiver that records every POST (a webhook sink's
target); ``fail_next`` makes it answer 503 with a ``Retry-After``.

Both are small asyncio HTTP/1.1 servers (one request per connection) on 127.0.0.1 and an
ephemeral port; use them as async context managers. Everything they accepted is in
``messages`` / ``requests``, with the monotonic time it arrived.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import html
import json
import math
import re
import time
import urllib.parse
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Self

__all__ = ["TEST_BOT_TOKEN", "LocalTelegram", "LocalWebhook", "ReceivedMessage", "ReceivedRequest",
           "telegram_visible_text"]

_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
         "tg-spoiler", "span", "blockquote"}
_TOKEN = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s[^<>]*)?)>|&(#[0-9]+|#x[0-9A-Fa-f]+|"
                    r"lt|gt|amp|quot);|[<>&]")
TEST_BOT_TOKEN = "123456:local-test-bot"  # noqa: S105 - a made-up token for the local server
"""The token :class:`LocalTelegram` answers to unless given another."""
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            429: "Too Many Requests", 503: "Service Unavailable"}


def telegram_visible_text(text: str) -> str:
    """The text of a ``parse_mode=HTML`` message as Telegram shows it (what its 4,096 limit
    counts), or ``ValueError`` worded as the Bot API words a message it cannot parse."""
    out: list[str] = []
    stack: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        out.append(text[pos:match.start()])
        pos = match.end()
        closing, tag, _attrs, entity = match.group(1), match.group(2), match.group(3), \
            match.group(4)
        if tag is not None:
            tag = tag.lower()
            if tag not in _TAGS:
                raise ValueError(f"can't parse entities: Unsupported start tag \"{tag}\" at "
                                 f"byte offset {match.start()}")
            if closing:
                if not stack or stack[-1] != tag:
                    raise ValueError(f"can't parse entities: Unexpected end tag at byte "
                                     f"offset {match.start()}")
                stack.pop()
            else:
                stack.append(tag)
        elif entity is not None:
            out.append(html.unescape(f"&{entity};"))
        else:
            raise ValueError(f"can't parse entities: Unsupported start tag at byte offset "
                             f"{match.start()}" if match.group(0) == "<" else
                             f"can't parse entities: Character '{match.group(0)}' is reserved "
                             f"and must be escaped")
    out.append(text[pos:])
    if stack:
        raise ValueError(f"can't parse entities: Can't find end tag corresponding to start "
                         f"tag \"{stack[-1]}\"")
    return "".join(out)


@dataclass(frozen=True)
class ReceivedMessage:
    """A message the local Telegram accepted."""

    chat_id: int
    text: str
    visible: str
    parse_mode: str | None
    message_id: int
    at: float


@dataclass(frozen=True)
class ReceivedRequest:
    """A request the local webhook accepted."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class _HttpServer(abc.ABC):
    """One request per connection, enough of HTTP/1.1 for urllib and any Bot API client."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        try:
            request = await self._read(reader)
            if request is None:
                return
            status, payload, extra = await self.handle(request)
            body = json.dumps(payload).encode()
            head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
                    "Content-Type: application/json", f"Content-Length: {len(body)}",
                    "Connection: close", *(f"{k}: {v}" for k, v in extra.items())]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> _Request | None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return None
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        url = urllib.parse.urlsplit(parts[1])
        query = dict(urllib.parse.parse_qsl(url.query))
        return _Request(parts[0].upper(), url.path, query, headers, body)

    @abc.abstractmethod
    async def handle(self, request: _Request) -> tuple[int, Any, dict[str, str]]:
        """The status, JSON body and extra headers of the answer to ``request``."""


class LocalTelegram(_HttpServer):
    """A local Bot API server for one bot (see the module): ``api_url`` goes where a client
    would put ``https://api.telegram.org``. ``chats`` limits which chat ids exist (None: all);
    the limits default to the Bot FAQ's and can be changed for a test; ``fail_next(n,
    retry_after)`` answers the next ``n`` sendMessage calls with 429 whatever the rate."""

    def __init__(self, token: str = TEST_BOT_TOKEN, *, chats: set[int] | None = None,
                 per_chat_per_second: int = 1, per_group_per_minute: int = 20,
                 global_per_second: int = 30, group_window: float = 60.0,
                 migrated: dict[int, int] | None = None) -> None:
        super().__init__()
        self.token = token
        self.chats = chats
        self.per_chat_per_second = per_chat_per_second
        self.per_group_per_minute = per_group_per_minute
        self.global_per_second = global_per_second
        self.group_window = group_window  # a test may shrink the minute (20 per 60 s)
        self.migrated = dict(migrated or {})  # group id -> the supergroup it became
        self.messages: list[ReceivedMessage] = []
        self.refused: list[tuple[int, int, str]] = []  # (chat_id, status, description)
        self._sent: dict[int, deque[float]] = defaultdict(deque)
        self._all: deque[float] = deque()
        self._forced: list[float] = []

    @property
    def api_url(self) -> str:
        return self.url

    def fail_next(self, count: int, retry_after: float) -> None:
        self._forced.extend([retry_after] * count)

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [m.visible for m in self.messages if chat_id is None or m.chat_id == chat_id]

    @property
    def too_many(self) -> int:
        """How many messages were refused with 429."""
        return sum(1 for _chat, status, _d in self.refused if status == 429)

    async def handle(self, request: _Request) -> tuple[int, Any, dict[str, str]]:
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", request.path)
        if match is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}, {}
        if match.group(1) != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}, {}
        method = match.group(2)
        params = dict(request.query)
        if request.body:
            if request.headers.get("content-type", "").startswith("application/json"):
                try:
                    loaded = json.loads(request.body)
                except ValueError:
                    return self._error(400, "Bad Request: can't parse JSON")
                params.update({k: v for k, v in loaded.items()} if isinstance(loaded, dict)
                              else {})
            else:
                params.update(urllib.parse.parse_qsl(request.body.decode()))
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": int(self.token.split(":")[0]),
                                                "is_bot": True, "first_name": "MTS1B test",
                                                "username": "mts1b_test_bot"}}, {}
        if method == "sendMessage":
            return self._send_message(params)
        return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not "
                                                                    "found"}, {}

    def _error(self, code: int, description: str, chat_id: int = 0,
               retry_after: int | None = None) -> tuple[int, Any, dict[str, str]]:
        self.refused.append((chat_id, code, description))
        payload: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        headers: dict[str, str] = {}
        if retry_after is not None:
            payload["parameters"] = {"retry_after": retry_after}
            headers["Retry-After"] = str(retry_after)
        return code, payload, headers

    def _send_message(self, params: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        try:
            chat_id = int(params.get("chat_id", ""))
        except (TypeError, ValueError):
            return self._error(400, "Bad Request: chat not found")
        if chat_id in self.migrated:
            code, payload, headers = self._error(
                400, "Bad Request: group chat was upgraded to a supergroup chat", chat_id)
            payload["parameters"] = {"migrate_to_chat_id": self.migrated[chat_id]}
            return code, payload, headers
        if self.chats is not None and chat_id not in self.chats:
            return self._error(400, "Bad Request: chat not found", chat_id)
        text = str(params.get("text", ""))
        parse_mode = params.get("parse_mode")
        if parse_mode is not None and str(parse_mode).upper() == "HTML":
            try:
                visible = telegram_visible_text(text)
            except ValueError as exc:
                return self._error(400, f"Bad Request: {exc}", chat_id)
        else:
            visible = text
        if not visible.strip():
            return self._error(400, "Bad Request: message text is empty", chat_id)
        if len(visible.encode("utf-16-le")) // 2 > 4096:  # Telegram counts UTF-16 units
            return self._error(400, "Bad Request: message is too long", chat_id)
        now = time.monotonic()
        if self._forced:
            return self._error(429, "Too Many Requests: retry after "
                                    f"{math.ceil(self._forced[0])}", chat_id,
                               math.ceil(self._forced.pop(0)))
        wait = self._flood_wait(chat_id, now)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            return self._error(429, f"Too Many Requests: retry after {seconds}", chat_id,
                               seconds)
        self._sent[chat_id].append(now)
        self._all.append(now)
        message = ReceivedMessage(chat_id, text, visible, parse_mode, len(self.messages) + 1,
                                  now)
        self.messages.append(message)
        return 200, {"ok": True, "result": {
            "message_id": message.message_id, "date": int(time.time()),
            "chat": {"id": chat_id, "type": "group" if chat_id < 0 else "private"},
            "text": visible}}, {}

    def _flood_wait(self, chat_id: int, now: float) -> float:
        """Seconds until one more message to ``chat_id`` fits every limit (0: it fits now)."""
        sent = self._sent[chat_id]
        while sent and now - sent[0] >= max(60.0, self.group_window):
            sent.popleft()
        while self._all and now - self._all[0] >= 1:
            self._all.popleft()
        waits = [0.0]
        last_second = [t for t in sent if now - t < 1]
        if len(last_second) >= self.per_chat_per_second:
            waits.append(1 - (now - last_second[-self.per_chat_per_second]))
        in_window = [t for t in sent if now - t < self.group_window]
        if chat_id < 0 and len(in_window) >= self.per_group_per_minute:
            waits.append(self.group_window - (now - in_window[-self.per_group_per_minute]))
        if len(self._all) >= self.global_per_second:
            waits.append(1 - (now - self._all[-self.global_per_second]))
        return max(waits)


class LocalWebhook(_HttpServer):
    """Records every POST; ``fail_next(n, retry_after)`` answers the next ``n`` with 503."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[ReceivedRequest] = []
        self._failures: list[float] = []

    def fail_next(self, count: int, retry_after: float) -> None:
        self._failures.extend([retry_after] * count)

    async def handle(self, request: _Request) -> tuple[int, Any, dict[str, str]]:
        if request.method != "POST":
            return 404, {"error": "POST only"}, {}
        if self._failures:
            return 503, {"error": "unavailable"}, {
                "Retry-After": str(math.ceil(self._failures.pop(0)))}
        self.requests.append(ReceivedRequest(request.path, dict(request.headers), request.body,
                                             time.monotonic()))
        return 200, {"ok": True}, {}
