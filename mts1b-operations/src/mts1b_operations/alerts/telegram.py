"""Telegram dispatch: the Bot API's ``sendMessage``, within its limits.

:func:`send_telegram` is the one place a message goes to Telegram (the dedupe contract's
canonical home). :class:`TelegramSink` is the :class:`~mts1b_foundation.AlertSink` the router
uses: it renders a group of alerts as HTML parts of at most 4,096 characters
(:mod:`~mts1b_operations.alerts.render`), and sends each part to each chat through three token
buckets - the chat's (one a second), the group's (20 a minute, for a negative chat id) and the
bot's (25 a second) - so it stays under the limits instead of finding them. A 429 still
happens (the limits are Telegram's to change): its ``retry_after`` holds that chat's bucket,
and the part is sent again after it when the wait is short (``max_inline_wait``), else the
notification goes back to the outbox with that wait. Parts already delivered are remembered
per notification, so a retry does not repeat them. A group that became a supergroup
(``migrate_to_chat_id``) is written to under its new id from then on, with a warning to fix the
configuration.

The bot token is part of the URL path: it is never logged and never in an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mts1b_foundation import Alert, AlertDeliveryError
from mts1b_platform.logging import get_logger

from mts1b_operations.alerts.config import TelegramReceiver
from mts1b_operations.alerts.http import post_json
from mts1b_operations.alerts.ratelimit import TokenBucket
from mts1b_operations.alerts.render import telegram_parts

__all__ = ["TelegramSink", "send_telegram"]

_log = get_logger("mts1b_operations.alerts")
_PERMANENT = {400, 401, 403, 404}
_MARGIN = 0.9
"""Buckets run 10% under the stated limits: two messages sent a limit apart can arrive closer
than that (one waited longer in the network), and the server counts arrivals."""


async def send_telegram(api_url: str, token: str, chat_id: int, text: str, *,
                        timeout: float = 10.0) -> int:
    """Send ``text`` (``parse_mode=HTML``) to ``chat_id``; return the message id Telegram gave
    it. AlertDeliveryError otherwise: with ``retry_after`` for a 429 (Telegram's
    ``parameters.retry_after``), ``permanent`` for an answer that a retry cannot change
    (400 Bad Request, 401, 403: no such chat, unparsable text, a wrong token), and
    ``context["migrate_to_chat_id"]`` when the group became a supergroup (its new id)."""
    answer = await post_json(f"{api_url.rstrip('/')}/bot{token}/sendMessage",
                             {"chat_id": chat_id, "text": text, "parse_mode": "HTML",
                              "link_preview_options": {"is_disabled": True}},
                             timeout=timeout)
    body: Any = answer.json()
    if answer.status == 200 and isinstance(body, dict) and body.get("ok"):
        result = body.get("result") or {}
        return int(result.get("message_id", 0))
    if answer.status == 0:
        raise AlertDeliveryError(f"telegram unreachable ({answer.failure})", chat_id=chat_id)
    description = str(body.get("description", ""))[:200] if isinstance(body, dict) else ""
    retry_after: float | None = None
    migrate_to: int | None = None
    if isinstance(body, dict) and isinstance(body.get("parameters"), dict):
        value = body["parameters"].get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool):
            retry_after = float(value)
        moved = body["parameters"].get("migrate_to_chat_id")
        if isinstance(moved, int) and not isinstance(moved, bool):
            migrate_to = moved
    if answer.status == 429 and retry_after is None:
        retry_after = float(answer.headers.get("Retry-After", "1") or 1)
    raise AlertDeliveryError(f"telegram answered {answer.status}: {description}",
                             retry_after=retry_after,
                             permanent=answer.status in _PERMANENT and migrate_to is None,
                             chat_id=chat_id, status=answer.status, migrate_to_chat_id=migrate_to)


class TelegramSink:
    """An :class:`~mts1b_foundation.AlertSink` for one bot and its chats (see the module)."""

    def __init__(self, receiver: TelegramReceiver) -> None:
        if receiver.bot_token is None:
            raise ValueError(f"receiver {receiver.name} has no bot_token")
        self.receiver = receiver
        self._token = receiver.bot_token.get_secret_value()
        self._bot = TokenBucket(receiver.global_per_second * _MARGIN)
        self._chats: dict[int, list[TokenBucket]] = {}
        self._delivered: dict[str, set[tuple[int, int]]] = {}
        self._moved: dict[int, int] = {}  # a group that became a supergroup -> its new id
        self.retried_after: list[float] = []  # every retry_after honoured, for tests and logs

    @property
    def name(self) -> str:
        return self.receiver.name

    def _buckets(self, chat_id: int) -> list[TokenBucket]:
        if chat_id not in self._chats:
            buckets = [TokenBucket(self.receiver.per_chat_per_second * _MARGIN)]
            if chat_id < 0:  # groups, supergroups and channels
                buckets.append(TokenBucket(self.receiver.per_group_per_minute / 60 * _MARGIN))
            self._chats[chat_id] = buckets
        return self._chats[chat_id]

    async def send(self, key: str, alerts: Sequence[Alert]) -> None:
        parts = telegram_parts(alerts, key=key)
        done = self._delivered.setdefault(key, set())
        for chat_id in self.receiver.chat_ids:
            for index, text in enumerate(parts):
                if (chat_id, index) in done:
                    continue
                await self._send_part(chat_id, text)
                done.add((chat_id, index))
        self._delivered.pop(key, None)

    async def _send_part(self, configured: int, text: str) -> None:
        while True:
            chat_id = self._moved.get(configured, configured)
            buckets = self._buckets(chat_id)
            for bucket in (*buckets, self._bot):
                await bucket.acquire()
            try:
                await send_telegram(self.receiver.api_url, self._token, chat_id, text,
                                    timeout=self.receiver.timeout)
                return
            except AlertDeliveryError as exc:
                moved = exc.context.get("migrate_to_chat_id")
                if isinstance(moved, int) and moved != chat_id:
                    self._moved[configured] = moved
                    _log.warning("telegram group became a supergroup: put its new id in the "
                                 "configuration", receiver=self.name, chat_id=configured,
                                 new_chat_id=moved)
                    continue
                if exc.retry_after is None:
                    raise
                for bucket in buckets:
                    bucket.hold(exc.retry_after)
                self.retried_after.append(exc.retry_after)
                if exc.retry_after > self.receiver.max_inline_wait:
                    raise
